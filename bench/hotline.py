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
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.common import (
    CONFIG,
    bench_store,
    free_port,
    process_environment,
    shouli_command,
    start_shouli,
    stop,
    wait_ready,
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


class Deployment:
    """A fresh store and queue for one mode, and the environment that points at them."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.env: dict[str, str] = {}

    async def __aenter__(self) -> Deployment:
        async with AsyncExitStack() as stack:
            self.env = await stack.enter_async_context(
                bench_store(
                    self.mode,
                    self.workdir,
                    SHOULI_AGENT_1001_TOKEN="bench-agent-1001-token",
                    SHOULI_AGENT_1002_TOKEN="bench-agent-1002-token",
                )
            )
            code = await asyncio.to_thread(
                subprocess.call,
                shouli_command("migrate"),
                env=process_environment(self.env),
                stdout=subprocess.DEVNULL,
            )
            if code:
                raise SystemExit(f"shouli migrate failed ({code})")
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._exit.aclose()

    def start(self, *args: str, log: str, **env: str) -> subprocess.Popen[bytes]:
        return start_shouli(*args, env=self.env | env, workdir=self.workdir, log=log)

    async def ticket_count(self) -> int:
        from ingest.app.settings import load_settings
        from store.db import Database
        from store.models import Ticket

        settings = load_settings(CONFIG, environ=self.env)
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
        shouli_command("import-calls", str(export), "--json", "--no-progress"),
        env=process_environment(deployment.env),
        cwd=deployment.workdir,
        stdout=subprocess.PIPE,
        stderr=(deployment.workdir / "import.log").open("wb"),
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, out, usage.ru_maxrss / 1024


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
        await asyncio.to_thread(stop, router)
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
            # start-up loads jieba dictionaries
            await wait_ready(base, process=server, log=workdir / "serve.log", timeout=180)
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
            await asyncio.to_thread(stop, server)
            if router is not None:
                await asyncio.to_thread(stop, router)
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
