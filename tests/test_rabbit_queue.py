"""What only the RabbitMQ backend has: its topology, rounding, broker restarts.

The ``slow`` tests stop and start the RabbitMQ application of the local node
(``rabbitmqctl stop_app`` / ``start_app``), which cuts every client of that broker for a few
seconds; deselect them with ``-m "not slow"`` when others share the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed
from yarl import URL

from ingest.queue import BrokerSettings, Outgoing, QueueError, QueueUnavailable
from ingest.rabbit_queue import (
    DELAY_BUCKETS_MS,
    BackoffRobustConnection,
    RabbitQueue,
    delay_bucket_ms,
)
from tests.support import AMQP_URL, need_rabbitmq, unique_name
from tests.support_rabbit import (
    have_rabbitmqctl,
    list_queues_with_prefix,
    rabbit_queue,
    rabbitmqctl,
    start_app,
)

EVENTUALLY = 20.0


def need_local_rabbitmqctl() -> None:
    need_rabbitmq()
    host = urlsplit(AMQP_URL).hostname or "127.0.0.1"
    if not have_rabbitmqctl() or host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("needs rabbitmqctl for the broker at SHOULI_TEST_AMQP_URL on this machine")


@asynccontextmanager
async def amqp_channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain channel on a connection of its own, for looking at the broker directly."""
    connection = await aio_pika.connect(need_rabbitmq())
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def declare_matches(name: str, arguments: dict[str, Any]) -> bool:
    """True when ``name`` exists with exactly these arguments: RabbitMQ accepts a repeated
    declaration only when every property and argument is equivalent, and otherwise closes the
    channel with PRECONDITION_FAILED (406)."""
    async with amqp_channel() as channel:
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed:
            return False
    return True


async def queue_exists(name: str) -> bool:
    async with amqp_channel() as channel:
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return False
    return True


async def receive_until(queue: RabbitQueue, name: str, count: int) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENTUALLY
    received: list[Any] = []
    while len(received) < count and loop.time() < deadline:
        received += await queue.receive(name, count - len(received), deadline - loop.time())
    return received


