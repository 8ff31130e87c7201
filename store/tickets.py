"""Tickets: creating them from routed drafts in batches, reading them as the ticket JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ingest.draft import TicketDraft, utc_iso
from store.clocks import NewClock, clock_rows, clocks_json, insert_clocks
from store.models import Attachment, Complainant, Event, InboundItem, IntakeNumber, Ticket
from store.times import as_utc as as_utc  # re-exported: callers read times from here


def event_time(value: datetime | None) -> str | None:
    """A time as event details record it: UTC ISO 8601 with its +00:00 offset."""
    value = as_utc(value)
    return value.isoformat() if value else None


@dataclass(frozen=True)
class NewEvent:
    kind: str
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewTicket:
    """A draft the router has completed: everything needed to insert it in one go."""

    draft: TicketDraft
    number: str
    category: str
    severity: str
    status: str
    valid: bool
    invalid_reason: str | None
    department: str | None
    due_at: datetime | None
    events: tuple[NewEvent, ...]
    clocks: tuple[NewClock, ...] = ()


def existing_numbers(
    conn: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Numbers of tickets already made for these (channel, source_key) pairs."""
    if not keys:
        return {}
    found: dict[tuple[str, str], str] = {}
    # Chunked so a large batch stays under the databases' bound-parameter limits.
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        condition = or_(
            *(and_(col(Ticket.channel) == c, col(Ticket.source_key) == k) for c, k in chunk)
        )
        rows = conn.execute(
            select(col(Ticket.channel), col(Ticket.source_key), col(Ticket.number)).where(condition)
        )
        for channel, source_key, number in rows:
            found[(channel, source_key)] = number
    return found


def insert_tickets(conn: Connection, tickets: Sequence[NewTicket], now: datetime) -> None:
    """Insert complainants, tickets, attachments, events and inbound items in bulk."""
    if not tickets:
        return
    complainant_ids = (
        conn.execute(
            insert(Complainant).returning(col(Complainant.id), sort_by_parameter_order=True),
            [t.draft.complainant.model_dump() for t in tickets],
        )
        .scalars()
        .all()
    )
    ticket_rows = [
        _ticket_row(t, complainant_id, now)
        for t, complainant_id in zip(tickets, complainant_ids, strict=True)
    ]
    ticket_ids = (
        conn.execute(
            insert(Ticket).returning(col(Ticket.id), sort_by_parameter_order=True), ticket_rows
        )
        .scalars()
        .all()
    )
    attachments: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    inbound: list[dict[str, Any]] = []
    clocks: list[dict[str, Any]] = []
    for ticket, ticket_id in zip(tickets, ticket_ids, strict=True):
        draft = ticket.draft
        clocks.extend(clock_rows(ticket_id, ticket.clocks, now))
        attachments.extend(
            {"ticket_id": ticket_id, **attachment.model_dump()} for attachment in draft.attachments
        )
        events.extend(
            {
                "ticket_id": ticket_id,
                "at": now,
                "kind": e.kind,
                "actor": e.actor,
                "detail": e.detail,
            }
            for e in ticket.events
        )
        inbound.append(inbound_row(draft, ticket_id))
    if attachments:
        conn.execute(insert(Attachment), attachments)
    conn.execute(insert(Event), events)
    conn.execute(insert(InboundItem), inbound)
    insert_clocks(conn, clocks)


def inbound_row(draft: TicketDraft, ticket_id: int | None) -> dict[str, Any]:
    """The idempotency record of what arrived, and the ticket it made or went to (if any)."""
    return {
        "channel": draft.channel.value,
        "source_key": draft.source_key,
        "received_at": draft.received_at,
        "raw_sha256": draft.raw_sha256,
        "draft": draft.model_dump(mode="json"),
        "ticket_id": ticket_id,
        "deliveries": 1,
    }


def add_attachments(conn: Connection, ticket_id: int, draft: TicketDraft) -> None:
    """File a later item's attachments on an existing ticket (a reply, a follow-up)."""
    if draft.attachments:
        conn.execute(
            insert(Attachment),
            [{"ticket_id": ticket_id, **a.model_dump()} for a in draft.attachments],
        )


