"""Updates of a work order applied to its ticket, inside the caller's transaction.

What each update does (issue 6, item 4), always with an event naming the authority:

* 催办 urge: an ``urge`` event that reminds the handling department (``notify_department``);
  the status does not change.
* 延期 extension: the new deadline becomes ``due_at`` (and the order's deadline); an overdue
  mark is cleared when the new deadline is still ahead, so the SLA worker can mark it again.
* 撤单 withdrawal: the ticket is closed with the reason; replies not yet sent are cancelled.
* 退单 returned (退回重办): the authority did not accept the answer; the ticket is dispatched
  again (to the department the order names, if the mapping knows it, else the same one),
  with the new deadline when one is given. The next ``handle`` sends a new reply.
* 督办 supervision: severity raised to ``referrals.supervision_severity`` (never lowered);
  an earlier deadline, if given, shortens ``due_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from channels.referral.mapping import MappedOrder
from channels.referral.settings import UpdateKind
from router.clock_moves import follow_authority
from router.clocks import ClockBook
from router.lifecycle import Actor, IllegalTransition, transition
from router.settings import Severity
from store.models import Ticket
from store.referral_models import OutboxStatus, ReferralOutbox
from store.tickets import NewEvent, add_event, as_utc, event_time

# The authority's updates as clock milestones: the lifecycle's names for the same steps.
_MILESTONES = {UpdateKind.RETURNED: "return", UpdateKind.WITHDRAWAL: "withdraw"}


async def apply_update(
    session: AsyncSession,
    ticket: Ticket,
    *,
    source: str,
    order: MappedOrder,
    supervision_severity: str,
    now: datetime,
    clocks: ClockBook | None = None,
) -> dict[str, Any]:
    """Change ``ticket`` as ``order`` asks; returns what changed (stored with the update).
    With ``clocks``, the ticket's clocks follow (router.clock_moves.follow_authority)."""
    actor = f"referral:{source}"
    base: dict[str, Any] = {"referral_update": order.kind.value, "reference": order.reference}
    if order.update_id:
        base["update_id"] = order.update_id
    if order.reason:
        base["reason"] = order.reason
    if order.notes:
        base["notes"] = list(order.notes)
    values: dict[str, Any] = {"updated_at": now}
    events: list[NewEvent] = []
    due = as_utc(ticket.due_at)
    result: dict[str, Any] = {"kind": order.kind.value}

    if order.kind is UpdateKind.URGE:
        events.append(
            NewEvent(
                "urge",
                actor,
                base | {"notify_department": ticket.department, "status": ticket.status},
            )
        )
        result["notified"] = ticket.department
    elif order.kind is UpdateKind.EXTENSION:
        assert order.deadline is not None  # the mapping refuses an extension without one
        new_due = order.deadline.astimezone(UTC)
        values |= {"due_at": new_due, "referral_deadline": new_due}
        if new_due > now:
            values["overdue_at"] = None
        events.append(
            NewEvent(
                "referral_extended",
                actor,
                base | {"from": event_time(due), "to": event_time(new_due)},
            )
        )
        result |= {"due_at": event_time(new_due)}
    elif order.kind is UpdateKind.WITHDRAWAL:
        try:
            values["status"] = transition(ticket.status, "withdraw", {}, Actor.AUTHORITY).value
        except IllegalTransition:
            pass  # closed already: a withdrawal changes nothing but is recorded
        cancelled = await session.execute(
            update(ReferralOutbox)
            .where(
                col(ReferralOutbox.ticket_id) == ticket.id,
                col(ReferralOutbox.status) == OutboxStatus.PENDING,
            )
            .values(status=OutboxStatus.CANCELLED, last_error="order withdrawn (撤单)")
        )
        events.append(
            NewEvent(
                "referral_withdrawn",
                actor,
                base
                | {
                    "from_status": ticket.status,
                    "status": values.get("status", ticket.status),
                    "replies_cancelled": int(cancelled.rowcount or 0),  # type: ignore[attr-defined]
                },
            )
        )
        result["status"] = values.get("status", ticket.status)
    elif order.kind is UpdateKind.RETURNED:
        department = order.department or ticket.department
        dispatched = transition(ticket.status, "return", {}, Actor.AUTHORITY)
        values |= {"status": dispatched.value, "department": department}
        if order.deadline is not None:
            new_due = order.deadline.astimezone(UTC)
            values |= {"due_at": new_due, "referral_deadline": new_due}
            due = new_due
        if due is None or due > now:
            values["overdue_at"] = None
        events.append(
            NewEvent(
                "referral_returned",
                actor,
                base
                | {
                    "from_status": ticket.status,
                    "status": dispatched.value,
                    "department": department,
                    "from_department": ticket.department,
                    "due_at": event_time(due),
                    "notify_department": department,
                },
            )
        )
        result |= {"status": dispatched.value, "department": department}
    elif order.kind is UpdateKind.SUPERVISION:
        current = ticket.severity
        if Severity(supervision_severity).rank > Severity(current).rank:
            values["severity"] = supervision_severity
            events.append(
                NewEvent(
                    "severity_raised",
                    actor,
                    {"from": current, "to": supervision_severity, "rule": "referral.supervision"},
                )
            )
        detail = base | {"severity": values.get("severity", current)}
        if order.deadline is not None and (due is None or order.deadline < due):
            new_due = order.deadline.astimezone(UTC)
            values |= {"due_at": new_due, "referral_deadline": new_due}
            detail |= {"from": event_time(due), "due_at": event_time(new_due)}
        events.append(
            NewEvent(
                "referral_supervised", actor, detail | {"notify_department": ticket.department}
            )
        )
        result["severity"] = values.get("severity", current)
    else:  # pragma: no cover - new orders never come here
        raise ValueError(f"not an update: {order.kind}")

    if clocks is not None:
        values |= await follow_authority(
            session,
            clocks,
            ticket,
            _MILESTONES.get(order.kind, order.kind.value),
            status=values.get("status"),
            deadline=values.get("referral_deadline"),
            now=now,
        )
    await session.execute(update(Ticket).where(col(Ticket.id) == ticket.id).values(**values))
    for event in events:
        await add_event(session, ticket, event, now)
    return result
