"""The RabbitMQ backend of :class:`ingest.queue.QueueBackend`, through aio-pika.

Topology, per queue ``q`` (all durable, all on the default exchange so a queue name is its
routing key):

* ``q``: a **quorum** queue. Quorum queues count unsuccessful deliveries themselves
  (``x-delivery-count``) and, past ``x-delivery-limit``, dead-letter the message
  (https://www.rabbitmq.com/quorum-queues.html#poison-message-handling). That is our "a
  consumer keeps dying on it" guard, and it works even when no worker survives to count.
* ``q.dead``: where those messages go (``x-dead-letter-exchange`` "" +
  ``x-dead-letter-routing-key``). :meth:`RabbitQueue.take_expired` drains it.
* ``q.delay.<ms>``: one quorum queue per delay bucket with ``x-message-ttl = <ms>`` and
  dead-lettering back to ``q``. A retry is published there; when its TTL runs out the broker
  moves it to ``q`` (reason ``expired``). Every message in one bucket has the same TTL, so they
  expire in FIFO order: RabbitMQ only expires messages at the head of a queue
  (https://www.rabbitmq.com/ttl.html#per-message-ttl-caveats), which is why delays go to
  per-TTL queues instead of per-message ``expiration``.

Dead-lettering uses the default at-most-once strategy, not ``at-least-once``: on RabbitMQ
3.10 a ``rabbitmqctl stop_app`` / ``start_app`` leaves ``rabbit_fifo_dlx_sup`` unstarted, and
every quorum queue declared with ``at-least-once`` then crashes on becoming leader (noproc),
so all intake fails until the whole node restarts (seen in our broker-restart tests). The
at-most-once hand-off can drop a message only if the target queue, on the same node, is
unavailable at the instant of expiry or rejection.

**Delay buckets.** ``retry(delay)`` rounds the delay *up* to ``125 ms * 2**k`` (125 ms,
250 ms, 500 ms, 1 s, 2 s, 4 s, ... ~48.5 days, the largest a 32-bit ``x-message-ttl`` allows),
so a retry never comes back early and comes back at most twice as late; the exponential
backoff of ``workers/settle.py`` (base 1 s, doubling) lands on buckets exactly, and its
jittered values need at most ~10 delay queues per main queue. Delays of 0 or less skip the
delay queue; longer than the largest bucket are clamped to it.

Queue arguments are fixed at declaration: declaring ``q`` again with another
``delivery_limit`` fails with ``PRECONDITION_FAILED`` and :meth:`declare` raises
:class:`QueueError` saying so (delete the queue, or move the setting to a policy).

**Delivery counts and release.** On RabbitMQ 3.10 a quorum queue counts *every* return of a
message as a delivery attempt: ``basic.nack``/``basic.reject`` with ``requeue=true`` and the
close of a channel holding it unacked alike (checked against 3.10.8: three
``nack(requeue=True)`` with ``x-delivery-limit: 2`` dead-letter the message). So
:meth:`RabbitQueue.release` does not requeue: it republishes an identical copy (same body,
``message_id`` and attempt) with a publisher confirm and only then acks the original; the copy
starts with a delivery count of 0 at the tail of the queue. Only when that publish fails does
it fall back to ``nack(requeue=True)``, which costs the message one delivery. :meth:`close`
does the same for messages prefetched but never handed out, so a rolling restart does not
push the head of a backlog towards its delivery limit. Deliveries handed out and neither
settled nor released when the channel closes *are* counted: that is how a crashing consumer
is detected.

**Reconnects.** :func:`aio_pika.connect_robust` reopens the connection, its channels, the
queues declared on them and their consumers after a broker restart; the interval between
attempts grows with the length of the outage up to ``reconnect_max_delay``. A delivery whose
channel died can never be acked on the new channel (aio-pika acks on the channel that
delivered it, and that one is closed), and the broker has already put it back; ack/release
of such a delivery logs and moves on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustQueue,
    ConnectionParameter,
    ConsumerTag,
    HeadersType,
)
from aio_pika.exceptions import (
    CONNECTION_EXCEPTIONS,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    MessageProcessError,
    PublishError,
)
from aiormq.connection import parse_timeout
from yarl import URL

from ingest.queue import (
    BrokerSettings,
    Delivery,
    ExpiredMessage,
    Outgoing,
    QueueError,
    QueueUnavailable,
)
from ingest.queues import dead_queue

log = structlog.get_logger(__name__)

ATTEMPT_HEADER = "x-shouli-attempt"

# 125 ms * 2**k; the last one (4,194,304,000 ms) is the largest below the 2**32 - 1 ms cap of
# x-message-ttl.
DELAY_BUCKETS_MS: tuple[int, ...] = tuple(125 * 2**k for k in range(26))

# Headers the broker writes. A copy (retry, release) starts clean so its history does not
# mislead: x-first-death-reason of a retried message would otherwise say "expired" (from the
# delay queue) even when it later dies of the delivery limit.
_BROKER_HEADERS = ("x-death", "x-delivery-count")
_BROKER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")

_DEATH_REASONS = {
    "delivery_limit": "delivery limit exceeded",
    "expired": "expired",
    "rejected": "rejected by a consumer",
    "maxlen": "queue length limit exceeded",
}

# take_expired hands back at most this many per call; the next call gets the rest.
_EXPIRED_BATCH = 10_000

# First pause between reconnection attempts; it then grows with the outage.
_RECONNECT_MIN_DELAY = 0.5


def delay_bucket_ms(delay: float) -> int:
    """The delay queue TTL (ms) for ``delay`` seconds: rounded up, never early; 0 = no delay."""
    if not delay > 0:  # also catches NaN
        return 0
    wanted = math.ceil(delay * 1000)
    for bucket in DELAY_BUCKETS_MS:
        if bucket >= wanted:
            return bucket
    return DELAY_BUCKETS_MS[-1]


def delay_queue_name(queue: str, bucket_ms: int) -> str:
    return f"{queue}.delay.{bucket_ms}"


def companion_queue_names(queue: str) -> list[str]:
    """Every queue :class:`RabbitQueue` may create for ``queue`` (for tests and clean-up)."""
    return [queue, dead_queue(queue)] + [
        delay_queue_name(queue, bucket) for bucket in DELAY_BUCKETS_MS
    ]


class BackoffRobustConnection(aio_pika.RobustConnection):
    """A robust connection whose reconnect interval grows with the outage, up to a cap.

    aio-pika sleeps ``reconnect_interval`` between attempts and reads the attribute each time,
    so it is a property here: the time since the connection was lost, at least the initial
    interval and at most ``reconnect_max_delay``. Attempts therefore come at roughly 0.5, 1,
    2, 4, ... seconds into the outage: quick after a blip, and a fleet of workers does not
    hammer a broker that is down for minutes.
    """

    PARAMETERS: tuple[ConnectionParameter, ...] = (
        *aio_pika.RobustConnection.PARAMETERS,
        ConnectionParameter(name="reconnect_max_delay", parser=parse_timeout, default="30"),
    )

    def __init__(
        self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        self._initial_delay: float = _RECONNECT_MIN_DELAY
        self._down_since: float | None = None
        super().__init__(url, loop, **kwargs)
        self._max_delay = float(self.kwargs.pop("reconnect_max_delay"))

    @property
    def reconnect_interval(self) -> float:
        if self._down_since is None:
            return self._initial_delay
        outage = self.loop.time() - self._down_since
        return min(self._max_delay, max(self._initial_delay, outage))

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        self._initial_delay = float(value)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if self._down_since is None:
            self._down_since = self.loop.time()
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        # Only now: the parent restores channels, queues and consumers first and raises
        # (keeping the outage running) if that fails.
        self._down_since = None


@dataclass
class _Consumer:
    queue: AbstractRobustQueue
    tag: ConsumerTag
    buffer: asyncio.Queue[AbstractIncomingMessage]


class RabbitQueue:
    """:class:`ingest.queue.QueueBackend` on RabbitMQ quorum queues (see the module doc)."""

    def __init__(self, settings: BrokerSettings) -> None:
        if not settings.url:
            raise ValueError("RabbitQueue needs broker.url (amqp://...)")
        self._settings = settings
        self._url = settings.url
        self._connection: BackoffRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._consume_channel: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._delay_queues: set[str] = set()
        self._created: set[str] = set()  # kept across close(), for created_queue_names()
        self._consumers: dict[str, _Consumer] = {}
        self._connect_lock = asyncio.Lock()
        self._declare_lock = asyncio.Lock()
        self._consumer_lock = asyncio.Lock()

    # -- connection ---------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._connection is not None:
                return
            timeout = self._settings.confirm_timeout
            try:
                # fail_fast (the default) makes the *first* attempt raise instead of retrying
                # forever, so a wrong URL or a broker that is down at start-up is reported.
                connection = await aio_pika.connect_robust(
                    self._url,
                    connection_class=BackoffRobustConnection,
                    timeout=timeout,
                    reconnect_interval=_RECONNECT_MIN_DELAY,
                    reconnect_max_delay=self._settings.reconnect_max_delay,
                    client_properties={"connection_name": "shouli"},
                )
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                raise QueueUnavailable(f"cannot connect to RabbitMQ: {exc!r}") from exc
            try:
                async with asyncio.timeout(timeout):
                    # Publisher confirms: a publish returns only once the broker has the
                    # message (for a quorum queue: on a majority of nodes, fsynced). Returns
                    # (mandatory publish, no queue bound) raise instead of being callbacks.
                    publish = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    # A separate channel for consuming, so prefetch and a consumer-side
                    # channel error never hold up publishes.
                    consume = await connection.channel(publisher_confirms=False)
                    # Robust channels remember the QoS and set it again after a reconnect.
                    await consume.set_qos(prefetch_count=self._settings.prefetch)
            except BaseException as exc:
                await connection.close()
                if isinstance(exc, (*CONNECTION_EXCEPTIONS, TimeoutError)):
                    raise QueueUnavailable(f"cannot open RabbitMQ channels: {exc!r}") from exc
                raise
            self._connection = connection
            self._publish_channel = publish
            self._consume_channel = consume

    async def close(self) -> None:
        async with self._connect_lock:
            connection = self._connection
            if connection is None:
                return
            try:
                await self._stop_consumers()
            except Exception as exc:
                # Whatever was not handed back returns to the queue when the channel closes.
                log.warning("rabbit_consumer_stop_failed", error=repr(exc))
            finally:
                self._connection = None
                self._publish_channel = None
                self._consume_channel = None
                self._consumers = {}
                self._declared.clear()
                self._delay_queues.clear()
                # Closing the connection closes its channels; every delivery still unacked
                # goes back to its queue (counted as a delivery attempt by quorum queues).
                await connection.close()

    async def ready(self) -> bool:
        return self._is_ready()

    def _is_ready(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and self._publish_channel is not None
            and not self._publish_channel.is_closed
            and self._consume_channel is not None
            and not self._consume_channel.is_closed
        )

    # -- declarations -------------------------------------------------------------------

    def _main_arguments(self, queue: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self._settings.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_queue(queue),
        }

    @staticmethod
    def _delay_arguments(queue: str, bucket_ms: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": bucket_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        }

    async def declare(self, queue: str) -> None:
        if queue in self._declared:
            return
        async with self._declare_lock:
            if queue in self._declared:
                return
            async with self._admin_channel() as channel:
                # The dead-letter target first, so nothing is dead-lettered into the void.
                await self._declare_on(channel, dead_queue(queue), {"x-queue-type": "quorum"})
                await self._declare_on(channel, queue, self._main_arguments(queue))
            self._declared.add(queue)
            self._created.update(companion_queue_names(queue))

    async def _delay_queue(self, queue: str, bucket_ms: int) -> str:
        name = delay_queue_name(queue, bucket_ms)
        if name in self._delay_queues:
            return name
        await self.declare(queue)
        async with self._declare_lock:
            if name not in self._delay_queues:
                async with self._admin_channel() as channel:
                    await self._declare_on(channel, name, self._delay_arguments(queue, bucket_ms))
                self._delay_queues.add(name)
                self._created.add(name)
        return name

    @staticmethod
    async def _declare_on(channel: AbstractChannel, name: str, arguments: dict[str, Any]) -> None:
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed as exc:
            raise QueueError(
                f"queue {name!r} exists with other arguments than {arguments} "
                f"(RabbitMQ: {exc}); delete it or align broker settings"
            ) from exc

    @asynccontextmanager
    async def _admin_channel(self) -> AsyncIterator[AbstractChannel]:
        """A short-lived, non-robust channel for declares, passive declares and basic.get.

        A failed passive declare or a PRECONDITION_FAILED closes the channel it ran on; doing
        those on a throw-away channel keeps the publishing and consuming channels untouched,
        and a plain (not robust) one is not reopened behind our back.
        """
        connection = self._require_connection()
        channel = aio_pika.Channel(connection, publisher_confirms=False)
        try:
            async with asyncio.timeout(self._settings.confirm_timeout):
                await channel.initialize()
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
            raise QueueUnavailable(f"RabbitMQ channel did not open: {exc!r}") from exc
        try:
            async with asyncio.timeout(self._settings.confirm_timeout):
                yield channel
        except (QueueError, ChannelNotFoundEntity):
            raise
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
            raise QueueUnavailable(f"RabbitMQ did not answer: {exc!r}") from exc
        finally:
            if not channel.is_closed:
                try:
                    await channel.close()
                except CONNECTION_EXCEPTIONS:
                    pass

    def _require_connection(self) -> BackoffRobustConnection:
        connection = self._connection
        if connection is None:
            raise QueueUnavailable("RabbitQueue is not connected (call connect())")
        if connection.is_closed or not connection.connected.is_set():
            raise QueueUnavailable("RabbitMQ connection is down; reconnecting")
        return connection

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        await self._publish(
            queue,
            [
                aio_pika.Message(
                    body=message.body,
                    message_id=message.message_id,
                    headers={ATTEMPT_HEADER: message.attempt},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                for message in messages
            ],
        )

    async def _publish(self, routing_key: str, messages: Sequence[aio_pika.Message]) -> None:
        """Publish all, then wait for all confirms together, within ``confirm_timeout``.

        Waiting for each confirm before sending the next would cost a broker round trip (and
        a quorum fsync) per message; with all of them in flight the broker confirms them in
        batches (``multiple=true`` acks).
        """
        if not messages:
            return
        channel = self._publish_channel
        if channel is None or self._connection is None:
            raise QueueUnavailable("RabbitQueue is not connected (call connect())")
        if channel.is_closed:
            raise QueueUnavailable("RabbitMQ publishing channel is down; reconnecting")
        exchange = channel.default_exchange
        try:
            async with asyncio.timeout(self._settings.confirm_timeout):
                results = await asyncio.gather(
                    *(
                        # mandatory: a message no queue takes comes back as basic.return
                        # (raised as PublishError) instead of being dropped silently.
                        exchange.publish(message, routing_key=routing_key, mandatory=True)
                        for message in messages
                    ),
                    return_exceptions=True,
                )
        except TimeoutError as exc:
            raise QueueUnavailable(
                f"RabbitMQ did not confirm {len(messages)} message(s) to {routing_key!r} "
                f"within {self._settings.confirm_timeout} s"
            ) from exc
        failures = [result for result in results if not isinstance(result, aiormq.spec.Basic.Ack)]
        if failures:
            first = failures[0]
            cause = first if isinstance(first, BaseException) else None
            raise QueueUnavailable(
                f"{len(failures)} of {len(messages)} message(s) to {routing_key!r} were not "
                f"confirmed by RabbitMQ: {_describe_failure(first)}"
            ) from cause

    # -- consuming ----------------------------------------------------------------------

    async def receive(self, queue: str, max_messages: int, timeout: float) -> list[Delivery]:
        if max_messages < 1:
            return []
        consumer = await self._consumer(queue)
        buffer = consumer.buffer
        if buffer.empty() and not self._is_ready():
            # Say so rather than time out quietly: the worker logs the outage once.
            raise QueueUnavailable("RabbitMQ connection is down; reconnecting")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        deliveries: list[Delivery] = []
        while len(deliveries) < max_messages:
            if deliveries or not buffer.empty():
                # Something is there: hand out what is buffered, never wait for more.
                try:
                    message = buffer.get_nowait()
                except asyncio.QueueEmpty:
                    break
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        message = await buffer.get()
                except TimeoutError:
                    break
            if not _channel_is_open(message):
                # Delivered on a channel that has since died: the broker has requeued it
                # and will deliver it again on the new channel.
                continue
            deliveries.append(
                Delivery(
                    queue=queue,
                    body=message.body,
                    message_id=message.message_id or "",
                    attempt=_attempt(message.headers),
                    handle=message,
                )
            )
        return deliveries

    async def _consumer(self, queue: str) -> _Consumer:
        consumer = self._consumers.get(queue)
        if consumer is not None:
            return consumer
        async with self._consumer_lock:
            consumer = self._consumers.get(queue)
            if consumer is not None:
                return consumer
            await self.declare(queue)
            channel = self._consume_channel
            if channel is None:
                raise QueueUnavailable("RabbitQueue is not connected (call connect())")
            self._require_connection()
            buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

            async def on_message(message: AbstractIncomingMessage) -> None:
                buffer.put_nowait(message)

            try:
                async with asyncio.timeout(self._settings.confirm_timeout):
                    # Declared (same arguments) on the robust consuming channel so that after
                    # a reconnect aio-pika declares it again and restarts this consumer with
                    # the same tag and callback.
                    amqp_queue = await channel.declare_queue(
                        queue, durable=True, arguments=self._main_arguments(queue)
                    )
                    tag = await amqp_queue.consume(on_message)
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                raise QueueUnavailable(f"cannot start consuming {queue!r}: {exc!r}") from exc
            consumer = _Consumer(amqp_queue, tag, buffer)
            self._consumers[queue] = consumer
            return consumer

    async def _stop_consumers(self) -> None:
        """Cancel consumers, then hand back what was prefetched but never handed out."""
        consumers = list(self._consumers.values())
        if not consumers or not self._is_ready():
            return
        for consumer in consumers:
            async with asyncio.timeout(self._settings.confirm_timeout):
                await consumer.queue.cancel(consumer.tag)
        # aio-pika hands each delivery to our callback in a task of its own; let the ones
        # that arrived before basic.cancel-ok run so they reach the buffers.
        await asyncio.sleep(0)
        for consumer in consumers:
            leftovers: list[AbstractIncomingMessage] = []
            while not consumer.buffer.empty():
                leftovers.append(consumer.buffer.get_nowait())
            await self._give_back(consumer.queue.name, leftovers)

    # -- settling -----------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            message = _message(delivery)
            if message.processed:
                continue
            try:
                await message.ack()
            except (*CONNECTION_EXCEPTIONS, MessageProcessError) as exc:
                # Its channel is gone, so it was requeued and will be delivered again;
                # acking it on another channel is impossible (delivery tags are per channel).
                log.warning(
                    "rabbit_ack_lost_with_channel",
                    queue=delivery.queue,
                    message_id=delivery.message_id,
                    error=repr(exc),
                )

    async def retry(self, delivery: Delivery, delay: float) -> None:
        """Publish a copy with ``attempt + 1`` to the delay queue; ack the original after its
        confirm. If this raises :class:`QueueUnavailable` the original is untouched and still
        unacked: it returns to the queue when its channel closes (``release`` it, ``close``, a
        reconnect, or RabbitMQ's ``consumer_timeout``). If its channel has already died, the
        broker has requeued it (same attempt, one delivery spent) and nothing is published."""
        message = _message(delivery)
        if message.processed:
            return
        if not _channel_is_open(message):
            # The broker has requeued it with its channel; a copy now would be a duplicate.
            log.warning(
                "rabbit_retry_lost_with_channel",
                queue=delivery.queue,
                message_id=delivery.message_id,
            )
            return
        bucket = delay_bucket_ms(delay)
        target = delivery.queue if bucket == 0 else await self._delay_queue(delivery.queue, bucket)
        await self._publish(target, [_copy(message, attempt=delivery.attempt + 1)])
        await self.ack([delivery])

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        by_queue: dict[str, list[AbstractIncomingMessage]] = {}
        for delivery in deliveries:
            by_queue.setdefault(delivery.queue, []).append(_message(delivery))
        for queue, messages in by_queue.items():
            await self._give_back(queue, messages)

    async def _give_back(self, queue: str, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Return unprocessed messages without spending one of their deliveries (module doc)."""
        live = [m for m in messages if not m.processed and _channel_is_open(m)]
        if not live:
            return
        try:
            await self._publish(queue, [_copy(m, attempt=_attempt(m.headers)) for m in live])
        except QueueUnavailable as exc:
            log.warning("rabbit_release_requeues", queue=queue, count=len(live), error=str(exc))
            for message in live:
                try:
                    await message.nack(requeue=True)
                except CONNECTION_EXCEPTIONS:
                    pass  # channel gone: the broker has requeued it already
            return
        for message in live:
            try:
                await message.ack()
            except CONNECTION_EXCEPTIONS as exc:
                # The copy is queued and the original is requeued with the channel: one
                # duplicate, never a loss.
                log.warning("rabbit_release_duplicate", queue=queue, error=repr(exc))

    # -- dead letters and metrics -------------------------------------------------------

    async def take_expired(self, queue: str) -> list[ExpiredMessage]:
        """Drain ``queue.dead``. Messages are acked once all of them are read, so a failure
        part-way leaves them all in place (reported again next time, never lost here)."""
        expired: list[ExpiredMessage] = []
        try:
            async with self._admin_channel() as channel:
                dead = await channel.declare_queue(dead_queue(queue), passive=True)
                last: AbstractIncomingMessage | None = None
                while len(expired) < _EXPIRED_BATCH:
                    message = await dead.get(no_ack=False, fail=False)
                    if message is None:
                        break
                    last = message
                    expired.append(
                        ExpiredMessage(
                            queue=queue,
                            body=message.body,
                            message_id=message.message_id or "",
                            attempt=_attempt(message.headers),
                            reason=_death_reason(queue, message.headers, self._settings),
                        )
                    )
                if last is not None:
                    # One frame for the whole batch: every unacked delivery up to this tag.
                    await last.ack(multiple=True)
        except ChannelNotFoundEntity:
            return []
        return expired

    async def depth(self, queue: str) -> int:
        """Ready messages; those prefetched by a consumer (even ours, unhanded) don't count."""
        try:
            async with self._admin_channel() as channel:
                # A fresh passive declare: aio-pika's robust channels answer a passive
                # declare of a queue they know from a cache, with a stale message count.
                declared = await channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            return 0
        return int(declared.declaration_result.message_count or 0)

    # -- for tests and operations -------------------------------------------------------

    def created_queue_names(self) -> set[str]:
        """Every queue this object may have created (main, dead, all delay buckets), even
        after :meth:`close`."""
        return set(self._created)


def _message(delivery: Delivery) -> AbstractIncomingMessage:
    handle = delivery.handle
    if not isinstance(handle, AbstractIncomingMessage):
        raise TypeError(f"delivery of {delivery.queue!r} does not come from a RabbitQueue")
    return handle


def _channel_is_open(message: AbstractIncomingMessage) -> bool:
    try:
        message.channel  # noqa: B018 - the property raises when the channel is closed
    except ChannelInvalidStateError:
        return False
    return True


def _attempt(headers: HeadersType | None) -> int:
    value = (headers or {}).get(ATTEMPT_HEADER)
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return max(value, 1)
    if isinstance(value, (str, bytes)):
        try:
            return max(int(value), 1)
        except ValueError:
            return 1
    return 1


def _copy(message: AbstractIncomingMessage, attempt: int) -> aio_pika.Message:
    headers: HeadersType = {
        key: value
        for key, value in (message.headers or {}).items()
        if key not in _BROKER_HEADERS and not key.startswith(_BROKER_HEADER_PREFIXES)
    }
    headers[ATTEMPT_HEADER] = attempt
    return aio_pika.Message(
        body=message.body,
        message_id=message.message_id,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        correlation_id=message.correlation_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _death_reason(queue: str, headers: HeadersType | None, settings: BrokerSettings) -> str:
    """Why ``queue`` dead-lettered the message, from its ``x-death`` entry for that queue.

    ``x-death`` holds one entry per (queue, reason), most recent first
    (https://www.rabbitmq.com/dlx.html#effects); ``x-first-death-reason`` is only a fallback
    since a retried message's first death can be its delay queue's TTL.
    """
    headers = headers or {}
    raw: str | None = None
    deaths = headers.get("x-death")
    if isinstance(deaths, list):
        entries = [entry for entry in deaths if isinstance(entry, dict)]
        mine = [entry for entry in entries if _text(entry.get("queue", "")) == queue]
        chosen = (mine or entries)[:1]
        if chosen and "reason" in chosen[0]:
            raw = _text(chosen[0]["reason"])
    if raw is None and "x-first-death-reason" in headers:
        raw = _text(headers["x-first-death-reason"])
    if raw is None:
        return "dead-lettered by RabbitMQ (no x-death header)"
    text = _DEATH_REASONS.get(raw, raw)
    if raw == "delivery_limit":
        return (
            f"{text}: delivered more than {settings.delivery_limit} times without being "
            "settled (the consumer crashed or was cut off each time; RabbitMQ quorum queue "
            "delivery limit)"
        )
    return f"{text} (RabbitMQ dead-letter reason {raw!r})"


def _describe_failure(result: object) -> str:
    if isinstance(result, PublishError):
        return f"returned as unroutable, is the queue declared? ({result})"
    if isinstance(result, DeliveryError):
        return f"negatively acknowledged ({result})"
    if isinstance(result, asyncio.CancelledError):
        return "cancelled"
    if isinstance(result, BaseException):
        return repr(result)
    return f"unexpected confirmation {result!r}"
