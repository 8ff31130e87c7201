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

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from sqlalchemy import func, select

from bench.common import (
    CONFIG,
    ROOT,
    argument_parser,
    bench_store,
    free_port,
    percentile,
    start_shouli,
    stop,
    wait_ready,
)
from channels.referral.signature import signed_headers
from ingest.app.runtime import open_runtime
from ingest.app.settings import load_settings
from store.models import Ticket

SECRET = "bench-gov12345-secret-0123456789"
TEMPLATE = json.loads(
    (ROOT / "tests" / "fixtures" / "referrals" / "gov12345-order.json").read_text(encoding="utf-8")
)


def order_body(run: str, index: int) -> bytes:
    order = dict(TEMPLATE, 工单编号=f"{run}-{index:07d}", 业务流水号=f"{run}{index}")
    return json.dumps(order, ensure_ascii=False).encode()


class Deployment:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Deployment:
        async with AsyncExitStack() as stack:
            env = await stack.enter_async_context(
                bench_store(
                    self.mode,
                    self.workdir,
                    SHOULI_HTTP__PORT=str(self.port),
                    SHOULI_REFERRAL_GOV12345_SECRET=SECRET,
                )
            )
            self.runtime = await open_runtime(load_settings(CONFIG, environ=env))
            stack.push_async_callback(self.runtime.close)
            stack.callback(lambda: stop(*self.processes, timeout=30))
            for role in (["edge"], ["worker", "router"]):
                self.processes.append(
                    start_shouli(*role, env=env, workdir=self.workdir, log="processes.log")
                )
            await wait_ready(
                self.url, process=self.processes[0], log=self.workdir / "processes.log"
            )
            await asyncio.sleep(2.0)  # the router's start-up (jieba dictionary) is not measured
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._exit.aclose()

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
    parser = argument_parser(__doc__)
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
