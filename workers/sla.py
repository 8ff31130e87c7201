"""The SLA worker: watches every clock, marks overdue tickets and escalates complaints left
unresolved too long.

DOMAIN.md: "any complaint unresolved after one month" is major. Each ticket is marked overdue
once (``overdue_at``), and each clock warned once (``clock_due_soon``, inside its lead time)
and breached once (``clock_breached``), so the audit trail is not flooded by every sweep.
"Once" holds with several SLA workers: a mark is a conditional update of a still-empty
column, and only the worker whose update changed the row records the event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import and_, select, update
from sqlmodel import col

from router.calendar import WorkCalendar
from router.lifecycle import OPEN_STATUSES
from router.settings import Severity
from router.timelimit import TimeUnit
from store.clock_models import TicketClock
from store.db import STORE_ERRORS, Database
from store.models import Ticket
from store.tickets import NewEvent, add_event, event_time
from workers.settings import WorkersSettings

log = structlog.get_logger(__name__)
_OPEN = sorted(s.value for s in OPEN_STATUSES)


class SlaWorker:
    name = "sla"

    def __init__(
        self,
        *,
        settings: WorkersSettings,
        database: Database,
        calendar: WorkCalendar,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._db = database
        self._calendar = calendar
        self._clock = clock

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.sweep()
                await self.watch_clocks()
            except STORE_ERRORS as exc:
                log.error("sla_sweep_failed", error=type(exc).__name__)
            try:
                await asyncio.wait_for(stopping.wait(), self._settings.sla.interval_seconds)
            except TimeoutError:
                pass

    async def sweep(self) -> tuple[int, int]:
        """One pass; returns (newly overdue, escalated)."""
        now = self._clock()
        overdue = escalated = 0
        async with self._db.transaction() as session:
            rows = await session.execute(
                select(Ticket)
                .where(
                    col(Ticket.status).in_(_OPEN),
                    col(Ticket.due_at) < now,
                    col(Ticket.overdue_at).is_(None),
                )
                .limit(1000)
            )
            for ticket in rows.scalars():
                await session.execute(
                    update(Ticket).where(col(Ticket.id) == ticket.id).values(overdue_at=now)
                )
                await add_event(
                    session,
                    ticket,
                    NewEvent(
                        "overdue",
                        "sla",
                        {"due_at": event_time(ticket.due_at), "department": ticket.department},
                    ),
                    now,
                )
                log.warning("ticket_overdue", number=ticket.number, department=ticket.department)
                overdue += 1
            cutoff = now - _as_timedelta(
                self._settings.sla.escalate_unresolved_after.amount,
                self._settings.sla.escalate_unresolved_after.unit,
            )
            rows = await session.execute(
                select(Ticket)
                .where(
                    col(Ticket.status).in_(_OPEN),
                    col(Ticket.received_at) < cutoff,
                    col(Ticket.severity) != Severity.MAJOR.value,
                )
                .limit(1000)
            )
            for ticket in rows.scalars():
                await session.execute(
                    update(Ticket)
                    .where(col(Ticket.id) == ticket.id)
                    .values(severity=Severity.MAJOR.value)
                )
                await add_event(
                    session,
                    ticket,
                    NewEvent(
                        "severity_raised",
                        "sla",
                        {
                            "from": ticket.severity,
                            "to": Severity.MAJOR.value,
                            "rule": "severity.unresolved_too_long",
                            "limit": str(self._settings.sla.escalate_unresolved_after),
                        },
                    ),
                    now,
                )
                escalated += 1
        return overdue, escalated

    async def watch_clocks(self) -> tuple[int, int]:
        """One pass over the running clocks; returns (warned, breached)."""
        now = self._clock()
        warned = breached = 0
        async with self._db.transaction() as session:
            for mark, condition in (
                # Past due already: the breach says it, not a late warning.
                (_WARNED, and_(col(TicketClock.warn_at) <= now, col(TicketClock.due_at) > now)),
                (_BREACHED, col(TicketClock.due_at) <= now),
            ):
                column = col(getattr(TicketClock, mark.column))
                rows = await session.execute(
                    select(TicketClock, Ticket)
                    .join(Ticket, col(Ticket.id) == col(TicketClock.ticket_id))
                    .where(
                        col(TicketClock.met_at).is_(None),
                        col(TicketClock.paused_at).is_(None),
                        column.is_(None),
                        condition,
                    )
                    .order_by(col(TicketClock.due_at))
                    .limit(1000)
                )
                for clock, ticket in rows.all():
                    marked = await session.execute(
                        update(TicketClock)
                        .where(col(TicketClock.id) == clock.id, column.is_(None))
                        .values({mark.column: now})
                    )
                    if marked.rowcount != 1:  # type: ignore[attr-defined]
                        continue  # another SLA worker marked it first
                    await add_event(
                        session,
                        ticket,
                        NewEvent(
                            mark.event,
                            "sla",
                            {
                                "clock": clock.name,
                                "due_at": event_time(clock.due_at),
                                "department": ticket.department,
                                "rule": clock.rule,
                            },
                        ),
                        now,
                    )
                    log.warning(
                        mark.event,
                        number=ticket.number,
                        clock=clock.name,
                        department=ticket.department,
                    )
                    if mark is _WARNED:
                        warned += 1
                    else:
                        breached += 1
        return warned, breached


@dataclass(frozen=True)
class _Mark:
    column: str
    event: str


_WARNED = _Mark("warned_at", "clock_due_soon")
_BREACHED = _Mark("breached_at", "clock_breached")


def _as_timedelta(amount: float, unit: TimeUnit) -> timedelta:
    # Escalation age is calendar time: a month of waiting is a month for the complainant.
    hours = {
        TimeUnit.MINUTES: 1 / 60,
        TimeUnit.HOURS: 1,
        TimeUnit.DAYS: 24,
        TimeUnit.WORKING_HOURS: 1,
        TimeUnit.WORKING_DAYS: 24,
    }[unit]
    return timedelta(hours=amount * hours)