def _ticket_row(ticket: NewTicket, complainant_id: int | None, now: datetime) -> dict[str, Any]:
    draft = ticket.draft
    referral = draft.referral
    return {
        "number": ticket.number,
        "channel": draft.channel.value,
        "source_key": draft.source_key,
        "received_at": draft.received_at,
        "complainant_id": complainant_id,
        "subject": draft.subject,
        "body": draft.body,
        "incident_at": draft.incident_at,
        "category": ticket.category,
        "severity": ticket.severity,
        "status": ticket.status,
        "valid": ticket.valid,
        "invalid_reason": ticket.invalid_reason,
        "first_contact_kind": draft.first_contact.kind.value,
        "first_contact_id": draft.first_contact.id,
        "first_contact_department": draft.first_contact.department,
        "department": ticket.department,
        "due_at": ticket.due_at,
        "referral_source": referral.source if referral else None,
        "referral_reference": referral.reference if referral else None,
        "referral_deadline": referral.deadline if referral else None,
        "raw_sha256": draft.raw_sha256,
        "repeat_of": draft.repeat_of,
        "created_at": now,
        "updated_at": now,
    }


def merged_reservation(number: str) -> Any:
    """The id of the open ticket that ``number``'s item was merged into, as a subquery: a
    number reserved at intake (and told to the sender) whose item the router then took for a
    repeat of an open ticket (two intakes seconds apart). Empty for any other number."""
    return (
        select(col(InboundItem.ticket_id))
        .join(
            IntakeNumber,
            and_(
                col(IntakeNumber.channel) == col(InboundItem.channel),
                col(IntakeNumber.source_key) == col(InboundItem.source_key),
            ),
        )
        .where(col(IntakeNumber.number) == number)
        .scalar_subquery()
    )


async def find_ticket(session: AsyncSession, number: str) -> Ticket | None:
    """The ticket of ``number``, or the one its item was merged into (:func:`merged_reservation`):
    the sender was told this number, and that ticket handles their matter."""
    result = await session.execute(select(Ticket).where(col(Ticket.number) == number))
    ticket = result.scalar_one_or_none()
    if ticket is not None:
        return ticket
    merged = await session.execute(
        select(Ticket).where(col(Ticket.id) == merged_reservation(number))
    )
    return merged.scalars().first()


async def add_event(session: AsyncSession, ticket: Ticket, event: NewEvent, at: datetime) -> None:
    assert ticket.id is not None
    await session.execute(
        insert(Event).values(
            ticket_id=ticket.id, at=at, kind=event.kind, actor=event.actor, detail=event.detail
        )
    )


def confidential_sources(conn: Connection, source_keys: Sequence[str]) -> set[str]:
    """Source keys of referral orders whose complainant asked to stay confidential (是否保密);
    call inside ``Database.write``."""
    from store.referral_models import ReferralOrderRecord

    if not source_keys:
        return set()
    rows = conn.execute(
        select(col(ReferralOrderRecord.source_key)).where(
            col(ReferralOrderRecord.source_key).in_(list(source_keys)),
            col(ReferralOrderRecord.confidential).is_(True),
        )
    )
    return set(rows.scalars())


async def confidential_keys(session: AsyncSession, source_keys: Sequence[str]) -> set[str]:
    """:func:`confidential_sources` for a session."""
    keys = list(source_keys)
    return await session.run_sync(lambda sync: confidential_sources(sync.connection(), keys))


