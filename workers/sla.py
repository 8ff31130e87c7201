"""The SLA worker: marks overdue tickets and escalates complaints left unresolved too long.

DOMAIN.md: "any complaint unresolved after one month" is major. Each ticket is marked overdue
once (``overdue_at``), so the audit trail is not flooded by every sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, update
from sqlmodel import col

from router.calendar import WorkCalendar
from router.lifecycle import OPEN_STATUSES
from router.settings import Severity
from router.timelimit import TimeUnit
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
