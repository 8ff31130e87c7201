"""Moving a ticket's clocks with one staff event, inside the event's own transaction.

Lifecycle events stop and start clocks by milestone; ``extend``, ``pause`` and ``resume``
move the clock they name. When the handling clock moves, the ticket's ``due_at`` follows
it (CONTRACT.md: ``due_at`` is the handling clock), and an overdue mark is lifted once the
new deadline lies ahead.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from router.clock_settings import DeadlinePolicy
from router.clocks import ClockBook, ClockFacts
from store.clock_models import TicketClock
from store.clocks import NewClock, add_clocks, load_clocks
from store.models import Ticket
from store.tickets import as_utc, event_time

CLOCK_ACTIONS = frozenset({"extend", "pause", "resume"})


def facts_of(ticket: Ticket) -> ClockFacts:
    return ClockFacts(
        severity=ticket.severity,
        category=ticket.category,
        channel=ticket.channel,
        referral_source=ticket.referral_source,
        referral_deadline=as_utc(ticket.referral_deadline),
    )


async def move_clocks(
    session: AsyncSession,
    book: ClockBook,
    ticket: Ticket,
    kind: str,
    detail: dict[str, Any],
    status: str,
    now: datetime,
) -> dict[str, Any]:
    """Apply the event to the clocks; returns what to add to the event's detail (the clock's
    old and new due time for a clock action). Raises ``ClockRefused`` for an action that
    cannot apply, before anything is written."""
    assert ticket.id is not None
    rows = await load_clocks(session, ticket.id)
    handling = rows.get(book.handling_clock)
    due_before = as_utc(handling.due_at) if handling else None
    recorded: dict[str, Any] = {}
    due_after = due_before
    if kind in CLOCK_ACTIONS:
        name = str(detail.get("clock"))
        row = rows.get(name)
        before = event_time(row.due_at) if row else None
        if kind == "extend":
            book.extend(row, str(detail.get("by")), now)
        elif kind == "pause":
            book.pause(row, now)
        else:
            book.resume(row, now)
        assert row is not None  # the book refuses an unknown clock
        recorded = {"from_due_at": before, "due_at": event_time(row.due_at)}
    else:
        fresh = book.advance(rows, facts_of(ticket), {kind, status}, now)
        await add_clocks(session, ticket.id, fresh, now)
        due_after = next((c.due_at for c in fresh if c.name == book.handling_clock), due_after)
    await session.flush()
    if handling is not None:
        due_after = as_utc(handling.due_at)
    if due_after is not None and due_after != due_before:
        values: dict[str, Any] = {"due_at": due_after}
        if due_after > now:
            values["overdue_at"] = None
        await session.execute(update(Ticket).where(col(Ticket.id) == ticket.id).values(**values))
    return recorded


async def follow_authority(
    session: AsyncSession,
    book: ClockBook,
    ticket: Ticket,
    kind: str,
    *,
    status: str | None,
    deadline: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The clocks after a referring authority's update (延期, 退单, 撤单, 督办): the order's
    clock takes its new deadline, and the handling clock too unless the source's policy is
    ``ours``; a status change stops or restarts clocks like a staff event. Returns the
    ticket's new ``due_at`` (the handling clock's) when it has one."""
    assert ticket.id is not None
    rows = await load_clocks(session, ticket.id)
    facts = facts_of(ticket)
    if deadline is not None:
        facts = replace(facts, referral_deadline=deadline)
        follows = book.policy_for(ticket.referral_source) is not DeadlinePolicy.OURS
        for name, row in rows.items():
            is_order = book.definitions.get(name) and book.definitions[name].referral_deadline
            if row.met_at is None and (is_order or (name == book.handling_clock and follows)):
                book.move(row, deadline, now)
    if status is not None:
        fresh = book.advance(rows, facts, {kind, status}, now)
        await add_clocks(session, ticket.id, fresh, now)
        rows |= {c.name: _placeholder(c) for c in fresh}
    await session.flush()
    handling = rows.get(book.handling_clock)
    if handling is None or handling.met_at is not None:
        return {}
    return {"due_at": as_utc(handling.due_at)}


def _placeholder(clock: NewClock) -> TicketClock:
    # Only read for its due time and met mark, never stored: add_clocks stored the clock.
    return TicketClock(ticket_id=0, extended=0.0, updated_at=clock.started_at, **asdict(clock))
