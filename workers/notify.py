"""The notify worker: sends the notification outbox (acknowledgements, urge, dispatch and
clock notices by mail; acknowledgements and results by SMS).

Each sweep, every ``email.outbox.poll_interval_seconds``:

1. queue a notice for each new ``urge`` event of a department that has an ``email``, one
   for each clock due soon or breached (to it and the coordinating office), with
   ``email.dispatch_notices`` one for each dispatch to such a department, and an SMS for
   each new feedback given by SMS (``channels/sms/notices.py``);
2. take replays of dead notifications (``shouli dead-letters replay ID`` publishes to
   ``<prefix>.notifications``);
3. claim the rows that are due (a lease: competing workers never hold the same row), render
   each with the ticket as it is now (an acknowledgement gets a fresh progress link), send it
   through ``email.outbound`` and record the outcome at once; then the SMS rows the same way
   through ``sms.provider``.

Without ``email.outbound`` no mail row is claimed: they wait, and go out once it is
configured. SMS rows are queued only while ``sms.provider`` is set.
A step whose store or queue is down is logged once per outage and tried again, with a
growing pause. An outcome that could not be recorded (the store went away after the server
said 250) is kept in memory and recorded first at the next sweep, so that short outages do
not turn into a second copy of the mail once the lease runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
import structlog
from sqlalchemy import Connection, select
from sqlmodel import col

from channels.email.acknowledgement import (
    DispatchFacts,
    TicketFacts,
    acknowledgement,
    batch_notice,
    clock_notice,
    dispatch_notice,
    result_mail,
    urge_notice,
)
from channels.email.notices import (
    queue_clock_notices,
    queue_dispatch_notices,
    queue_result_mails,
    queue_urge_notices,
)
from channels.email.outbound import Delivery, send_mail
from channels.email.settings import OutboundSmtp
from channels.runtime import Runtime
from channels.sms.notices import queue_sms_results
from channels.sms.providers import SmsMessage, SmsSender, sender_for
from channels.sms.texts import local_deadline, progress_line, render
from channels.web.progress import issue_link
from channels.workorder.notices import queue_work_orders
from channels.workorder.sender import post_work_order
from store.db import is_outage
from store.models import Complainant, Ticket
from store.notification_models import NotificationKind
from store.notification_outbox import NOTIFICATIONS, DueNotification, last_swept_event
from store.outbox import AttemptOutcome, Recorded, claim_due, record_attempt, replay
from store.outbox_states import RowStatus
from store.tickets import as_utc
from workers.replays import take_replays
from workers.settings import WorkerSettings
from workers.settle import settler_of
from workers.steps import Steps

log = structlog.get_logger(__name__)
_SEND_CONCURRENCY = 8
_MAX_PAUSE_SECONDS = 60.0


@dataclass
class Sweep:
    queued: dict[str, int] = field(default_factory=dict)  # by kind: rows the event sweeps queued
    replayed: int = 0
    attempts: int = 0
    sent: int = 0
    dead: int = 0


class EventSweep(Protocol):
    """Queues the rows owed for the events after ``after_event_id``: (rows, newest seen)."""

    def __call__(
        self, conn: Connection, *, after_event_id: int, now: datetime
    ) -> tuple[int, int]: ...


@dataclass(frozen=True)
class _Outcome:
    due: DueNotification
    delivery: AttemptOutcome
    at: datetime


class NotifyWorker:
    name = "notify"

    def __init__(
        self,
        runtime: Runtime,
        worker: WorkerSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        environ: Mapping[str, str] | None = None,
        sms_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._email = runtime.settings.email
        self._outbox = runtime.settings.email.outbox
        self._clock = clock
        self._environ = environ
        self._sms = runtime.settings.sms
        self._departments = runtime.settings.departments
        self._zone = ZoneInfo(runtime.settings.organisation.timezone)
        # The event sweeps, each queueing rows of one kind from the events after its cursor
        # (the newest event it saw; after a restart, that of the newest row of its kind).
        kind, offices, email = NotificationKind, self._departments, self._email
        self._event_sweeps: tuple[tuple[str, EventSweep], ...] = (
            (kind.URGE, partial(queue_urge_notices, departments=offices, email=email)),
            (kind.SMS_RESULT, partial(queue_sms_results, sms=self._sms, zone=self._zone)),
            (kind.RESULT, partial(queue_result_mails, email=email)),
            (kind.WORK_ORDER, partial(queue_work_orders, departments=offices)),
            (kind.DISPATCH, partial(queue_dispatch_notices, departments=offices, email=email)),
            (kind.CLOCK, partial(queue_clock_notices, departments=offices, email=email)),
        )
        self._after: dict[str, int] = {}
        self._sms_client = sms_client
        self._owns_sms_client = sms_client is None
        self._sms_sender: SmsSender | None = None
        self._queue_name = runtime.names.notifications
        self._prepared = False
        self._unrecorded: list[_Outcome] = []
        self._steps = Steps(self.name, log)
        self._settler = settler_of(runtime, worker)
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
        await self.close()
        log.info("notify_stopped")

    async def close(self) -> None:
        if self._owns_sms_client and self._sms_client is not None:
            await self._sms_client.aclose()
            self._sms_client = None

    async def sweep(self, *, strict: bool = True) -> Sweep | None:
        """One pass over every step. ``strict`` (tests) raises the first failure; otherwise a
        failing step is logged once per outage, the others still run, and the pass returns
        None (the loop then pauses longer)."""
        report = Sweep()
        steps: list[tuple[str, Callable[[Sweep], Awaitable[None]]]] = [
            ("prepare", self._prepare),
            *(
                (f"queue_{kind}", partial(self._sweep_events, kind, queue))
                for kind, queue in self._event_sweeps
            ),
            ("replays", self._take_replays),
            ("deliver", self._deliver),
            ("deliver_sms", self._deliver_sms),
            ("deliver_work_orders", self._deliver_work_orders),
        ]
        return report if await self._steps.run(steps, report, strict=strict) else None

    async def _prepare(self, _report: Sweep) -> None:
        if self._prepared:
            return
        await self._runtime.queue.declare(self._queue_name)
        for kind, _ in self._event_sweeps:
            self._after[kind] = await self._runtime.database.write(
                partial(last_swept_event, kind=kind)
            )
        self._prepared = True

    async def _sweep_events(self, kind: str, queue: EventSweep, report: Sweep) -> None:
        if not self._prepared:
            return
        now, after = self._clock(), self._after[kind]
        queued, self._after[kind] = await self._runtime.database.write(
            lambda conn: queue(conn, after_event_id=after, now=now)
        )
        report.queued[kind] = queued
        if queued:
            log.info("notices_queued", notification=kind, count=queued)

    async def _deliver_work_orders(self, report: Sweep) -> None:
        hooks = {d.key: d.webhook for d in self._departments if d.webhook is not None}
        if not hooks:
            return
        client = self._http()
        due = await self._claim(NotificationKind.WEBHOOK)

        async def send(item: DueNotification) -> AttemptOutcome:
            hook = hooks.get(item.recipient)
            if hook is None:
                detail = "the department has no webhook any more"
                return AttemptOutcome(False, permanent=True, detail=detail)
            order = await self._runtime.database.write(lambda conn: _work_order(conn, item))
            return await post_work_order(client, hook, order, self._clock)

        await self._send_all(due, send, report)

    async def _claim(self, kinds: tuple[str, ...]) -> list[DueNotification]:
        """The due rows of one transport, leased to this worker."""
        now = self._clock()
        lease = timedelta(seconds=self._outbox.lease_seconds)
        limit = self._outbox.batch_size
        return await self._runtime.database.write(
            lambda conn: claim_due(conn, NOTIFICATIONS, now, lease=lease, limit=limit, kinds=kinds)
        )

    def _http(self) -> httpx.AsyncClient:
        """One client for every HTTP delivery (SMS gateway, work-order systems), kept open."""
        if self._sms_client is None:
            self._sms_client = httpx.AsyncClient()
        return self._sms_client

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
        due = await self._claim(NotificationKind.MAIL)

        async def send(item: DueNotification) -> AttemptOutcome:
            return (await self._send(item, server)).outcome()

        await self._send_all(due, send, report)

    async def _deliver_sms(self, report: Sweep) -> None:
        if not self._sms.enabled:
            return
        if self._sms_sender is None:
            self._sms_sender = sender_for(self._sms, self._http(), self._clock)
        sender = self._sms_sender
        if sender is None:
            return
        due = await self._claim(NotificationKind.SMS)

        async def send(item: DueNotification) -> AttemptOutcome:
            try:
                message = await self._sms_message(item)
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.exception("notification_render_failed", notification_id=item.id)
                detail = f"render failed: {type(exc).__name__}"
                return AttemptOutcome(False, permanent=True, detail=detail)
            return await sender.send(message)

        await self._send_all(due, send, report)

    async def _send_all(
        self,
        due: list[DueNotification],
        send: Callable[[DueNotification], Awaitable[AttemptOutcome]],
        report: Sweep,
    ) -> None:
        """Send each claimed row (a few at a time) and record its outcome at once."""
        gate = asyncio.Semaphore(_SEND_CONCURRENCY)

        async def one(item: DueNotification) -> None:
            async with gate:
                delivery = await send(item)
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

    async def _sms_message(self, due: DueNotification) -> SmsMessage:
        now, settings = self._clock(), self._settings
        facts, token = await self._runtime.database.write(
            lambda conn: _ticket_facts(
                conn, due, now, link=due.kind == NotificationKind.SMS_ACKNOWLEDGEMENT
            )
        )
        params = {
            "organisation": settings.organisation.name,
            "number": facts.number,
            "due": local_deadline(facts.due_at, self._zone),
            "progress": progress_line(settings.public_base_url, token),
            "result": str(due.detail.get("result") or ""),
            "hotline": settings.organisation.hotline,
        }
        kind = "ack" if due.kind == NotificationKind.SMS_ACKNOWLEDGEMENT else "result"
        text = render(self._sms.templates[kind], params)
        return SmsMessage(due.recipient, kind, text, params, due.message_id)

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
        if due.kind == NotificationKind.DISPATCH:
            confidential = bool(due.detail.get("confidential", True))
            facts, matter = await self._runtime.database.write(
                lambda conn: _dispatch_facts(conn, due, hide=confidential)
            )
            return dispatch_notice(
                settings,
                server,
                recipient=due.recipient,
                message_id=due.message_id,
                department=str(due.detail.get("department") or facts.department or ""),
                ticket=facts,
                matter=matter,
                confidential=confidential,
                now=now,
            )
        if due.kind == NotificationKind.CLOCK:
            facts, _ = await self._runtime.database.write(
                lambda conn: _ticket_facts(conn, due, now, link=False)
            )
            due_at = due.detail.get("due_at")
            return clock_notice(
                settings,
                server,
                recipient=due.recipient,
                message_id=due.message_id,
                department=str(due.detail.get("department") or ""),
                ticket=facts,
                clock=str(due.detail.get("clock") or ""),
                due_at=datetime.fromisoformat(due_at) if due_at else None,
                breached=bool(due.detail.get("breached")),
                now=now,
                escalated_after=due.detail.get("escalated_after"),
            )
        if due.kind == NotificationKind.RESULT:
            facts, _ = await self._runtime.database.write(
                lambda conn: _ticket_facts(conn, due, now, link=False)
            )
            return result_mail(
                settings,
                server,
                recipient=due.recipient,
                message_id=due.message_id,
                ticket=facts,
                result=str(due.detail.get("result") or ""),
                in_reply_to=due.detail.get("in_reply_to"),
                reply_to=due.detail.get("reply_to"),
                now=now,
            )
        if due.kind == NotificationKind.BATCH:
            facts, _ = await self._runtime.database.write(
                lambda conn: _ticket_facts(conn, due, now, link=False)
            )
            return batch_notice(
                settings,
                server,
                recipient=due.recipient,
                message_id=due.message_id,
                department=str(due.detail.get("department") or ""),
                ticket=facts,
                batch=str(due.detail.get("batch") or ""),
                area=str(due.detail.get("area") or ""),
                members=int(due.detail.get("members") or 0),
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
                outcome=outcome.delivery,
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


def _dispatch_facts(
    conn: Connection, due: DueNotification, *, hide: bool
) -> tuple[TicketFacts, DispatchFacts]:
    """The ticket now, and the person only when they did not ask for confidentiality (the
    row says so; a row without the mark is treated as confidential)."""
    row = conn.execute(
        select(
            col(Ticket.number),
            col(Ticket.status),
            col(Ticket.department),
            col(Ticket.due_at),
            col(Ticket.subject),
            col(Ticket.category),
            col(Complainant.name),
            col(Complainant.phone),
        )
        .outerjoin(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
        .where(col(Ticket.id) == due.ticket_id)
    ).one()
    facts = TicketFacts(row.number, row.status, row.department, as_utc(row.due_at))
    matter = DispatchFacts(
        subject=row.subject,
        category=row.category,
        complainant_name=None if hide else row.name,
        complainant_phone=None if hide else row.phone,
    )
    return facts, matter


def _work_order(conn: Connection, due: DueNotification) -> dict[str, Any]:
    """The order as the department's system receives it: the ticket as it is now, and the
    person only when they did not ask for confidentiality (a row without the mark is
    treated as confidential)."""
    row = conn.execute(
        select(
            col(Ticket.number),
            col(Ticket.category),
            col(Ticket.severity),
            col(Ticket.status),
            col(Ticket.due_at),
            col(Ticket.subject),
            col(Ticket.body),
            col(Complainant.name),
            col(Complainant.phone),
            col(Complainant.email),
        )
        .outerjoin(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
        .where(col(Ticket.id) == due.ticket_id)
    ).one()
    due_at = as_utc(row.due_at)
    order: dict[str, Any] = {
        "id": due.message_id,
        "number": row.number,
        "department": due.detail.get("department"),
        "dispatched_at": due.detail.get("dispatched_at"),
        "category": row.category,
        "severity": row.severity,
        "status": row.status,
        "due_at": due_at.isoformat().replace("+00:00", "Z") if due_at else None,
        "subject": row.subject,
        "body": row.body,
    }
    if not due.detail.get("confidential", True):
        order["complainant"] = {"name": row.name, "phone": row.phone, "email": row.email}
    return order
