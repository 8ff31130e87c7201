"""The referrals worker: everything of the referral channel that happens after intake.

Each sweep, every ``referrals.poll_seconds``:

1. register tickets the router made for new orders (clocks, confidential marker, 签收);
2. apply updates that were held because their ticket did not exist yet;
3. queue a reply for each new ``handle`` event of a referral ticket;
4. send the replies and confirmations that are due (signed webhook, or mail through
   ``email.outbound``), recording each attempt as an event; retries back off up to a cap,
   then a dead letter;
5. read each source's drop folder;
6. take replays of dead replies (``shouli dead-letters replay ID`` publishes to
   ``<prefix>.referral-replies``) and forget replay-guard signatures past the window.

Every step is idempotent and safe with several workers; a step whose store or queue is down
is logged and tried again at the next sweep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import httpx
import structlog

from channels.referral.dropfolder import DropFolder
from channels.referral.orders import ReferralIntake, apply_held_updates
from channels.referral.outbox import last_reply_trigger, queue_replies, register_new_tickets
from channels.referral.sender import SendOutcome, send_reply
from channels.referral.signature import forget_signatures, replay_window
from channels.runtime import Runtime
from store.outbox import claim_due, record_attempt, replay
from store.outbox_states import RowStatus
from store.referral_outbox import REPLIES, DueReply
from workers.replays import take_replays
from workers.settings import WorkerSettings
from workers.settle import settler_of
from workers.steps import Steps

log = structlog.get_logger(__name__)
_CLEANUP_SECONDS = 60.0
_SEND_CONCURRENCY = 8
_BATCH = 20


@dataclass
class Sweep:
    registered: int = 0
    updates_applied: int = 0
    replies_queued: int = 0
    attempts: int = 0
    delivered: int = 0
    dead: int = 0
    replayed: int = 0
    files: dict[str, list[str]] = field(default_factory=dict)


class ReferralsWorker:
    name = "referrals"

    def __init__(
        self,
        runtime: Runtime,
        worker: WorkerSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings.referrals
        self._zone = ZoneInfo(runtime.settings.organisation.timezone)
        self._clock = clock
        self._client = client
        self._owns_client = client is None
        self._queue_name = runtime.names.referral_replies
        intake = ReferralIntake(runtime, clock=clock)
        self._folders = [
            DropFolder(source, intake, min_age_seconds=self._settings.drop_folder_min_age_seconds)
            for source in self._settings.sources
            if source.drop_folder is not None
        ]
        self._after_event: int | None = None
        self._next_cleanup = 0.0
        self._prepared = False
        self._steps = Steps(self.name, log)
        self._settler = settler_of(runtime, worker)

    async def run(self, stopping: asyncio.Event) -> None:
        log.info(
            "referrals_started",
            sources=[s.key for s in self._settings.sources],
            drop_folders=[str(f.root) for f in self._folders],
        )
        try:
            while not stopping.is_set():
                await self.sweep(strict=False)
                try:
                    await asyncio.wait_for(stopping.wait(), self._settings.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            await self.close()
        log.info("referrals_stopped")

    async def close(self) -> None:
        """Close the HTTP client this worker opened (not one it was given)."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def sweep(self, *, strict: bool = True) -> Sweep:
        """One pass over every step. ``strict`` (tests) raises the first failure; otherwise
        (``run``) a failing step is logged and the others still run, so an outage of the
        store, a bad outbox row or an unreadable drop folder cannot starve the rest."""
        report = Sweep()
        steps: list[tuple[str, Callable[[Sweep], Awaitable[None]]]] = [
            ("prepare", self._prepare),
            ("register", self._register),
            ("held_updates", self._apply_held),
            ("queue_replies", self._queue_replies),
            ("deliver", self._deliver),
            ("drop_folders", self._scan_folders),
            ("replays", self._take_replays),
            ("forget_signatures", self._forget_signatures),
        ]
        await self._steps.run(steps, report, strict=strict)
        return report

    async def _prepare(self, _report: Sweep) -> None:
        if self._prepared:
            return
        await self._runtime.queue.declare(self._queue_name)
        self._after_event = await self._runtime.database.write(last_reply_trigger)
        self._prepared = True

    async def _register(self, report: Sweep) -> None:
        now = self._clock()
        report.registered = await self._runtime.database.write(
            lambda conn: register_new_tickets(conn, self._settings, self._zone, now)
        )

    async def _apply_held(self, report: Sweep) -> None:
        report.updates_applied = await apply_held_updates(
            self._runtime,
            supervision_severity=self._settings.supervision_severity,
            now=self._clock(),
        )

    async def _queue_replies(self, report: Sweep) -> None:
        if not self._prepared:
            return
        now = self._clock()
        after = self._after_event or 0
        report.replies_queued, self._after_event = await self._runtime.database.write(
            lambda conn: queue_replies(conn, self._settings, self._zone, after, now)
        )

    async def _scan_folders(self, report: Sweep) -> None:
        problems: list[Exception] = []
        for folder in self._folders:
            try:
                result = await folder.scan()
            except OSError as exc:  # this folder is unusable; the others are still read
                problems.append(exc)
                continue
            if result.processed or result.failed:
                report.files[folder.source.key] = result.processed + result.failed
        if problems:
            raise problems[0]

    async def _forget_signatures(self, _report: Sweep) -> None:
        if time.monotonic() < self._next_cleanup:
            return
        cutoff = self._clock() - replay_window(self._settings.signature_max_age_seconds)
        await self._runtime.database.write(lambda conn: forget_signatures(conn, cutoff))
        self._next_cleanup = time.monotonic() + _CLEANUP_SECONDS

    async def _deliver(self, report: Sweep) -> None:
        replies = self._settings.replies
        lease = timedelta(seconds=replies.timeout_seconds + 30)
        now = self._clock()
        due = await self._runtime.database.write(
            lambda conn: claim_due(conn, REPLIES, now, lease=lease, limit=_BATCH)
        )
        if not due:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": "shouli-referrals/1"})
        client = self._client
        limit = asyncio.Semaphore(_SEND_CONCURRENCY)

        async def send(reply: DueReply) -> tuple[DueReply, SendOutcome]:
            async with limit:
                source = self._settings.source(reply.source)
                outcome = await send_reply(
                    client,
                    source,
                    reply.payload,
                    delivery_id=f"{reply.number}-{reply.kind}-{reply.id}",
                    timeout=replies.timeout_seconds,
                    mapping=self._settings.mappings.get(source.mapping) if source else None,
                    outbound=self._runtime.settings.email.outbound,
                )
                return reply, outcome

        results = await asyncio.gather(*(send(reply) for reply in due))
        finished = self._clock()
        recorded = await self._runtime.database.write(
            lambda conn: [
                record_attempt(
                    conn,
                    REPLIES,
                    reply,
                    outcome.outcome(),
                    policy=replies,
                    dead_letter_queue=self._queue_name,
                    now=finished,
                )
                for reply, outcome in results
            ]
        )
        for (reply, outcome), state in zip(results, recorded, strict=True):
            report.attempts += 1
            report.delivered += outcome.delivered
            report.dead += state.status == RowStatus.DEAD
            log_method = log.info if outcome.delivered else log.warning
            log_method(
                "referral_reply_attempt",
                number=reply.number,
                source=reply.source,
                reply=reply.kind,
                attempt=reply.attempt,
                delivered=outcome.delivered,
                status=outcome.status,
                state=state.status,
                error=outcome.error,
            )

    async def _take_replays(self, report: Sweep) -> None:
        if not self._prepared:
            return

        async def again(outbox_id: int) -> bool:
            now = self._clock()
            return await self._runtime.database.write(
                partial(replay, outbox=REPLIES, row_id=outbox_id, now=now)
            )

        report.replayed = await take_replays(
            self._runtime.queue, self._queue_name, self._settler, key=REPLIES.id_key, replay=again
        )
