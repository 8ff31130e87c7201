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

import asyncio
import random
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from bench.common import (
    CONFIG,
    ROOT,
    argument_parser,
    bench_store,
    commit_seconds,
    free_port,
    percentile,
    start_shouli,
    stop,
    wait_ready,
)
from ingest.app.settings import Settings, load_settings
from store.db import Database
from store.models import Ticket

PNG = (ROOT / "tests" / "fixtures" / "web" / "leak.png").read_bytes()
DETAILS = (
    "光明小区5栋从前天起自来水发黄、有明显异味，烧开后壶底有黄色沉淀。家中有老人和小孩，"
    "不敢饮用。请尽快派人上门检测水质，说明原因并告知处理结果。"
)


def photo(size: int) -> bytes:
    """A PNG of ``size`` bytes: a real image, then random bytes after its end chunk."""
    return PNG + random.randbytes(size - len(PNG))


class Server:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        async with AsyncExitStack() as stack:
            extra = {
                "SHOULI_HTTP__PORT": str(self.port),
                "SHOULI_ORGANISATION__PUBLIC_URL": self.url,
                "SHOULI_WEB__RATE_LIMITS__SUBMISSIONS__REQUESTS": "100000000",
                "SHOULI_WEB__CSRF_SECRET_ENV": "SHOULI_BENCH_CSRF_SECRET",
                "SHOULI_BENCH_CSRF_SECRET": "bench-secret",
            }
            if "email" in Settings.model_fields:
                # The SMTP listener's fixed default port would clash with another running serve.
                extra["SHOULI_EMAIL__SMTP__PORT"] = str(free_port())
            env = await stack.enter_async_context(bench_store(self.mode, self.workdir, **extra))
            self.settings = load_settings(CONFIG, environ=env)
            process = start_shouli("serve", env=env, workdir=self.workdir, log="serve.log")
            stack.callback(stop, process)
            await wait_ready(self.url, process=process, log=self.workdir / "serve.log")
            self.database = Database(self.settings.database)
            stack.push_async_callback(self.database.close)
            await asyncio.sleep(2.0)  # the router's start-up (jieba dictionary) is not measured
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._exit.aclose()

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
            return commit_seconds(rows)


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
    parser = argument_parser(__doc__)
    parser.add_argument("--n", type=int, default=200, help="complaints per mode")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="attachment bytes")
    parser.add_argument("--modes", default="embedded,distributed")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        await run(mode.strip(), args.n, args.concurrency, args.size)


if __name__ == "__main__":
    asyncio.run(main())
