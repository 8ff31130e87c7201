"""The queue contract (``ingest/queue.py``): every case runs on both backends.

Timing is only ever checked as order ("not before the delay") or as eventuality within a
generous limit, never as speed, so a slow CI machine does not fail these.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.queue import BrokerSettings, Delivery, Outgoing, QueueBackend
from tests.support import unique_name

Opener = Callable[[BrokerSettings | None], AbstractAsyncContextManager[QueueBackend]]

# Generous limits for "eventually": reached in milliseconds normally.
EVENTUALLY = 20.0


def settings(**overrides: object) -> BrokerSettings:
    """Broker settings for a test. A short visibility timeout lets the embedded queue see a
    closed consumer's leases run out quickly; RabbitMQ ignores it (it requeues on close)."""
    values: dict[str, object] = {"visibility_timeout": 1.0, **overrides}
    return BrokerSettings.model_validate(values)


@dataclass
class Harness:
    kind: str
    name: str
    """A fresh queue, already declared by ``queue``."""
    queue: QueueBackend
    """A connected backend, closed (again) at the end of the test."""
    opener: Opener
    stack: AsyncExitStack

    async def open(self, settings: BrokerSettings | None = None) -> QueueBackend:
        """Another connected backend on the same broker/store, closed at the end of the test."""
        return await self.stack.enter_async_context(self.opener(settings))

    def scoped(
        self, settings: BrokerSettings | None = None
    ) -> AbstractAsyncContextManager[QueueBackend]:
        """Another backend as a context manager, to close it at a chosen moment."""
        return self.opener(settings)

    def other_queue(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"


@pytest.fixture(params=["embedded", "rabbitmq"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with AsyncExitStack() as stack:
        opener: Opener
        if request.param == "embedded":
            from tests.support_embedded import embedded_queue

            def opener(chosen: BrokerSettings | None) -> AbstractAsyncContextManager[QueueBackend]:
                return embedded_queue(tmp_path, chosen or settings())

            name = unique_name("work-")
        else:
            from tests.support_rabbit import delete_queues, rabbit_queue

            prefix = unique_name("shouli-test-")

            def opener(chosen: BrokerSettings | None) -> AbstractAsyncContextManager[QueueBackend]:
                return rabbit_queue(prefix, chosen or settings(), keep=True)

            # Pushed first, so it runs last: after every backend of the test has closed.
            stack.push_async_callback(delete_queues, prefix)
            name = f"{prefix}.work"
        queue = await stack.enter_async_context(opener(None))
        await queue.declare(name)
        yield Harness(request.param, name, queue, opener, stack)


def outgoing(count: int, prefix: str = "m", attempt: int = 1) -> list[Outgoing]:
    return [
        Outgoing(
            body=f"投诉 {prefix} {i}".encode(), message_id=f"{prefix}-{i:04d}", attempt=attempt
        )
        for i in range(count)
    ]


async def receive_until(
    queue: QueueBackend, name: str, count: int, *, timeout: float = EVENTUALLY, batch: int = 100
) -> list[Delivery]:
    """Receive until ``count`` deliveries arrived (or ``timeout`` passed); settles nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    received: list[Delivery] = []
    while len(received) < count:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        received += await queue.receive(name, min(batch, count - len(received)), remaining)
    return received


async def eventually(probe: Callable[[], Awaitable[object]], expected: object) -> object:
    """Poll ``probe`` until it returns ``expected``; the last value otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENTUALLY
    value = await probe()
    while value != expected and loop.time() < deadline:
        await asyncio.sleep(0.05)
        value = await probe()
    return value


async def test_a_connected_backend_is_ready(backend: Harness) -> None:
    assert await backend.queue.ready()


async def test_publish_then_receive_returns_the_same_body_message_id_and_attempt_1(
    backend: Harness,
) -> None:
    queue, name = backend.queue, backend.name
    await queue.publish(name, [Outgoing(body="停水三天 \x00\xff".encode(), message_id="m-1")])

    # One message and room for ten: it must come back without waiting for the other nine
    # (the 60 s receive timeout would trip the 30 s guard).
    async with asyncio.timeout(30):
        deliveries = await queue.receive(name, max_messages=10, timeout=60)

    assert [(d.queue, d.body, d.message_id, d.attempt) for d in deliveries] == [
        (name, "停水三天 \x00\xff".encode(), "m-1", 1)
    ]
    await queue.ack(deliveries)


async def test_a_delivery_that_is_not_acked_is_delivered_again_after_the_consumer_closes(
    backend: Harness,
) -> None:
    await backend.queue.publish(backend.name, outgoing(1))
    first = await receive_until(backend.queue, backend.name, 1)
    assert [d.message_id for d in first] == ["m-0000"]

    await backend.queue.close()  # as if the worker died holding it
    again = await receive_until(await backend.open(), backend.name, 1)

    assert [(d.message_id, d.body, d.attempt) for d in again] == [("m-0000", first[0].body, 1)]


async def test_ack_removes_a_message_for_good(backend: Harness) -> None:
    await backend.queue.publish(backend.name, outgoing(1))
    deliveries = await receive_until(backend.queue, backend.name, 1)
    assert len(deliveries) == 1

    await backend.queue.ack(deliveries)
    await backend.queue.close()
    reopened = await backend.open()

    # Longer than the embedded visibility timeout: a lease that merely ran out would be back.
    assert await reopened.receive(backend.name, 10, timeout=3.0) == []
    assert await reopened.depth(backend.name) == 0


async def test_retry_comes_back_after_the_delay_with_attempt_2_and_not_before(
    backend: Harness,
) -> None:
    queue, name = backend.queue, backend.name
    await queue.publish(name, outgoing(1))
    [delivery] = await receive_until(queue, name, 1)

    started = time.monotonic()
    await queue.retry(delivery, 0.5)
    again = await receive_until(queue, name, 1)
    waited = time.monotonic() - started

    assert [(d.message_id, d.body, d.attempt) for d in again] == [
        (delivery.message_id, delivery.body, 2)
    ]
    assert waited >= 0.5, f"came back after {waited:.3f} s, before the 0.5 s delay"
    await queue.ack(again)
    # The original was removed by the retry: nothing else arrives.
    assert await queue.receive(name, 10, timeout=2.0) == []


async def test_release_returns_messages_without_incrementing_attempt(backend: Harness) -> None:
    queue, name = backend.queue, backend.name
    await queue.publish(name, outgoing(3) + outgoing(1, prefix="later", attempt=4))
    first = await receive_until(queue, name, 4)
    assert len(first) == 4

    await queue.release(first)
    again = await receive_until(queue, name, 4)

    assert sorted((d.message_id, d.body, d.attempt) for d in again) == sorted(
        (d.message_id, d.body, d.attempt) for d in first
    )
    assert {d.message_id: d.attempt for d in again} == {
        "m-0000": 1,
        "m-0001": 1,
        "m-0002": 1,
        "later-0000": 4,
    }
    await queue.ack(again)
    assert await queue.receive(name, 10, timeout=2.0) == []


async def test_releasing_a_message_more_often_than_the_delivery_limit_never_expires_it(
    backend: Harness,
) -> None:
    limited = settings(delivery_limit=2)
    queue, name = await backend.open(limited), backend.other_queue("released")
    await queue.declare(name)
    await queue.publish(name, outgoing(1))

    for _ in range(limited.delivery_limit + 2):
        deliveries = await receive_until(queue, name, 1)
        assert [d.attempt for d in deliveries] == [1]
        await queue.release(deliveries)

    final = await receive_until(queue, name, 1)
    assert [(d.message_id, d.attempt) for d in final] == [("m-0000", 1)]
    await queue.ack(final)
    assert await queue.take_expired(name) == []


async def test_a_message_delivered_more_than_delivery_limit_times_without_settlement_is_reported_by_take_expired(  # noqa: E501
    backend: Harness,
) -> None:
    limited = settings(delivery_limit=2)
    publisher, name = await backend.open(limited), backend.other_queue("poison")
    await publisher.declare(name)
    await publisher.publish(name, [Outgoing(body=b"kills the worker", message_id="poison")])

    deliveries_seen = 0
    expired = []
    for _ in range(limited.delivery_limit + 3):
        # A consumer that crashes on the message: it receives it and closes without settling.
        async with backend.scoped(limited) as consumer:
            got = await consumer.receive(name, 10, timeout=4.0)
            assert [d.message_id for d in got] in ([], ["poison"])
            deliveries_seen += len(got)
        expired = await publisher.take_expired(name)
        if expired:
            break

    assert [(e.queue, e.message_id, e.body, e.attempt) for e in expired] == [
        (name, "poison", b"kills the worker", 1)
    ]
    assert expired[0].reason.startswith("delivery limit exceeded"), expired[0].reason
    # Given up after the limit: delivered at least delivery_limit times, at most one more
    # (RabbitMQ dead-letters on the return past the limit; the store on the next lease).
    assert limited.delivery_limit <= deliveries_seen <= limited.delivery_limit + 1
    assert await publisher.take_expired(name) == []  # taken means removed
    assert await publisher.receive(name, 10, timeout=2.0) == []


async def test_publishing_1000_messages_then_receiving_them_in_batches_gives_exactly_the_1000_ids_once_each(  # noqa: E501
    backend: Harness,
) -> None:
    queue, name = backend.queue, backend.name
    messages = outgoing(1000)
    await queue.publish(name, messages)

    seen: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while sum(seen.values()) < 1000 and loop.time() < deadline:
        batch = await queue.receive(name, 100, timeout=5.0)
        assert len(batch) <= 100
        seen.update(d.message_id for d in batch)
        await queue.ack(batch)

    assert seen == Counter(m.message_id for m in messages)
    assert await queue.receive(name, 100, timeout=2.0) == []


async def test_two_consumers_competing_on_one_queue_together_receive_each_message_exactly_once(
    backend: Harness,
) -> None:
    name, count = backend.name, 300
    small = settings(prefetch=10)
    consumers = [await backend.open(small), await backend.open(small)]
    await backend.queue.publish(name, outgoing(count))

    seen: list[Counter[str]] = [Counter(), Counter()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60

    async def consume(index: int) -> None:
        while sum(c.total() for c in seen) < count and loop.time() < deadline:
            batch = await consumers[index].receive(name, 10, timeout=0.5)
            seen[index].update(d.message_id for d in batch)
            await consumers[index].ack(batch)

    await asyncio.gather(consume(0), consume(1))

    together = seen[0] + seen[1]
    assert together == Counter(m.message_id for m in outgoing(count))
    for consumer in consumers:
        assert await consumer.receive(name, 10, timeout=1.0) == []


async def test_depth_counts_waiting_messages(backend: Harness) -> None:
    queue, name = backend.queue, backend.name
    assert await queue.depth(name) == 0

    await queue.publish(name, outgoing(5))
    assert await eventually(lambda: queue.depth(name), 5) == 5

    deliveries = await receive_until(queue, name, 5)
    await queue.ack(deliveries)
    assert await eventually(lambda: queue.depth(name), 0) == 0


async def test_receive_with_nothing_waiting_returns_an_empty_list_after_the_timeout(
    backend: Harness,
) -> None:
    started = time.monotonic()
    async with asyncio.timeout(30):
        deliveries = await backend.queue.receive(backend.name, 10, timeout=0.5)
    waited = time.monotonic() - started

    assert deliveries == []
    assert waited >= 0.45, f"returned after {waited:.3f} s, before the 0.5 s timeout"