async def wait_until_ready(queue: RabbitQueue, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await queue.ready():
        assert loop.time() < deadline, "RabbitQueue did not reconnect"
        await asyncio.sleep(0.1)


@pytest.fixture
def prefix() -> str:
    return unique_name("shouli-test-")


def main_arguments(name: str, delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{name}.dead",
    }


async def test_the_main_queue_is_a_durable_quorum_queue_with_the_delivery_limit_and_a_dead_letter_route(  # noqa: E501
    prefix: str,
) -> None:
    name = f"{prefix}.work"
    async with rabbit_queue(prefix, BrokerSettings(delivery_limit=3)) as queue:
        await queue.declare(name)

        assert await declare_matches(name, main_arguments(name, 3))
        assert not await declare_matches(name, main_arguments(name, 4))
        assert not await declare_matches(name, {"x-queue-type": "classic"})
        assert await declare_matches(f"{name}.dead", {"x-queue-type": "quorum"})

        if have_rabbitmqctl():
            listing = await rabbitmqctl(
                "list_queues", "-q", "--no-table-headers", "name", "type", "durable", "arguments"
            )
            [line] = [row for row in listing.splitlines() if row.split("\t")[0] == name]
            _, queue_type, durable, arguments = line.split("\t", 3)
            assert (queue_type, durable) == ("quorum", "true")
            assert "x-delivery-limit" in arguments and "3" in arguments


async def test_declaring_a_queue_again_with_another_delivery_limit_is_an_error(
    prefix: str,
) -> None:
    name = f"{prefix}.work"
    async with rabbit_queue(prefix, BrokerSettings(delivery_limit=3)) as first:
        await first.declare(name)
        async with rabbit_queue(prefix, BrokerSettings(delivery_limit=4), keep=True) as second:
            with pytest.raises(QueueError, match="other arguments"):
                await second.declare(name)
            # The failed declaration used a throw-away channel: this object still works.
            await second.publish(name, [Outgoing(b"x", "m-1")])
            assert await second.ready()


def test_delay_buckets_round_up_never_early_and_at_most_double() -> None:
    assert delay_bucket_ms(0) == 0
    assert delay_bucket_ms(-1) == 0
    assert delay_bucket_ms(float("nan")) == 0
    for delay in (0.001, 0.125, 0.126, 0.5, 0.7, 1, 1.5, 3, 299.9, 300, 3600, 86400):
        bucket = delay_bucket_ms(delay)
        assert bucket in DELAY_BUCKETS_MS
        assert bucket >= delay * 1000, delay
        assert bucket < max(2 * delay * 1000, 126), delay
    assert delay_bucket_ms(10**9) == DELAY_BUCKETS_MS[-1] < 2**32  # x-message-ttl is 32 bits
    # The settle backoff (1 s doubling to 300 s, jitter 0.5..1x) needs only a few queues.
    jittered = {
        delay_bucket_ms(min(300.0, 2.0 ** (attempt - 1)) * factor)
        for attempt in range(1, 12)
        for factor in (0.5, 0.61, 0.75, 0.9, 1.0)
    }
    assert len(jittered) <= 11


async def test_retries_use_one_delay_queue_per_bucket_that_dead_letters_back_to_the_queue(
    prefix: str,
) -> None:
    name = f"{prefix}.work"
    async with rabbit_queue(prefix) as queue:
        await queue.declare(name)
        await queue.publish(name, [Outgoing(b"a", "m-a"), Outgoing(b"b", "m-b")])
        first = await receive_until(queue, name, 2)
        assert len(first) == 2

        await queue.retry(first[0], 0.3)
        await queue.retry(first[1], 0.4)  # same 500 ms bucket

        assert await declare_matches(
            f"{name}.delay.500",
            {
                "x-queue-type": "quorum",
                "x-message-ttl": 500,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": name,
            },
        )
        assert not await queue_exists(f"{name}.delay.250")
        again = await receive_until(queue, name, 2)
        assert sorted((d.message_id, d.attempt) for d in again) == [("m-a", 2), ("m-b", 2)]
        await queue.ack(again)


async def test_publishing_to_an_undeclared_queue_raises_queue_unavailable(prefix: str) -> None:
    async with rabbit_queue(prefix) as queue:
        with pytest.raises(QueueUnavailable, match="unroutable"):
            await queue.publish(f"{prefix}.never-declared", [Outgoing(b"x", "m-1")])
        # A basic.return does not close the channel: the next publish works.
        await queue.declare(f"{prefix}.work")
        await queue.publish(f"{prefix}.work", [Outgoing(b"x", "m-1")])


async def test_publish_after_close_raises_queue_unavailable_and_ready_is_false(
    prefix: str,
) -> None:
    async with rabbit_queue(prefix) as queue:
        await queue.declare(f"{prefix}.work")
        await queue.close()
        assert not await queue.ready()
        with pytest.raises(QueueUnavailable):
            await queue.publish(f"{prefix}.work", [Outgoing(b"x", "m-1")])


async def test_close_hands_back_prefetched_messages_without_spending_a_delivery(
    prefix: str,
) -> None:
    """Each worker takes one message and stops; the rest were prefetched by every one of them.

    Were they returned by closing the channel, each return would count as a delivery and the
    last message would be dead-lettered after delivery_limit=2 such restarts.
    """
    name, limited = f"{prefix}.work", BrokerSettings(delivery_limit=2)
    async with rabbit_queue(prefix, limited) as publisher:
        await publisher.declare(name)
        await publisher.publish(name, [Outgoing(b"x", f"m-{i}") for i in range(5)])
        taken: list[str] = []
        for _ in range(5):
            async with rabbit_queue(prefix, limited, keep=True) as worker:
                [delivery] = await receive_until(worker, name, 1)
                taken.append(delivery.message_id)
                await worker.ack([delivery])

        assert sorted(taken) == [f"m-{i}" for i in range(5)]
        assert await publisher.take_expired(name) == []


async def test_the_expired_reason_is_the_delivery_limit_even_for_a_message_that_was_retried(
    prefix: str,
) -> None:
    """A retried message carries an x-death entry 'expired' from its delay queue first."""
    name, limited = f"{prefix}.work", BrokerSettings(delivery_limit=2)
    async with rabbit_queue(prefix, limited) as queue:
        await queue.declare(name)
        await queue.publish(name, [Outgoing(b"x", "m-1")])
        # Received and retried by a worker that then stops, so that `queue` has no consumer
        # of its own prefetching the message.
        async with rabbit_queue(prefix, limited, keep=True) as first:
            [delivery] = await receive_until(first, name, 1)
            await first.retry(delivery, 0.2)

        expired = []
        for _ in range(6):
            async with rabbit_queue(prefix, limited, keep=True) as crashing:
                await crashing.receive(name, 1, timeout=3.0)  # and "crashes": no ack
            expired = await queue.take_expired(name)
            if expired:
                break

        assert [(e.message_id, e.attempt) for e in expired] == [("m-1", 2)]
        assert expired[0].reason.startswith("delivery limit exceeded"), expired[0].reason


async def test_the_reconnect_interval_grows_with_the_outage_up_to_the_cap() -> None:
    connection = BackoffRobustConnection(
        URL(need_rabbitmq()), reconnect_interval=0.5, reconnect_max_delay=4
    )
    now = connection.loop.time()
    assert connection.reconnect_interval == 0.5
    connection._down_since = now
    assert connection.reconnect_interval == 0.5
    connection._down_since = now - 1.5
    assert 1.5 <= connection.reconnect_interval < 2.5
    connection._down_since = now - 600
    assert connection.reconnect_interval == 4
    await connection.close()


async def test_the_support_context_deletes_every_queue_it_created(prefix: str) -> None:
    if not have_rabbitmqctl():
        pytest.skip("needs rabbitmqctl to list queues")
    name = f"{prefix}.work"
    async with rabbit_queue(prefix) as queue:
        await queue.declare(name)
        await queue.publish(name, [Outgoing(b"x", "m-1")])
        [delivery] = await receive_until(queue, name, 1)
        await queue.retry(delivery, 1.0)
        assert await list_queues_with_prefix(prefix) == {
            name,
            f"{name}.dead",
            f"{name}.delay.1000",
        }
    assert await list_queues_with_prefix(prefix) == set()


@asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """Stop the RabbitMQ application for the block; it is started again whatever happens."""
    await rabbitmqctl("stop_app")
    try:
        yield
    finally:
        await start_app()


@pytest.mark.slow
async def test_publish_while_the_broker_is_stopped_raises_queue_unavailable(prefix: str) -> None:
    need_local_rabbitmqctl()
    name = f"{prefix}.work"
    quick = BrokerSettings(reconnect_max_delay=1.0, confirm_timeout=5.0)
    async with rabbit_queue(prefix, quick) as queue:
        await queue.declare(name)
        async with broker_stopped():
            with pytest.raises(QueueUnavailable):
                await queue.publish(name, [Outgoing(b"x", "m-1")])
            assert not await queue.ready()
            with pytest.raises(QueueUnavailable):
                await queue.depth(name)
        await wait_until_ready(queue)


@pytest.mark.slow
async def test_after_a_broker_restart_the_same_object_publishes_and_receives_again_and_keeps_every_confirmed_message(  # noqa: E501
    prefix: str,
) -> None:
    need_local_rabbitmqctl()
    name = f"{prefix}.work"
    async with rabbit_queue(prefix, BrokerSettings(reconnect_max_delay=1.0)) as queue:
        await queue.declare(name)
        before = [Outgoing(f"before {i}".encode(), f"before-{i:03d}") for i in range(100)]
        await queue.publish(name, before)
        # Start the consumer and hold one delivery unacked across the restart.
        [held] = await queue.receive(name, 1, timeout=EVENTUALLY)

        async with broker_stopped():
            pass
        await wait_until_ready(queue)

        # Its channel died with the broker: acking it must neither raise nor touch another
        # message on the new channel. The broker requeued it, so it comes again below.
        await queue.ack([held])
        await queue.publish(name, [Outgoing(b"after", "after-000")])

        # Received through the consumer started before the restart (restored by aio-pika).
        received = await receive_until(queue, name, 101)
        ids = sorted(d.message_id for d in received)
        assert ids == sorted([m.message_id for m in before] + ["after-000"])
        assert {d.attempt for d in received} == {1}
        await queue.ack(received)
        assert await queue.receive(name, 10, timeout=2.0) == []
        assert await queue.depth(name) == 0
