"""Referral benchmark: signed work orders through the webhook to committed tickets, measured.

    .venv/bin/python -m bench.referrals                       # embedded and RabbitMQ+PostgreSQL
    .venv/bin/python -m bench.referrals --n 5000 --concurrency 64 --modes embedded

For each mode it starts real processes on a fresh store and queue: ``shouli edge`` (the HTTP
edge, which checks every signature, the timestamp and the replay guard, maps the order and
hands it off) and ``shouli worker router``. The client signs each 12345-style order with the
source's secret just before sending it, ``--concurrency`` requests in flight, and reports:

* accepted/s: 201 answers per second at the edge (signature check, replay-guard insert,
  number reservation, durable hand-off);
* end to end/s: from the first request to the last ticket committed by the router;
* p50/p95/p99 of the HTTP answer time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.engine.url import make_url

from channels.referral.signature import signed_headers
from ingest.runtime import Runtime
from ingest.settings import load_settings
from store.models import Ticket

ROOT = Path(__file__).resolve().parent.parent
AMQP_URL = os.environ.get("SHOULI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get(
    "SHOULI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SECRET = "bench-gov12345-secret-0123456789"
TEMPLATE = json.loads(
    (ROOT / "tests" / "fixtures" / "referrals" / "gov12345-order.json").read_text(encoding="utf-8")
)


def order_body(run: str, index: int) -> bytes:
    order = dict(TEMPLATE, 工单编号=f"{run}-{index:07d}", 业务流水号=f"{run}{index}")
    return json.dumps(order, ensure_ascii=False).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Deployment:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.port = free_port()
        self.pg_name: str | None = None
        self.processes: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> Deployment:
        env = {
            "SHOULI_CONFIG": str(ROOT / "config.yaml"),
            "SHOULI_BROKER__PREFIX": f"bench{uuid.uuid4().hex[:8]}",
            "SHOULI_BLOBS__PATH": str(self.workdir / "blobs"),
            "SHOULI_LOGGING__LEVEL": "warning",
            "SHOULI_LOGGING__FORMAT": "json",
            "SHOULI_HTTP__PORT": str(self.port),
            "SHOULI_REFERRAL_GOV12345_SECRET": SECRET,
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
        self.runtime = await Runtime.open(load_settings(ROOT / "config.yaml", environ=env))
        keep = {k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}
        log = (self.workdir / "processes.log").open("wb")
        for role in (["edge"], ["worker", "router"]):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ingest.cli", *role],
                    env=keep | env,
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        await self._wait_ready()
        await asyncio.sleep(2.0)  # the router's start-up (jieba dictionary) is not measured
        return self

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("the edge never became ready; see processes.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aexit__(self, *_exc: object) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        await self.runtime.close()
        if self.pg_name:
            base = make_url(PG_URL)
            conn = await asyncpg.connect(
                host=base.host, port=base.port, user=base.username, database=base.database
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            await conn.close()

    async def tickets(self, run: str) -> int:
        async with self.runtime.database.sessions() as session:
            query = select(func.count()).select_from(Ticket)
            query = query.where(Ticket.source_key.like(f"gov12345:{run}-%"))  # type: ignore[attr-defined]
            return int((await session.execute(query)).scalar_one())


async def run_mode(dep: Deployment, n: int, concurrency: int) -> tuple[float, float, list[float]]:
    run = f"B{uuid.uuid4().hex[:6]}"
    latencies: list[float] = []
    failures: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(n):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=dep.url, limits=limits, timeout=60) as client:

        async def sender() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = order_body(run, index)
                headers = signed_headers(SECRET, int(time.time()), body)
                started = time.monotonic()
                response = await client.post(
                    "/api/referrals/gov12345", content=body, headers=headers
                )
                latencies.append(time.monotonic() - started)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")

        started = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        accepted_at = time.monotonic()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    deadline = time.monotonic() + max(120.0, n / 20)
    while await dep.tickets(run) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await dep.tickets(run)} of {n} tickets committed")
        await asyncio.sleep(0.05)
    finished = time.monotonic()
    return n / (accepted_at - started), n / (finished - started), latencies


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="work orders per mode")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--modes", default="embedded,distributed")
    args = parser.parse_args()
    size = len(order_body("B000000", 0))
    print(
        f"machine: {os.cpu_count()} cores; order size {size} bytes; n={args.n}; "
        f"concurrency {args.concurrency}; HMAC-SHA256 signature, timestamp and replay guard "
        "checked on every request"
    )
    print()
    print(
        "| deployment | accepted/s (201 at the edge) | end to end/s (committed tickets) "
        "| p50 ms | p95 ms | p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="shouli-bench-referrals-"))
        try:
            async with Deployment(mode, workdir) as dep:
                accepted, end_to_end, latencies = await run_mode(dep, args.n, args.concurrency)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        label = (
            "embedded (SQLite + embedded queue)"
            if mode == "embedded"
            else "RabbitMQ + PostgreSQL, 1 edge, 1 router"
        )
        print(
            f"| {label} | {accepted:.0f} | {end_to_end:.0f} | "
            f"{percentile(latencies, 50) * 1000:.1f} | {percentile(latencies, 95) * 1000:.1f} | "
            f"{percentile(latencies, 99) * 1000:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
