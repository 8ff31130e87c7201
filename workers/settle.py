"""The one place where a handler's outcome becomes ack, delayed retry or dead letter.

Handlers return :class:`Done`, :class:`Retry` (ours or the infrastructure's fault: try again
later) or :class:`Reject` (the message itself is bad: keep it with the reason, never retry).
Retries carry their attempt count in the message and back off exponentially with jitter up to
a cap; after ``max_attempts`` a retry becomes a dead letter too. Nothing is requeued at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from channels.runtime import Runtime
from ingest.backoff import backoff_seconds
from ingest.queue import Delivery, Outgoing, QueueBackend, QueueUnavailable
from store.db import STORE_ERRORS, Database
from store.dead_letters import add_dead_letter
from workers.settings import WorkerSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Retry:
    reason: str


@dataclass(frozen=True)
class Reject:
    reason: str


Outcome = Done | Retry | Reject


class Settler:
    def __init__(
        self,
        queue: QueueBackend,
        database: Database,
        settings: WorkerSettings,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self._queue = queue
        self._db = database
        self._settings = settings
        self._on_dead_letter = on_dead_letter

    async def settle(self, results: Sequence[tuple[Delivery, Outcome]]) -> None:
        await self._queue.ack([d for d, outcome in results if isinstance(outcome, Done)])
        for delivery, outcome in results:
            if isinstance(outcome, Retry):
                if delivery.attempt >= self._settings.max_attempts:
                    await self._dead_letter(
                        delivery,
                        f"gave up after {delivery.attempt} attempts; last error: {outcome.reason}",
                    )
                else:
                    delay = backoff_seconds(delivery.attempt, self._settings)
                    log.warning(
                        "message_retry_scheduled",
                        queue=delivery.queue,
                        attempt=delivery.attempt,
                        delay_s=round(delay, 2),
                        reason=outcome.reason,
                    )
                    await self._queue.retry(delivery, delay)
            elif isinstance(outcome, Reject):
                await self._dead_letter(delivery, outcome.reason)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        try:
            async with self._db.transaction() as session:
                await add_dead_letter(
                    session,
                    queue=delivery.queue,
                    message_id=delivery.message_id,
                    body=delivery.body,
                    reason=reason,
                    attempts=delivery.attempt,
                    at=datetime.now(UTC),
                )
        except STORE_ERRORS:
            # Not recorded, so not acked: the message comes back when the store is back.
            log.error("dead_letter_not_stored", queue=delivery.queue)
            await self._queue.retry(delivery, self._settings.retry_max_seconds)
            return
        await self._queue.ack([delivery])
        log.error(
            "message_dead_lettered", queue=delivery.queue, attempts=delivery.attempt, reason=reason
        )
        if self._on_dead_letter is not None:
            self._on_dead_letter(delivery.queue)

    async def collect_expired(self, queue_name: str) -> int:
        """Record the messages the queue gave up on (consumers kept dying on them)."""
        try:
            expired = await self._queue.take_expired(queue_name)
        except QueueUnavailable:
            return 0
        if not expired:
            return 0
        try:
            async with self._db.transaction() as session:
                for message in expired:
                    await add_dead_letter(
                        session,
                        queue=message.queue,
                        message_id=message.message_id,
                        body=message.body,
                        reason=message.reason,
                        attempts=message.attempt,
                        at=datetime.now(UTC),
                    )
        except STORE_ERRORS:
            # Taken off the queue but not recorded: put them back rather than lose them. A
            # message that keeps killing its consumer expires again and is collected later.
            log.error("dead_letters_not_stored", count=len(expired))
            for message in expired:
                await self._queue.publish(
                    message.queue, [Outgoing(message.body, message.message_id, message.attempt)]
                )
            return 0
        for message in expired:
            log.error("message_dead_lettered", queue=message.queue, reason=message.reason)
            if self._on_dead_letter is not None:
                self._on_dead_letter(message.queue)
        return len(expired)


def settler_of(runtime: Runtime, worker: WorkerSettings) -> Settler:
    """The settle point of a worker that consumes one of ``runtime``'s queues."""
    return Settler(
        runtime.queue,
        runtime.database,
        worker,
        on_dead_letter=lambda q: runtime.metrics.dead_letters.labels(queue=q).inc(),
    )