async def ticket_json(
    session: AsyncSession, ticket: Ticket, *, privileged: bool = True
) -> dict[str, Any]:
    """The ticket as CONTRACT.md's "Ticket JSON", with its events in order.

    ``privileged=False`` (the handling department's view) hides a confidential complainant.
    """
    complainant = (
        await session.get(Complainant, ticket.complainant_id) if ticket.complainant_id else None
    )
    attachments = (
        (
            await session.execute(
                select(Attachment)
                .where(col(Attachment.ticket_id) == ticket.id)
                .order_by(col(Attachment.id))
            )
        )
        .scalars()
        .all()
    )
    events = (
        (
            await session.execute(
                select(Event).where(col(Event.ticket_id) == ticket.id).order_by(col(Event.id))
            )
        )
        .scalars()
        .all()
    )
    hide = not privileged and bool(await confidential_keys(session, [ticket.source_key]))
    assert ticket.id is not None
    return ticket_summary(ticket, complainant, hide_complainant=hide) | {
        "clocks": await clocks_json(session, ticket.id),
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in attachments
        ],
        "events": [
            {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail} for e in events
        ],
    }


def ticket_summary(
    ticket: Ticket, complainant: Complainant | None, *, hide_complainant: bool = False
) -> dict[str, Any]:
    """The ticket JSON without attachments and events (for listings)."""
    referral = None
    if ticket.referral_source:
        referral = {
            "source": ticket.referral_source,
            "reference": ticket.referral_reference,
            "deadline": _iso(ticket.referral_deadline),
        }
    return {
        "number": ticket.number,
        "channel": ticket.channel,
        "source_key": ticket.source_key,
        "received_at": _iso(ticket.received_at),
        "complainant": _complainant_json(complainant, hide_complainant),
        "subject": ticket.subject,
        "body": ticket.body,
        "incident_at": _iso(ticket.incident_at),
        "category": ticket.category,
        "severity": ticket.severity,
        "status": ticket.status,
        "valid": ticket.valid,
        "invalid_reason": ticket.invalid_reason,
        "first_contact": {
            "kind": ticket.first_contact_kind,
            "id": ticket.first_contact_id,
            "department": ticket.first_contact_department,
        },
        "department": ticket.department,
        "due_at": _iso(ticket.due_at),
        "referral": referral,
        "links": {"repeat_of": ticket.repeat_of, "batch": ticket.batch},
    }


async def list_tickets(
    session: AsyncSession,
    *,
    channel: str | None = None,
    since: datetime | None = None,
    status: str | None = None,
    department: str | None = None,
    after_id: int = 0,
    limit: int = 100,
    viewer_department: str | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Tickets in creation order, as (id, summary) so callers can page by id."""
    query = (
        select(Ticket, Complainant)
        .outerjoin(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
        .where(col(Ticket.id) > after_id)
        .order_by(col(Ticket.id))
        .limit(limit)
    )
    if channel:
        query = query.where(col(Ticket.channel) == channel)
    if since:
        query = query.where(col(Ticket.received_at) >= since)
    if status:
        query = query.where(col(Ticket.status) == status)
    if department:
        query = query.where(col(Ticket.department) == department)
    rows = (await session.execute(query)).all()
    hidden: set[str] = set()
    if viewer_department is not None:
        candidates = [
            t.source_key
            for t, _ in rows
            if t.referral_source and t.first_contact_department != viewer_department
        ]
        hidden = await confidential_keys(session, candidates)
    return [
        (
            ticket.id or 0,
            ticket_summary(ticket, complainant, hide_complainant=ticket.source_key in hidden),
        )
        for ticket, complainant in rows
    ]


def _complainant_json(complainant: Complainant | None, hide: bool) -> dict[str, Any]:
    shown = None if hide else complainant
    return {
        "name": shown.name if shown else None,
        "phone": shown.phone if shown else None,
        "email": shown.email if shown else None,
        "anonymous": complainant.anonymous if complainant else True,
        "confidential": hide,
    }


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return utc_iso(value) if value else None


def feedback_result(conn: Connection, ticket_id: int, feedback: dict[str, Any]) -> str:
    """What a complainant is told when staff feed the result back (反馈): the feedback's own
    ``message``, else the ticket's newest handling result; call inside ``Database.write``."""
    message = feedback.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()
    handled = conn.execute(
        select(col(Event.detail))
        .where(col(Event.ticket_id) == ticket_id, col(Event.kind) == "handle")
        .order_by(col(Event.id).desc())
        .limit(1)
    ).scalar_one_or_none()
    return str((handled or {}).get("result") or "已办理完毕")
