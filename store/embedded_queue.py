"""The embedded durable queue: messages are rows of the store's ``queue_messages`` table.

Same guarantees as the RabbitMQ backend (see ``ingest/queue.py``), so ``make run`` needs no
broker and a crash loses nothing that was committed:

* a publish returns after its transaction commits (SQLite WAL with ``synchronous=FULL``);
  concurrent publishes are grouped into one transaction (group commit) so the fsync is
  shared instead of paid once per HTTP request;
* a receive *leases* rows by pushing ``available_at`` one visibility timeout into the future
  and stamping a lease token; a consumer that dies simply lets the lease run out;
* ack deletes, retry re-schedules with ``attempt + 1``, both only for the current lease;
* a row delivered ``delivery_limit`` times without settlement moves to ``<queue>.dead``.

On PostgreSQL the lease query uses ``FOR UPDATE SKIP LOCKED`` so competing workers never
wait for each other's rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, TextClause, text

from ingest.queue import BrokerSettings, Delivery, ExpiredMessage, Outgoing, QueueUnavailable
from ingest.queues import dead_queue
from store.db import STORE_ERRORS, Database

# Idle polling is a read-only probe (WAL readers do not touch the write lock), so it can be
# frequent: another process's publish is seen within _POLL_MAX.
_POLL_MIN = 0.002
_POLL_MAX = 0.02


@dataclass(frozen=True)
class _Lease:
    row_id: int
    token: str


@dataclass
class _PendingPublish:
    queue: str
    messages: Sequence[Outgoing]
    done: asyncio.Future[None]


class EmbeddedQueue:
    def __init__(
        self,
        database: Database,
        settings: BrokerSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = database
        self._settings = settings
        self._clock = clock
        self._wakeups: dict[str, asyncio.Event] = {}
        self._pending: list[_PendingPublish] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        skip_locked = "" if database.is_sqlite else " FOR UPDATE SKIP LOCKED"
        self._lease_sql = text(
            "UPDATE queue_messages SET lease = :token, available_at = :until,"
            " deliveries = deliveries + 1"
            " WHERE id IN (SELECT id FROM queue_messages"
            " WHERE queue = :queue AND available_at <= :now"
            f" ORDER BY id LIMIT :limit{skip_locked})"
            " RETURNING id, message_id, body, attempt"
        )
        self._insert_sql = text(
            "INSERT INTO queue_messages"
            " (queue, message_id, body, attempt, deliveries, available_at, enqueued_at)"
            " VALUES (:queue, :message_id, :body, :attempt, 0, :now, :now)"
        )
        self._probe_sql = text(
            "SELECT 1 FROM queue_messages WHERE queue = :queue AND available_at <= :now LIMIT 1"
        )
        self._expire_sql = text(
            "UPDATE queue_messages SET queue = :dead, lease = NULL"
            " WHERE queue = :queue AND available_at <= :now AND deliveries >= :limit"
        )

    async def connect(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        for wakeup in self._wakeups.values():
            wakeup.set()

    async def declare(self, queue: str) -> None:
        self._wakeups.setdefault(queue, asyncio.Event())

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_PendingPublish(queue, messages, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        await asyncio.shield(done)

    async def _flush_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            now = self._clock()
            rows = [
                {
                    "queue": item.queue,
                    "message_id": message.message_id,
                    "body": message.body,
                    "attempt": message.attempt,
                    "now": now,
                }
                for item in batch
                for message in item.messages
            ]
            try:
                await self._db.write(self._inserter(rows))
            except STORE_ERRORS as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(QueueUnavailable(f"store did not commit: {exc}"))
                continue
            except BaseException as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                raise
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)
                self._wakeups.setdefault(item.queue, asyncio.Event()).set()

    def _inserter(self, rows: list[dict[str, Any]]) -> Callable[[Connection], object]:
        return lambda conn: conn.execute(self._insert_sql, rows)

    async def receive(self, queue: str, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        wakeup = self._wakeups.setdefault(queue, asyncio.Event())
        pause = _POLL_MIN
        while not self._closed:
            wakeup.clear()
            deliveries = await self._lease(queue, max_messages)
            if deliveries:
                return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Publishes in this process wake us at once; another process's are found by
            # polling, backing off while the queue stays empty.
            try:
                await asyncio.wait_for(wakeup.wait(), min(pause, remaining))
                pause = _POLL_MIN
            except TimeoutError:
                pause = min(pause * 2, _POLL_MAX)
        return []

    async def _lease(self, queue: str, max_messages: int) -> list[Delivery]:
        now = self._clock()
        token = uuid.uuid4().hex
        try:
            async with self._db.read_engine.connect() as reader:
                probe = await reader.execute(self._probe_sql, {"queue": queue, "now": now})
                if probe.first() is None:
                    return []
            expire = {
                "dead": dead_queue(queue),
                "queue": queue,
                "now": now,
                "limit": self._settings.delivery_limit,
            }
            lease = {
                "token": token,
                "until": now + self._settings.visibility_timeout,
                "queue": queue,
                "now": now,
                "limit": max_messages,
            }

            def take(conn: Connection) -> list[Row[Any]]:
                conn.execute(self._expire_sql, expire)
                return list(conn.execute(self._lease_sql, lease).all())

            rows = await self._db.write(take)
        except STORE_ERRORS as exc:
            raise QueueUnavailable(f"store did not answer: {exc}") from exc
        rows.sort(key=lambda row: row.id)
        return [
            Delivery(
                queue=queue,
                body=bytes(row.body),
                message_id=row.message_id,
                attempt=row.attempt,
                handle=_Lease(row.id, token),
            )
            for row in rows
        ]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        await self._execute(
            text("DELETE FROM queue_messages WHERE id = :id AND lease = :token"),
            [_lease_params(d) for d in deliveries],
        )

    async def retry(self, delivery: Delivery, delay: float) -> None:
        await self._execute(
            text(
                "UPDATE queue_messages SET attempt = attempt + 1, available_at = :at,"
                " lease = NULL, deliveries = 0 WHERE id = :id AND lease = :token"
            ),
            [{**_lease_params(delivery), "at": self._clock() + delay}],
        )

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        await self._execute(
            text(
                "UPDATE queue_messages SET available_at = :now, lease = NULL,"
                " deliveries = deliveries - 1 WHERE id = :id AND lease = :token"
            ),
            [{**_lease_params(d), "now": self._clock()} for d in deliveries],
        )

    async def take_expired(self, queue: str) -> list[ExpiredMessage]:
        dead = dead_queue(queue)
        try:
            statement = text(
                "DELETE FROM queue_messages WHERE queue = :dead"
                " RETURNING id, message_id, body, attempt, deliveries"
            )
            result = await self._db.write(
                lambda conn: list(conn.execute(statement, {"dead": dead}).all())
            )
            rows = sorted(result, key=lambda row: row.id)
        except STORE_ERRORS as exc:
            raise QueueUnavailable(f"store did not answer: {exc}") from exc
        return [
            ExpiredMessage(
                queue=queue,
                body=bytes(row.body),
                message_id=row.message_id,
                attempt=row.attempt,
                reason=(
                    f"delivery limit exceeded: delivered {row.deliveries} times without being"
                    " settled (the consumer crashed or timed out on it each time)"
                ),
            )
            for row in rows
        ]

    async def depth(self, queue: str) -> int:
        async with self._db.read_engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT COUNT(*) FROM queue_messages"
                    " WHERE queue = :queue AND available_at <= :now"
                ),
                {"queue": queue, "now": self._clock()},
            )
            return int(result.scalar_one())

    async def ready(self) -> bool:
        return await self._db.ping()

    async def _execute(self, statement: TextClause, params: list[dict[str, object]]) -> None:
        try:
            await self._db.write(lambda conn: conn.execute(statement, params))
        except STORE_ERRORS as exc:
            raise QueueUnavailable(f"store did not answer: {exc}") from exc


def _lease_params(delivery: Delivery) -> dict[str, object]:
    lease = delivery.handle
    assert isinstance(lease, _Lease), "delivery does not belong to the embedded queue"
    return {"id": lease.row_id, "token": lease.token}
