"""Web channel benchmark: complaints with a 1 MB photo, end to end to committed tickets.

    .venv/bin/python -m bench.web                          # embedded and RabbitMQ+PostgreSQL
    .venv/bin/python -m bench.web --n 400 --concurrency 16 --modes embedded

For each mode it starts a real ``shouli serve`` (HTTP edge, router and the other workers in
one process, as ``make run`` does) on a fresh store and queue, then POSTs --n complaints to
``/api/complaints`` as multipart forms, each with its own 1 MB PNG (so the blob store never
deduplicates), from --concurrency clients at once. Printed, never asserted:

* submissions/s: accepted HTTP answers (201) per second of wall time;
* tickets/s: from the first request to the last ticket committed by the router;
* p50/p95/p99 of the HTTP answer time, and of received_at -> ticket commit.

Rate limits are raised for the run (one address sends everything).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.engine.url import make_url

from bench.spine import AMQP_URL, PG_URL, percentile
from ingest.settings import Settings, load_settings
from store.db import Database
from store.models import Ticket

ROOT = Path(__file__).resolve().parent.parent
PNG = (ROOT / "tests" / "fixtures" / "web" / "leak.png").read_bytes()
DETAILS = (
    "光明小区5栋从前天起自来水发黄、有明显异味，烧开后壶底有黄色沉淀。家中有老人和小孩，"
    "不敢饮用。请尽快派人上门检测水质，说明原因并告知处理结果。"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photo(size: int) -> bytes:
    """A PNG of ``size`` bytes: a real image, then random bytes after its end chunk."""
    return PNG + random.randbytes(size - len(PNG))


def start_serve(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}
    with (workdir / "serve.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "serve"],
            env={**keep, **env},
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class Server:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pg_name: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Server:
        env = {
            "SHOULI_CONFIG": str(ROOT / "config.yaml"),
            "SHOULI_BROKER__PREFIX": f"benchweb{uuid.uuid4().hex[:8]}",
            "SHOULI_BLOBS__PATH": str(self.workdir / "blobs"),
            "SHOULI_LOGGING__LEVEL": "warning",
            "SHOULI_LOGGING__FORMAT": "json",
            "SHOULI_HTTP__PORT": str(self.port),
            "SHOULI_ORGANISATION__PUBLIC_URL": self.url,
            "SHOULI_WEB__RATE_LIMITS__SUBMISSIONS__REQUESTS": "100000000",
            "SHOULI_WEB__CSRF_SECRET_ENV": "SHOULI_BENCH_CSRF_SECRET",
            "SHOULI_BENCH_CSRF_SECRET": "bench-secret",
        }
        if "email" in Settings.model_fields:
            # The SMTP listener's fixed default port would clash with another running serve.
            env["SHOULI_EMAIL__SMTP__PORT"] = str(free_port())
        if self.mode == "embedded":
            env["SHOULI_DATABASE__URL"] = f"sqlite+aiosqlite:///{self.workdir}/bench.db"
        else:
            base = make_url(PG_URL)
            self.pg_name = f"shouli_benchweb_{uuid.uuid4().hex[:8]}"
            conn = await asyncpg.connect(
                host=base.host, port=base.port, user=base.username, database=base.database
            )
            await conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            await conn.close()
            env["SHOULI_DATABASE__URL"] = base.set(database=self.pg_name).render_as_string(
                hide_password=False
            )
            env["SHOULI_BROKER__URL"] = AMQP_URL
        self.settings = load_settings(ROOT / "config.yaml", environ=env)
        self.process = start_serve(env, self.workdir)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"serve did not become ready; see {self.workdir}/serve.log")
        self.database = Database(self.settings.database)
        await asyncio.sleep(2.0)  # the router's start-up (jieba dictionary) is not measured
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.database.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.pg_name:
            base = make_url(PG_URL)
            conn = await asyncpg.connect(
                host=base.host, port=base.port, user=base.username, database=base.database
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            await conn.close()

    async def tickets(self) -> int:
        async with self.database.sessions() as session:
            result = await session.execute(
                select(func.count()).select_from(Ticket).where(Ticket.channel == "web")  # type: ignore[arg-type]
            )
            return int(result.scalar_one())

    async def commit_latencies(self) -> list[float]:
        async with self.database.sessions() as session:
            rows = await session.execute(
                select(Ticket.received_at, Ticket.created_at).where(Ticket.channel == "web")  # type: ignore[arg-type]
            )
            out = []
            for received, created in rows:
                received = received if received.tzinfo else received.replace(tzinfo=UTC)
                created = created if created.tzinfo else created.replace(tzinfo=UTC)
                out.append((created - received).total_seconds())
            return out


async def run(mode: str, n: int, concurrency: int, size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="shouli-bench-web-") as tmp:
        async with Server(mode, Path(tmp)) as server:
            incident = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            photos = [photo(size) for _ in range(n)]  # made before the clock starts
            answers: list[float] = []
            failures: list[str] = []
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(n):
                queue.put_nowait(index)

            async def client() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                    while not queue.empty():
                        index = queue.get_nowait()
                        started = time.monotonic()
                        response = await http.post(
                            "/api/complaints",
                            data={
                                "name": "王五",
                                "contact": f"+86139{index:08d}",
                                "incident_at": incident,
                                "category": "water_quality",
                                "details": DETAILS,
                                "idempotency_key": f"bench-{uuid.uuid4().hex}",
                            },
                            files=[("evidence", (f"水质{index}.png", photos[index], "image/png"))],
                        )
                        answers.append(time.monotonic() - started)
                        if response.status_code != 201:
                            failures.append(f"{response.status_code} {response.text[:200]}")

            began = time.monotonic()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            accepted_at = time.monotonic()
            deadline = accepted_at + 600
            while time.monotonic() < deadline:
                if await server.tickets() >= n - len(failures):
                    break
                await asyncio.sleep(0.05)
            committed_at = time.monotonic()
            made = await server.tickets()
            commit = await server.commit_latencies()
    store = "SQLite + embedded queue" if mode == "embedded" else "PostgreSQL + RabbitMQ"
    print(f"\n== web channel, {mode} ({store}), one `shouli serve` process ==")
    print(f"  {n} complaints x {size / 1024 / 1024:.1f} MB PNG, {concurrency} concurrent clients")
    if failures:
        print(f"  FAILED: {len(failures)}, first: {failures[0]}")
    print(f"  submissions/s (HTTP 201):       {n / (accepted_at - began):8.1f}")
    print(
        f"  tickets/s (to last commit):     {made / (committed_at - began):8.1f}"
        f"   ({made} tickets in {committed_at - began:.1f} s)"
    )
    print(
        "  HTTP answer        p50/p95/p99: "
        + " / ".join(f"{percentile(answers, p) * 1000:.0f}" for p in (50, 95, 99))
        + " ms"
    )
    print(
        "  received -> commit p50/p95/p99: "
        + " / ".join(f"{percentile(commit, p) * 1000:.0f}" for p in (50, 95, 99))
        + " ms"
    )
    megabytes = n * size / 1024 / 1024
    print(f"  upload volume: {megabytes / (accepted_at - began):.1f} MB/s")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="complaints per mode")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="attachment bytes")
    parser.add_argument("--modes", default="embedded,distributed")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        await run(mode.strip(), args.n, args.concurrency, args.size)


if __name__ == "__main__":
    asyncio.run(main())
