"""RabbitQueue on the test broker, and clean-up of every queue a test created.

Give each test its own prefix (``unique_name()``) and name its queues ``f"{prefix}..."`` so
parallel runs never share a queue. Queues are deleted when the outermost ``rabbit_queue``
for a prefix exits; open more instances on the same queues (a second consumer, a "restarted"
worker) with ``keep=True`` so they do not delete them under the first one.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika

from ingest.queue import BrokerSettings
from ingest.rabbit_queue import RabbitQueue, companion_queue_names
from tests.support import AMQP_URL, need_rabbitmq

# prefix -> every queue name the RabbitQueue objects opened under it may have created.
_created: dict[str, set[str]] = {}


def broker_settings(settings: BrokerSettings | None = None) -> BrokerSettings:
    """``settings`` (or the defaults) pointed at the test broker; skips if it is down."""
    url = need_rabbitmq()
    return (settings or BrokerSettings()).model_copy(update={"url": url})


@asynccontextmanager
async def rabbit_queue(
    prefix: str, settings: BrokerSettings | None = None, *, keep: bool = False
) -> AsyncIterator[RabbitQueue]:
    """A connected RabbitQueue; on exit, unless ``keep``, delete every queue named ``prefix*``."""
    queue = RabbitQueue(broker_settings(settings))
    try:
        await queue.connect()
        yield queue
    finally:
        _created.setdefault(prefix, set()).update(queue.created_queue_names())
        await queue.close()
        if not keep:
            await delete_queues(prefix)


def track_queue(prefix: str, queue: str) -> None:
    """Have the clean-up of ``prefix`` delete ``queue`` and its companions too."""
    _created.setdefault(prefix, set()).update(companion_queue_names(queue))


async def delete_queues(prefix: str) -> None:
    """Delete the queues created under ``prefix`` (only names that start with it).

    AMQP cannot list queues, so the names come from the RabbitQueue objects: main, ``.dead``
    and every possible ``.delay.<ms>`` of each queue they declared or consumed (a quick test
    checks with ``rabbitmqctl`` that nothing is left). Deleting a queue that does not exist is
    not an error in RabbitMQ.
    """
    names = {name for name in _created.pop(prefix, set()) if name.startswith(prefix)}
    if not names:
        return
    connection = await aio_pika.connect(need_rabbitmq())
    try:
        channel = await connection.channel()
        for name in sorted(names):
            await channel.queue_delete(name)
    finally:
        await connection.close()


def have_rabbitmqctl() -> bool:
    return shutil.which("rabbitmqctl") is not None


async def list_queues_with_prefix(prefix: str) -> set[str]:
    """Queue names starting with ``prefix``, per the local ``rabbitmqctl`` (slow: ~1 s)."""
    output = await rabbitmqctl("list_queues", "-q", "--no-table-headers", "name")
    return {line.strip() for line in output.splitlines() if line.strip().startswith(prefix)}


async def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """Run ``rabbitmqctl`` on the local node; raise with its output when it fails."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode("utf-8", "replace")
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({process.returncode}): {text}")
    return text


async def start_app(timeout: float = 180.0) -> None:
    """``rabbitmqctl start_app``, then wait until quorum queues can be declared again.

    The node accepts connections before its quorum queues have recovered; a test that
    declares one in that window gets INTERNAL_ERROR (541), and so would every later test.
    """
    await rabbitmqctl("start_app")
    await rabbitmqctl("await_startup", timeout=timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            connection = await aio_pika.connect(AMQP_URL, timeout=10)
            try:
                channel = await connection.channel()
                probe = f"probe.ready.{uuid.uuid4().hex[:8]}"
                await channel.declare_queue(
                    probe, durable=True, arguments={"x-queue-type": "quorum"}
                )
                await channel.queue_delete(probe)
                return
            finally:
                await connection.close()
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1.0)
