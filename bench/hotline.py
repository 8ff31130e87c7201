"""Hotline benchmark: an export imported end to end, and agents filing calls over HTTP.
Measured and printed, never asserted.

    .venv/bin/python -m bench.hotline                       # 100,000 rows, 8 agents, embedded
    .venv/bin/python -m bench.hotline --rows 1000000 --modes embedded --calls 0
    .venv/bin/python -m bench.hotline --modes embedded,distributed --calls 4000

For each mode, on a fresh store and queue:

* import: writes a ``--rows`` export in the shipped ``callcentre`` vendor format (GB18030,
  as Excel saves CSV on a Chinese Windows), runs ``shouli import-calls`` and a ``shouli worker
  router`` as real processes, and reports rows/s from the start of the import to the last
  ticket committed, the import's own rows/s, and the import process's peak RSS
  (``ru_maxrss`` from ``wait4``);
* API: starts ``shouli serve`` on a free loopback port and has ``--agents`` concurrent agents
  (httpx, one connection each) file ``--calls`` calls, each from its own caller, and reports
  calls/s and p50/p95/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
AMQP_URL = os.environ.get("SHOULI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get(
    "SHOULI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
HEADERS = [
    "通话流水号",
    "来电号码",
    "联系电话",
    "被叫号码",
    "坐席工号",
    "通话开始时间",
    "通话结束时间",
    "呼叫类型",
    "录音编号",
    "IVR轨迹",
    "工单分类",
    "来电内容",
    "客户诉求",
    "客户姓名",
    "联系地址",
    "用户户号",
    "处理方式",
    "答复内容",
    "规范应答编号",
]
MATTERS = [
    ("停水", "小区突然停水，没有收到任何停水通知，家里老人孩子用水困难", "尽快恢复供水"),
    ("水质问题", "自来水发黄有异味，烧开后有沉淀，已经持续好几天", "派人检测水质"),
    ("水压问题", "高层住户水压不足，早晚高峰基本上不去水", "解决水压问题"),
    ("抄表收费", "本月水费比上月高出一倍，怀疑抄表有误", "核实读数并退还多收水费"),
    ("管网漏水", "路口地面持续冒水，路面已经开始下沉", "尽快抢修"),
    ("服务态度", "营业厅工作人员态度冷淡，问题没有解决", "要求道歉并解决问题"),
]
SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨"


def write_export(
    path: Path, rows: int, *, start: int = 0, encoding: str = "gb18030", run: str = "B"
) -> int:
    """A call-centre export of ``rows`` distinct calls (callcentre vendor columns); bytes."""
    base = datetime(2025, 6, 16, 8, 0, 0)
    rng = random.Random(start)
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADERS)
        for index in range(start, start + rows):
            label, summary, request = MATTERS[index % len(MATTERS)]
            started = base + timedelta(seconds=37 * index)
            resolved = index % 5 == 0
            writer.writerow(
                [
                    f"{run}{index:09d}",
                    f"13{index % 10}{index:08d}"[:11],
                    "",
                    "96116",
                    "1001" if index % 2 else "1002",
                    started.strftime("%Y-%m-%d %H:%M:%S"),
                    (started + timedelta(seconds=rng.randint(60, 900))).strftime(
                        "%Y-%m-%d %H:%M:%S"
                    ),
                    "呼入",
                    f"R{index:09d}",
                    "1-3",
                    label,
                    f"{summary}（第{index}号来电）",
                    request,
                    f"{SURNAMES[index % len(SURNAMES)]}先生",
                    f"示例市幸福路{index % 300}号",
                    f"{31000000 + index}",
                    "直接办结" if resolved else "派单",
                    "已按规范解释" if resolved else "",
                    "GF-017" if resolved else "",
                ]
            )
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deployment:
    """A fresh store and queue for one mode, and the environment that points at them."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.prefix = f"bh{uuid.uuid4().hex[:8]}"
        self.database_name: str | None = None
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")},
            "SHOULI_CONFIG": str(ROOT / "config.yaml"),
            "SHOULI_BROKER__PREFIX": self.prefix,
            "SHOULI_BLOBS__PATH": str(workdir / "blobs"),
            "SHOULI_LOGGING__LEVEL": "warning",
            "SHOULI_LOGGING__FORMAT": "json",
            "SHOULI_AGENT_1001_TOKEN": "bench-agent-1001-token",
            "SHOULI_AGENT_1002_TOKEN": "bench-agent-1002-token",
        }
        if mode == "embedded":
            self.env["SHOULI_DATABASE__URL"] = f"sqlite+aiosqlite:///{workdir}/shouli.db"

    async def __aenter__(self) -> Deployment:
        if self.mode == "distributed":
            import asyncpg
            from sqlalchemy.engine.url import make_url

            base = make_url(PG_URL)
            self.database_name = f"shouli_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(
                host=base.host, port=base.port or 5432, user=base.username, database=base.database
            )
            await admin.execute(f'CREATE DATABASE "{self.database_name}"')
            await admin.close()
            self.env["SHOULI_DATABASE__URL"] = base.set(
                database=self.database_name
            ).render_as_string(hide_password=False)
            self.env["SHOULI_BROKER__URL"] = AMQP_URL
        code = await asyncio.to_thread(
            subprocess.call, self.command("migrate"), env=self.env, stdout=subprocess.DEVNULL
        )
        if code:
            raise SystemExit(f"shouli migrate failed ({code})")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.database_name:
            import asyncpg
            from sqlalchemy.engine.url import make_url

            base = make_url(PG_URL)
            admin = await asyncpg.connect(
                host=base.host, port=base.port or 5432, user=base.username, database=base.database
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            await admin.close()
            sys.path.insert(0, str(ROOT))
            from tests.stack import delete_rabbit_queues

            await delete_rabbit_queues(self.prefix)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ingest.cli", *args]

    def start(self, *args: str, log: str, **env: str) -> subprocess.Popen[bytes]:
        handle = (self.workdir / log).open("wb")
        return subprocess.Popen(
            self.command(*args),
            env={**self.env, **env},
            cwd=self.workdir,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )

    async def ticket_count(self) -> int:
        from ingest.settings import load_settings
        from store.db import Database
        from store.models import Ticket

        settings = load_settings(ROOT / "config.yaml", environ=self.env)
        database = Database(settings.database)
        try:
            async with database.sessions() as session:
                counted = await session.execute(select(func.count()).select_from(Ticket))
                return int(counted.scalar_one())
        finally:
            await database.close()


def _run_import(deployment: Deployment, export: Path) -> tuple[int, bytes, float]:
    """Run ``shouli import-calls``; (exit code, stdout, peak RSS in MiB from wait4)."""
    process = subprocess.Popen(
        deployment.command("import-calls", str(export), "--json", "--no-progress"),
        env=deployment.env,
        cwd=deployment.workdir,
        stdout=subprocess.PIPE,
        stderr=(deployment.workdir / "import.log").open("wb"),
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, out, usage.ru_maxrss / 1024


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(60)


async def bench_import(mode: str, rows: int, workdir: Path) -> dict[str, Any]:
    export = workdir / "export.csv"
    size = write_export(export, rows)
    async with Deployment(mode, workdir) as deployment:
        router = await asyncio.to_thread(deployment.start, "worker", "router", log="router.log")
        started = time.monotonic()
        code, out, peak_mb = await asyncio.to_thread(_run_import, deployment, export)
        imported_at = time.monotonic()
        count = 0
        while count < rows and time.monotonic() - started < 3600:
            await asyncio.sleep(0.5)
            count = await deployment.ticket_count()
        committed_at = time.monotonic()
        await asyncio.to_thread(_stop, router)
    summary = out.decode().strip().splitlines()[-1] if out else "{}"
    return {
        "mode": mode,
        "rows": rows,
        "file_mb": round(size / 2**20, 1),
        "import_exit": code,
        "import_summary": summary,
        "import_rows_per_s": round(rows / (imported_at - started)),
        "end_to_end_rows_per_s": round(count / (committed_at - started)),
        "tickets": count,
        "import_peak_rss_mb": round(peak_mb, 1),
        "seconds": round(committed_at - started, 1),
    }


async def bench_api(
    mode: str, calls: int, agents: int, workdir: Path, server_role: str
) -> dict[str, Any]:
    async with Deployment(mode, workdir) as deployment:
        port = free_port()
        server = await asyncio.to_thread(
            deployment.start,
            server_role,
            log="serve.log",
            SHOULI_HTTP__PORT=str(port),
            SHOULI_HTTP__HOST="127.0.0.1",
        )
        # `edge` has no workers: a router beside it, as `serve` would run one.
        router = (
            await asyncio.to_thread(deployment.start, "worker", "router", log="router.log")
            if server_role == "edge"
            else None
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as probe:
                deadline = time.monotonic() + 180  # start-up loads jieba dictionaries
                while True:
                    if server.poll() is not None:
                        raise SystemExit(f"shouli serve exited; see {workdir / 'serve.log'}")
                    try:
                        if (await probe.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                    await asyncio.sleep(0.2)
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            per_agent = calls // agents
            run = uuid.uuid4().hex[:6]

            async def agent(number: int) -> None:
                agent_id = "1001" if number % 2 else "1002"
                token = deployment.env[f"SHOULI_AGENT_{agent_id}_TOKEN"]
                limits = httpx.Limits(max_connections=1)
                async with httpx.AsyncClient(
                    base_url=base,
                    limits=limits,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ) as client:
                    for index in range(per_agent):
                        serial = number * per_agent + index
                        label, summary, request = MATTERS[serial % len(MATTERS)]
                        body = {
                            "call_id": f"{run}-{serial}",
                            "caller_number": f"139{serial:08d}",
                            "agent_id": agent_id,
                            "started_at": datetime.now(UTC).isoformat(),
                            "category": {
                                "停水": "supply_outage",
                                "水质问题": "water_quality",
                                "水压问题": "water_pressure",
                                "抄表收费": "billing",
                                "管网漏水": "pipe_repair",
                                "服务态度": "service_attitude",
                            }[label],
                            "summary": summary,
                            "request": request,
                            "account_number": f"{40000000 + serial}",
                        }
                        sent = time.perf_counter()
                        response = await client.post("/api/calls", json=body)
                        latencies.append(time.perf_counter() - sent)
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            started = time.monotonic()
            await asyncio.gather(*(agent(n) for n in range(agents)))
            elapsed = time.monotonic() - started
        finally:
            await asyncio.to_thread(_stop, server)
            if router is not None:
                await asyncio.to_thread(_stop, router)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000, 1)

    return {
        "mode": mode,
        "server": server_role,
        "agents": agents,
        "calls": len(latencies),
        "statuses": statuses,
        "calls_per_s": round(len(latencies) / elapsed),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--modes", default="embedded")
    parser.add_argument(
        "--server",
        choices=("serve", "edge"),
        default="serve",
        help="HTTP process for the API part: serve (all roles), or edge plus a router worker",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, "-m", "bench.hotline", *sys.argv[1:]]))
    for mode in args.modes.split(","):
        if args.rows:
            workdir = Path(tempfile.mkdtemp(prefix=f"shouli-bench-import-{mode}-"))
            print(await bench_import(mode, args.rows, workdir), flush=True)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        if args.calls:
            workdir = Path(tempfile.mkdtemp(prefix=f"shouli-bench-api-{mode}-"))
            result = await bench_api(mode, args.calls, args.agents, workdir, args.server)
            print(result, flush=True)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
