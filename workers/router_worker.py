"""The router worker: consumes drafts in micro-batches and completes them into tickets.

A batch is routed (pure, in memory), then written in ONE transaction, and only after that
commit are its messages acked: per-item round trips would cap the path at a few hundred
tickets per second. If the batch transaction fails for a reason other than an outage, the
batch is replayed item by item so one poison draft cannot hold back the others.
Idempotent on (channel, source_key): a redelivered or re-sent draft finds its ticket and is
simply acked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError
from sqlalchemy import Connection

from channels.email.notices import queue_acknowledgements, queue_batch_notice
from channels.email.threads import Placed, place_mail
from channels.sms.notices import queue_sms_acknowledgements
from ingest.draft import TicketDraft
from ingest.metrics import Metrics
from ingest.queue import Delivery, QueueBackend, QueueUnavailable
from ingest.queues import QueueNames
from router.batches import BatchRule
from router.calendar import WorkCalendar
from router.clocks import ClockBook
from router.complete import decision_events, intake_clocks
from router.repeats import RepeatRule, contact_locks, hold_contacts
from router.rules import Router
from store.db import STORE_ERRORS, Database, is_outage
from store.numbering import allocate_numbers, period_of
from store.tickets import NewTicket, existing_numbers, insert_tickets
from workers.settings import WorkersSettings
from workers.settle import Done, Outcome, Reject, Retry, Settler

log = structlog.get_logger(__name__)

_EXPIRED_SWEEP_SECONDS = 30.0
_RETRYABLE: tuple[type[BaseException], ...] = (QueueUnavailable, *STORE_ERRORS)


@dataclass(frozen=True)
class _Routed:
    index: int
    draft: TicketDraft
    ticket: NewTicket  # number filled in inside the transaction


class RouterWorker:
    name = "router"

    def __init__(
        self,
        *,
        settings: WorkersSettings,
        queue: QueueBackend,
        database: Database,
        router: Router,
        calendar: WorkCalendar,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._db = database
        self._router = router
        self._calendar = calendar
        self._clocks = ClockBook.from_settings(settings, calendar)
        self._metrics = metrics
        self._clock = clock
        self._queue_name = QueueNames(settings.broker.prefix).drafts
        self._timezone = ZoneInfo(settings.organisation.timezone)
        self._batches = BatchRule(settings)
        # The router's segmenter knows every keyword the repeat rule needs: one per process.
        self._repeats = RepeatRule.for_router(settings, router)
        self._by_account = self._repeats.finder.policy.by_account
        self._settler = Settler(
            queue,
            database,
            settings.worker,
            on_dead_letter=lambda q: metrics.dead_letters.labels(queue=q).inc(),
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set; the batch in hand is finished first."""
        await self._queue.declare(self._queue_name)
        worker = self._settings.worker
        next_sweep = 0.0
        unavailable_since: float | None = None
        log.info("router_started", queue=self._queue_name)
        while not stopping.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    await self._settler.collect_expired(self._queue_name)
                    next_sweep = time.monotonic() + _EXPIRED_SWEEP_SECONDS
                deliveries = await self._queue.receive(
                    self._queue_name, worker.batch_size, timeout=0.5
                )
                if unavailable_since is not None:
                    log.info(
                        "queue_available_again",
                        after_s=round(time.monotonic() - unavailable_since, 1),
                    )
                    unavailable_since = None
                if not deliveries:
                    continue
                results = await self.process(deliveries)
                await self._settler.settle(results)
            except _RETRYABLE as exc:
                # Logged once per outage, not once per poll.
                if unavailable_since is None:
                    unavailable_since = time.monotonic()
                    log.error("router_dependency_unavailable", error=type(exc).__name__)
                await _sleep_or_stop(stopping, 1.0)
        log.info("router_stopped")

    async def process(self, deliveries: Sequence[Delivery]) -> list[tuple[Delivery, Outcome]]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        routed: list[_Routed] = []
        for index, delivery in enumerate(deliveries):
            try:
                draft = TicketDraft.from_bytes(delivery.body)
            except ValidationError as exc:
                outcomes[index] = Reject(f"not a valid ticket draft: {_summarise(exc)}")
                continue
            try:
                routed.append(_Routed(index, draft, self._complete(draft)))
            except Exception as exc:
                # A routing bug is permanent for this draft until fixed: keep it, replay later.
                log.exception("routing_failed", source_key=draft.source_key)
                outcomes[index] = Reject(f"routing failed: {type(exc).__name__}: {exc}")
        if routed:
            for index, outcome in (await self._store(routed)).items():
                outcomes[index] = outcome
        return [
            (d, o if o is not None else Retry("not processed"))
            for d, o in zip(deliveries, outcomes, strict=True)
        ]

    def _complete(self, draft: TicketDraft) -> NewTicket:
        decision = self._router.route(draft)
        clocks, deadline = intake_clocks(draft, decision, self._clocks, self._clock())
        return NewTicket(
            draft=draft,
            number="",
            category=decision.category,
            severity=decision.severity.value,
            status=decision.status,
            valid=decision.valid,
            invalid_reason=decision.invalid_reason,
            department=decision.department,
            due_at=deadline.due_at if deadline else None,
            events=decision_events(draft, decision, deadline),
            clocks=clocks,
        )

    async def _store(self, routed: list[_Routed]) -> dict[int, Outcome]:
        """Write the batch; an outage retries it whole, anything else is isolated item by
        item so that only the draft the store refuses is dead-lettered (at once: it would be
        refused again), with the store's reason."""
        try:
            return await self._write(routed)
        except Exception as exc:
            if is_outage(exc):
                return {r.index: Retry(f"store unavailable: {type(exc).__name__}") for r in routed}
            if len(routed) == 1:
                return {routed[0].index: self._refused(routed[0], exc)}
        outcomes: dict[int, Outcome] = {}
        for item in routed:
            try:
                outcomes.update(await self._write([item]))
            except Exception as exc:
                outcomes[item.index] = (
                    Retry(f"store unavailable: {type(exc).__name__}")
                    if is_outage(exc)
                    else self._refused(item, exc)
                )
        return outcomes

    @staticmethod
    def _refused(item: _Routed, exc: Exception) -> Reject:
        log.error(
            "ticket_refused_by_store", source_key=item.draft.source_key, error=type(exc).__name__
        )
        # The store's own message names the constraint or the bad value, never the text
        # (drafts are made storable before they are queued); cut to keep the row small.
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:500]
        return Reject(f"could not be stored: {type(exc).__name__}: {detail}")

    async def _write(self, routed: list[_Routed]) -> dict[int, Outcome]:
        now = self._clock()
        written = await self._db.write(lambda conn: self._write_batch(conn, routed, now))
        committed = datetime.now(UTC)
        self._metrics.batch_size.observe(len(routed))
        for ticket in written.created:
            channel = ticket.draft.channel.value
            self._metrics.tickets_created.labels(channel=channel, status=ticket.status).inc()
            waited = (committed - ticket.draft.received_at).total_seconds()
            self._metrics.intake_to_commit.observe(max(waited, 0))
            log.info(
                "ticket_created",
                number=ticket.number,
                channel=channel,
                category=ticket.category,
                severity=ticket.severity,
                department=ticket.department,
                status=ticket.status,
            )
        for item, number in written.duplicates:
            self._metrics.duplicates.labels(channel=item.draft.channel.value).inc()
            log.info(
                "duplicate_draft_ignored", source_key=item.draft.source_key, number=number or None
            )
        for item, placed in written.placed:
            log.info(
                "mail_placed_without_ticket",
                source_key=item.draft.source_key,
                number=placed.number,
                placed_as=placed.event,
            )
        return {item.index: Done() for item in routed}

    def _write_batch(self, conn: Connection, routed: list[_Routed], now: datetime) -> _Written:
        """One transaction: skip drafts that already have a ticket, decide repeats, number and
        insert the rest.

        The repeat decision (``router.repeats``) is made here, for every draft, and only
        here. It must see every earlier ticket of the same complainant: those a competing
        worker committed (:func:`hold_contacts` makes it wait for them) and those made
        earlier in this batch, so the batch's tickets are inserted before a later draft of
        one of their complainants is decided. Mail is placed one by one (threading, noise and
        storms look at what the mails before it in the same batch made); everything else is
        inserted in bulk between those points.
        """
        hold_contacts(conn, (r.draft for r in routed), self._repeats.finder.policy)
        existing = existing_numbers(conn, [r.draft.idempotency_key for r in routed])
        written = _Written()
        fresh: dict[tuple[str, str], _Routed] = {}
        for item in routed:
            key = item.draft.idempotency_key
            if key in existing:
                written.duplicates.append((item, existing[key]))
            elif key in fresh:
                written.duplicates.append((item, ""))
            else:
                fresh[key] = item
        pending: list[_Routed] = []
        pending_contacts: set[int] = set()
        for item in fresh.values():
            contacts = set(contact_locks([item.draft], by_account=self._by_account))
            if item.draft.mail is not None or contacts & pending_contacts:
                written.created.extend(self._insert(conn, pending, now))
                pending, pending_contacts = [], set()
            placed: Placed | None = None
            ticket = item.ticket
            if item.draft.mail is not None:
                placed, ticket = place_mail(conn, ticket, self._settings.email, now)
            if placed is None:
                decision = self._repeats.decide(conn, ticket, now=now)
                if decision.merged is not None:
                    placed = Placed(decision.merged, "urge")
                ticket = decision.ticket
            if placed is not None:
                written.placed.append((item, placed))
                continue
            ready = replace(item, ticket=ticket)
            if item.draft.mail is not None:
                written.created.extend(self._insert(conn, [ready], now))
            else:
                pending.append(ready)
                pending_contacts |= contacts
        written.created.extend(self._insert(conn, pending, now))
        return written

    def _insert(self, conn: Connection, items: list[_Routed], now: datetime) -> list[NewTicket]:
        if not items:
            return []
        by_period: dict[str, list[_Routed]] = {}
        prefix = self._settings.organisation.number_prefix
        created: list[NewTicket] = []
        for item in items:
            if item.draft.number:
                # Reserved at intake and already told to the sender.
                created.append(replace(item.ticket, number=item.draft.number))
                continue
            period = period_of(prefix, item.draft.received_at, self._timezone)
            by_period.setdefault(period, []).append(item)
        for period in sorted(by_period):
            batch = by_period[period]
            numbers = allocate_numbers(conn, period, len(batch))
            created.extend(
                replace(item.ticket, number=number)
                for item, number in zip(batch, numbers, strict=True)
            )
        insert_tickets(conn, created, now)
        queue_acknowledgements(conn, created, self._settings.email, now)
        queue_sms_acknowledgements(conn, created, self._settings.sms, self._timezone, now)
        joined = self._batches.apply(conn, created, now)
        queue_batch_notice(conn, joined, self._settings.departments, self._settings.email, now)
        return created


@dataclass
class _Written:
    created: list[NewTicket] = field(default_factory=list)
    duplicates: list[tuple[_Routed, str]] = field(default_factory=list)
    placed: list[tuple[_Routed, Placed]] = field(default_factory=list)


def _summarise(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}"
        for error in exc.errors()[:5]
    ]
    return "; ".join(parts)


async def _sleep_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
