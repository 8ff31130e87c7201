"""The notify worker: sends the notification outbox (acknowledgements, urge notices).

Each sweep, every ``email.outbox.poll_interval_seconds``:

1. queue a notice for each new ``urge`` event of a department that has an ``email``;
2. take replays of dead notifications (``shouli dead-letters replay ID`` publishes to
   ``<prefix>.notifications``);
3. claim the rows that are due (a lease: competing workers never hold the same row), render
   each with the ticket as it is now (an acknowledgement gets a fresh progress link), send it
   through ``email.outbound`` and record the outcome at once.

Without ``email.outbound`` nothing is claimed: rows wait, and go out once it is configured.
A step whose store or queue is down is logged once per outage and tried again, with a
growing pause. An outcome that could not be recorded (the store went away after the server
said 250) is kept in memory and recorded first at the next sweep, so that short outages do
not turn into a second copy of the mail once the lease runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial

import structlog
from sqlalchemy import Connection, select
from sqlmodel import col

from channels.email.acknowledgement import TicketFacts, acknowledgement, urge_notice
from channels.email.notices import last_urge_event, queue_urge_notices
from channels.email.outbound import Delivery, send_mail
from channels.email.settings import OutboundSmtp
from channels.web.progress import issue_link
from ingest.queues import QueueNames
from ingest.runtime import Runtime
from store.db import is_outage
from store.models import Ticket
from store.notification_models import NotificationKind
from store.notification_outbox import NOTIFICATIONS, DueNotification
from store.outbox import Recorded, claim_due, record_attempt, replay
from store.outbox_states import RowStatus
from store.tickets import as_utc
from workers.replays import take_replays
from workers.settle import settler_of
from workers.steps import Steps

log = structlog.get_logger(__name__)
_SEND_CONCURRENCY = 8
_MAX_PAUSE_SECONDS = 60.0


@dataclass
class Sweep:
    urges_queued: int = 0
    replayed: int = 0
    attempts: int = 0
    sent: int = 0
    dead: int = 0


@dataclass(frozen=True)
class _Outcome:
    due: DueNotification
    delivery: Delivery
    at: datetime


class NotifyWorker:
    name = "notify"

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._email = runtime.settings.email
        self._outbox = runtime.settings.email.outbox
        self._clock = clock
        self._environ = environ
        self._queue_name = QueueNames(runtime.settings.broker.prefix).notifications
        self._after_event: int | None = None
        self._prepared = False
        self._unrecorded: list[_Outcome] = []
        self._steps = Steps(self.name, log)
        self._settler = settler_of(runtime)
        self._told_unconfigured = False

    async def run(self, stopping: asyncio.Event) -> None:
        log.info("notify_started", outbound=self._email.outbound is not None)
        pause = self._outbox.poll_interval_seconds
        while not stopping.is_set():
            report = await self.sweep(strict=False)
            # While something is down, wait longer each time (capped): an outage is not
            # hammered every poll interval. Back to the interval once every step works.
            failing = report is None
            pause = (
                min(pause * 2, _MAX_PAUSE_SECONDS)
                if failing
                else self._outbox.poll_interval_seconds
            )
            try:
                await asyncio.wait_for(stopping.wait(), pause)
            except TimeoutError:
                pass
        log.info("notify_stopped")

    async def sweep(self, *, strict: bool = True) -> Sweep | None:
        """One pass over every step. ``strict`` (tests) raises the first failure; otherwise a
        failing step is logged once per outage, the others still run, and the pass returns
        None (the loop then pauses longer)."""
        report = Sweep()
        steps: list[tuple[str, Callable[[Sweep], Awaitable[None]]]] = [
            ("prepare", self._prepare),
            ("urges", self._queue_urges),
            ("replays", self._take_replays),
            ("deliver", self._deliver),
        ]
        return report if await self._steps.run(steps, report, strict=strict) else None

    async def _prepare(self, _report: Sweep) -> None:
        if self._prepared:
            return
        await self._runtime.queue.declare(self._queue_name)
        self._after_event = await self._runtime.database.write(last_urge_event)
        self._prepared = True

    async def _queue_urges(self, report: Sweep) -> None:
        if not self._prepared:
            return
        now, after = self._clock(), self._after_event or 0
        departments, email = self._settings.departments, self._email
        report.urges_queued, self._after_event = await self._runtime.database.write(
            lambda conn: queue_urge_notices(conn, departments, email, after, now)
        )
        if report.urges_queued:
            log.info("urge_notices_queued", count=report.urges_queued)

    async def _take_replays(self, report: Sweep) -> None:
        if not self._prepared:
            return

        async def again(notification_id: int) -> bool:
            now = self._clock()
            return await self._runtime.database.write(
                partial(replay, outbox=NOTIFICATIONS, row_id=notification_id, now=now)
            )

        report.replayed = await take_replays(
            self._runtime.queue,
            self._queue_name,
            self._settler,
            key=NOTIFICATIONS.id_key,
            replay=again,
        )

    async def _deliver(self, report: Sweep) -> None:
        await self._record_unrecorded(report)
        server = self._email.outbound
        if server is None:
            if not self._told_unconfigured:
                self._told_unconfigured = True
                log.warning("notify_outbound_not_configured", hint="set email.outbound")
            return
        now = self._clock()
        lease = timedelta(seconds=self._outbox.lease_seconds)
        limit = self._outbox.batch_size
        due = await self._runtime.database.write(
            lambda conn: claim_due(conn, NOTIFICATIONS, now, lease=lease, limit=limit)
        )
        gate = asyncio.Semaphore(_SEND_CONCURRENCY)

        async def one(item: DueNotification) -> None:
            async with gate:
                delivery = await self._send(item, server)
            outcome = _Outcome(item, delivery, self._clock())
            try:
                await self._record(outcome, report)
            except Exception:
                self._unrecorded.append(outcome)  # recorded first thing next sweep
                raise

        results = await asyncio.gather(*(one(item) for item in due), return_exceptions=True)
        problems = [r for r in results if isinstance(r, BaseException)]
        if problems:
            raise problems[0]

    async def _send(self, due: DueNotification, server: OutboundSmtp) -> Delivery:
        try:
            message = await self._render(due, server)
        except Exception as exc:
            if is_outage(exc):
                raise
            # A row that cannot be rendered will not render next time either: counts as a
            # permanent failure (dead letter with the reason) instead of blocking the outbox.
            log.exception("notification_render_failed", notification_id=due.id)
            return Delivery(False, permanent=True, detail=f"render failed: {type(exc).__name__}")
        return await send_mail(message, server, recipients=(due.recipient,), environ=self._environ)

    async def _render(self, due: DueNotification, server: OutboundSmtp) -> EmailMessage:
        now = self._clock()
        settings = self._settings
        if due.kind == NotificationKind.ACKNOWLEDGEMENT:
            base = settings.public_base_url
            facts, token = await self._runtime.database.write(
                lambda conn: _ticket_facts(conn, due, now)
            )
            return acknowledgement(
                settings,
                server,
                recipient=due.recipient,
                message_id=due.message_id,
                ticket=facts,
                progress_url=f"{base}/progress/{token}" if token else None,
                in_reply_to=due.detail.get("in_reply_to"),
                reply_to=due.detail.get("reply_to"),
                now=now,
            )
        if due.kind == NotificationKind.URGE:
            facts, _ = await self._runtime.database.write(
                lambda conn: _ticket_facts(conn, due, now, link=False)
            )
            urged = due.detail.get("urged_at")
            return urge_notice(
                settings,
                server,
                recipient=due.recipient,
                message_id=due.message_id,
                department=str(due.detail.get("department") or facts.department or ""),
                ticket=facts,
                urged_at=datetime.fromisoformat(urged) if urged else None,
                now=now,
            )
        raise ValueError(f"unknown notification kind {due.kind!r}")

    async def _record_unrecorded(self, report: Sweep) -> None:
        """Outcomes whose recording failed last time, oldest first; stops at a failure."""
        while self._unrecorded:
            await self._record(self._unrecorded[0], report)
            self._unrecorded.pop(0)

    async def _record(self, outcome: _Outcome, report: Sweep) -> None:
        recorded = await self._runtime.database.write(
            partial(
                record_attempt,
                outbox=NOTIFICATIONS,
                due=outcome.due,
                outcome=outcome.delivery.outcome(),
                policy=self._outbox,
                dead_letter_queue=self._queue_name,
                now=outcome.at,
            )
        )
        self._count(outcome, recorded, report)

    def _count(self, outcome: _Outcome, recorded: Recorded, report: Sweep) -> None:
        due, delivery, state = outcome.due, outcome.delivery, recorded.status
        dead = state == RowStatus.DEAD
        report.attempts += 1
        report.sent += delivery.sent
        report.dead += dead
        label = "sent" if delivery.sent else ("dead" if dead else "retry")
        self._runtime.metrics.notifications.labels(kind=due.kind, outcome=label).inc()
        (log.info if delivery.sent else log.warning)(
            "notification_attempt",
            number=due.number,
            notification=due.kind,
            notification_id=due.id,
            attempt=due.attempt,
            sent=delivery.sent,
            state=state,
            answer=delivery.detail,
        )


def _ticket_facts(
    conn: Connection, due: DueNotification, now: datetime, *, link: bool = True
) -> tuple[TicketFacts, str | None]:
    """The ticket as it is now and, for an acknowledgement, a new progress link. The link's
    contact is the address in lower case: the canonical form the web channel gives an email
    contact, so the link and a "number + contact" inquiry agree."""
    row = conn.execute(
        select(
            col(Ticket.number), col(Ticket.status), col(Ticket.department), col(Ticket.due_at)
        ).where(col(Ticket.id) == due.ticket_id)
    ).one()
    reason = due.detail.get("reason")
    facts = TicketFacts(
        row.number, row.status, row.department, as_utc(row.due_at), str(reason) if reason else None
    )
    if not link:
        return facts, None
    return facts, issue_link(conn, number=row.number, contact=due.recipient.lower(), now=now)
