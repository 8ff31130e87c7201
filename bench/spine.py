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

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine.url import make_url

from ingest.draft import TicketDraft
from ingest.runtime import Runtime
from ingest.settings import load_settings
from store.models import Ticket

ROOT = Path(__file__).resolve().parent.parent
AMQP_URL = os.environ.get("SHOULI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get(
    "SHOULI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
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


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Deployment:
    def __init__(self, mode: str, workers: int, workdir: Path) -> None:
        self.mode = mode
        self.workers = workers
        self.workdir = workdir
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.pg_name: str | None = None
        self.env: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> Deployment:
        env = {
            "SHOULI_CONFIG": str(ROOT / "config.yaml"),
            "SHOULI_BROKER__PREFIX": self.prefix,
            "SHOULI_BLOBS__PATH": str(self.workdir / "blobs"),
            "SHOULI_LOGGING__LEVEL": "warning",
            "SHOULI_LOGGING__FORMAT": "json",
        }
        if self.mode == "embedded":
            env["SHOULI_DATABASE__URL"] = f"sqlite+aiosqlite:///{self.workdir}/bench.db"
        else:
            base = make_url(PG_URL)
            self.pg_name = f"shouli_bench_{uuid.uuid4().hex[:8]}"
            conn = await asyncpg.connect(
                host=base.host, port=base.port, user=base.username, database=base.database
            )
            await conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            await conn.close()
            env["SHOULI_DATABASE__URL"] = base.set(database=self.pg_name).render_as_string(
                hide_password=False
            )
            env["SHOULI_BROKER__URL"] = AMQP_URL
        self.env = env
        self.settings = load_settings(ROOT / "config.yaml", environ=env)
        self.runtime = await Runtime.open(self.settings)
        process_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")},
            **env,
        }
        for index in range(self.workers):
            log = open(self.workdir / f"worker-{index}.log", "wb")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ingest.cli", "worker", "router"],
                    env=process_env,
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        await asyncio.sleep(3.0)  # worker start-up (imports, jieba dictionary) is not measured
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        await self.runtime.close()
        if self.mode == "distributed":
            connection = await aio_pika.connect(AMQP_URL)
            channel = await connection.channel()
            for name in (f"{self.prefix}.drafts", f"{self.prefix}.drafts.dead"):
                try:
                    await channel.queue_delete(name)
                except Exception:
                    channel = await connection.channel()
            await connection.close()
            base = make_url(PG_URL)
            conn = await asyncpg.connect(
                host=base.host, port=base.port, user=base.username, database=base.database
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            await conn.close()

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
            out = []
            for received, created in rows:
                received = received if received.tzinfo else received.replace(tzinfo=UTC)
                created = created if created.tzinfo else created.replace(tzinfo=UTC)
                out.append((created - received).total_seconds())
            return out

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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
