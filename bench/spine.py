"""Spine benchmark: drafts published -> committed tickets, measured, never asserted.

    .venv/bin/python -m bench.spine                      # embedded, and RabbitMQ+PostgreSQL x1, x2
    .venv/bin/python -m bench.spine --n 20000 --modes distributed --workers 2

For each mode it starts real ``shouli worker router`` processes on a fresh store and queue,
then
* throughput: publishes --n drafts as fast as the hand-off takes them and reports tickets/s
  from the first publish to the last commit;
* latency: offers --rate drafts/s for --seconds and reports p50/p95/p99 from publish
  (``received_at``) to the ticket's write transaction (``created_at``, just before commit);
* the raw aio-pika publish+consume rate for messages of the same size on the same machine,
  and the ratio of our end-to-end rate to it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from sqlalchemy import func, select

from bench.common import (
    AMQP_URL,
    CONFIG,
    argument_parser,
    bench_store,
    commit_seconds,
    percentile,
    start_shouli,
    stop,
)
from ingest.app.runtime import open_runtime
from ingest.app.settings import load_settings
from ingest.draft import TicketDraft
from store.models import Ticket

BODY = (
    "我家住在示例市光明小区5栋，最近一周自来水发黄并有明显异味，烧开后有沉淀。"
    "多次拨打热线没有人上门检查，家里有老人小孩，担心健康，请尽快派人检测水质并给出处理结果。"
)


def draft_bytes(index: int, run: str) -> bytes:
    return TicketDraft.model_validate(
        {
            "channel": "api",
            "source_key": f"{run}-{index:07d}",
            "received_at": datetime.now(UTC),
            "subject": "水质问题投诉",
            "body": BODY,
            "complainant": {"name": "王五", "phone": "+8613800000000", "email": "w@example.cn"},
            "first_contact": {"kind": "desk", "id": "bench"},
        }
    ).to_bytes()


class Deployment:
    def __init__(self, mode: str, workers: int, workdir: Path) -> None:
        self.mode = mode
        self.workers = workers
        self.workdir = workdir
        self.env: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> Deployment:
        async with AsyncExitStack() as stack:
            env = await stack.enter_async_context(bench_store(self.mode, self.workdir))
            self.env = env
            self.settings = load_settings(CONFIG, environ=env)
            self.runtime = await open_runtime(self.settings)
            stack.push_async_callback(self.runtime.close)
            stack.callback(lambda: stop(*self.processes, timeout=30))
            for index in range(self.workers):
                self.processes.append(
                    start_shouli(
                        "worker", "router", env=env, workdir=self.workdir, log=f"worker-{index}.log"
                    )
                )
            await asyncio.sleep(3.0)  # worker start-up (imports, jieba dictionary) is not measured
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._exit.aclose()

    async def ticket_count(self, run: str) -> int:
        async with self.runtime.database.sessions() as session:
            result = await session.execute(
                select(func.count()).select_from(Ticket).where(Ticket.source_key.like(f"{run}-%"))  # type: ignore[attr-defined]
            )
            return int(result.scalar_one())

    async def latencies(self, run: str) -> list[float]:
        async with self.runtime.database.sessions() as session:
            rows = await session.execute(
                select(Ticket.received_at, Ticket.created_at).where(
                    Ticket.source_key.like(f"{run}-%")
                )  # type: ignore[attr-defined]
            )
            return commit_seconds(rows)

    async def wait_for(self, run: str, count: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.ticket_count(run) >= count:
                return time.monotonic()
            await asyncio.sleep(0.02)
        raise TimeoutError(
            f"only {await self.ticket_count(run)} of {count} tickets after {timeout}s"
        )

    async def publish(self, bodies: list[bytes]) -> None:
        from ingest.queue import Outgoing

        queue = self.runtime.names.drafts
        await self.runtime.queue.publish(queue, [Outgoing(b, uuid.uuid4().hex) for b in bodies])


async def throughput(dep: Deployment, n: int) -> float:
    run = f"tp{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    chunk = 200
    in_flight = 8

    async def publisher(offset: int) -> None:
        for start in range(offset * chunk, n, chunk * in_flight):
            await dep.publish([draft_bytes(i, run) for i in range(start, min(start + chunk, n))])

    await asyncio.gather(*(publisher(k) for k in range(in_flight)))
    finished = await dep.wait_for(run, n, timeout=max(120, n / 50))
    return n / (finished - started)


async def latency(dep: Deployment, rate: float, seconds: float) -> tuple[float, float, float, int]:
    run = f"lat{uuid.uuid4().hex[:6]}"
    total = int(rate * seconds)
    start = time.monotonic()
    for index in range(total):
        target = start + index / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await dep.publish([draft_bytes(index, run)])
    await dep.wait_for(run, total, timeout=120)
    values = await dep.latencies(run)
    return percentile(values, 50), percentile(values, 95), percentile(values, 99), total


async def raw_rabbit(n: int, size: int) -> float:
    """aio-pika alone: confirmed persistent publishes to a durable queue, consumed and acked."""
    connection = await aio_pika.connect_robust(AMQP_URL)
    publish_channel = await connection.channel(publisher_confirms=True)
    consume_channel = await connection.channel()
    await consume_channel.set_qos(prefetch_count=256)
    name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    queue = await consume_channel.declare_queue(
        name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    body = b"x" * size
    received = 0
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received >= n:
            done.set()

    consumer_tag = await queue.consume(on_message)
    started = time.monotonic()
    window = 500
    for start in range(0, n, window):
        await asyncio.gather(
            *(
                publish_channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name,
                )
                for _ in range(start, min(start + window, n))
            )
        )
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.monotonic() - started
    await queue.cancel(consumer_tag)
    await consume_channel.queue_delete(name)
    await connection.close()
    return n / elapsed


async def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--n", type=int, default=5000, help="drafts for the throughput run")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="offered drafts/s for the latency run"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--modes", default="embedded,distributed")
    parser.add_argument(
        "--workers", default="1,2", help="router processes for the distributed mode"
    )
    args = parser.parse_args()

    size = len(draft_bytes(0, "size"))
    print(
        f"machine: {os.cpu_count()} cores; draft size {size} bytes; n={args.n};"
        f" latency at {args.rate:.0f}/s"
    )
    rows: list[tuple[str, float, tuple[float, float, float, int]]] = []
    setups = []
    for mode in args.modes.split(","):
        counts = [1] if mode == "embedded" else [int(w) for w in args.workers.split(",")]
        setups.extend((mode, count) for count in counts)
    for mode, count in setups:
        workdir = Path(tempfile.mkdtemp(prefix="shouli-bench-"))
        try:
            async with Deployment(mode, count, workdir) as dep:
                rate = await throughput(dep, args.n)
                lat = await latency(dep, args.rate, args.seconds)
            label = (
                "embedded (SQLite + embedded queue)"
                if mode == "embedded"
                else f"RabbitMQ + PostgreSQL, {count} router(s)"
            )
            rows.append((label, rate, lat))
            p50, p95, p99 = (f"{v * 1000:6.1f} ms" for v in lat[:3])
            print(
                f"  {label:<40} {rate:8.0f} tickets/s   p50 {p50}  p95 {p95}  p99 {p99}"
                f"  ({lat[3]} at {args.rate:.0f}/s)",
                flush=True,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    raw = None
    if any(mode == "distributed" for mode, _ in setups):
        raw = await raw_rabbit(args.n, size)
        print(f"  {'raw aio-pika publish+consume (quorum)':<40} {raw:8.0f} msgs/s")
    print()
    print("| deployment | tickets/s | ratio to raw broker | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for label, rate, lat in rows:
        ratio = f"{rate / raw:.2f}" if raw else "-"
        p50, p95, p99 = (f"{v * 1000:.1f}" for v in lat[:3])
        print(f"| {label} | {rate:.0f} | {ratio} | {p50} | {p95} | {p99} |")
    if raw:
        print(f"| raw aio-pika publish+consume | {raw:.0f} | 1.00 | | | |")


if __name__ == "__main__":
    # The same event loop as `shouli` uses, for our path and for the raw broker alike.
    import uvloop

    uvloop.run(main())
