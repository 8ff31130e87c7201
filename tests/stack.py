"""A whole Shouli stack for tests: embedded (SQLite + embedded queue) or distributed
(PostgreSQL + RabbitMQ), each on fresh, private resources that are removed afterwards."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine.url import make_url

from ingest.draft import Channel, FirstContact, FirstContactKind, TicketDraft
from ingest.runtime import Runtime
from ingest.settings import Settings, load_settings
from router.calendar import WorkCalendar
from router.rules import Router
from store.models import Ticket
from tests.support import AMQP_URL, need_postgres, need_rabbitmq
from workers.router_worker import RouterWorker

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.yaml"
MODES = ("embedded", "distributed")


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the test server; dropped on exit."""
    base = make_url(need_postgres())
    name = f"shouli_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(
            host=base.host, port=base.port or 5432, user=base.username, database=base.database
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def delete_rabbit_queues(prefix: str) -> None:
    from ingest.queues import QueueNames
    from tests.support_rabbit import delete_queues, track_queue

    for name in QueueNames(prefix).all():
        track_queue(prefix, name)
    await delete_queues(prefix)


def stack_environment(mode: str, tmp_path: Path, database_url: str, prefix: str) -> dict[str, str]:
    """The SHOULI_* variables that point a process (or load_settings) at this stack."""
    env = {
        "SHOULI_CONFIG": str(CONFIG),
        "SHOULI_DATABASE__URL": database_url,
        "SHOULI_BROKER__PREFIX": prefix,
        "SHOULI_BLOBS__PATH": str(tmp_path / "blobs"),
        "SHOULI_LOGGING__FORMAT": "json",
        # A killed worker's leases come back quickly in tests (the default is minutes).
        "SHOULI_BROKER__VISIBILITY_TIMEOUT": "3",
        "SHOULI_WORKER__RETRY_BASE_SECONDS": "0.2",
        "SHOULI_WORKER__RETRY_MAX_SECONDS": "1",
    }
    if mode == "distributed":
        env["SHOULI_BROKER__URL"] = AMQP_URL
    return env


class Stack:
    def __init__(self, mode: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.mode = mode
        self.tmp_path = tmp_path
        self.env = env
        self.settings: Settings = load_settings(CONFIG, environ=env)
        self.runtime: Runtime | None = None
        self._tasks: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    def process_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}
        return {**keep, **self.env}

    def shouli_command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ingest.cli", *args]

    async def shouli(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """Run the real ``shouli`` command against this stack; (exit code, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            *self.shouli_command(*args),
            env=self.process_env(),
            cwd=self.tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return process.returncode, stdout.decode(), stderr.decode()

    def start_router(self, router: Router | None = None) -> RouterWorker:
        settings = self.settings
        worker = RouterWorker(
            settings=settings,
            queue=self.rt.queue,
            database=self.rt.database,
            router=router or Router(settings),
            calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
            metrics=self.rt.metrics,
        )
        stopping = asyncio.Event()
        self._tasks.append((asyncio.create_task(worker.run(stopping)), stopping))
        return worker

    async def stop_routers(self) -> None:
        for _, stopping in self._tasks:
            stopping.set()
        await asyncio.gather(*(task for task, _ in self._tasks))
        self._tasks.clear()

    async def ticket_count(self) -> int:
        async with self.rt.database.sessions() as session:
            return int(
                (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
            )

    async def wait_for_tickets(self, count: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        seen = await self.ticket_count()
        while seen < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            seen = await self.ticket_count()
        return seen

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return True
            await asyncio.sleep(0.05)
        return False


@asynccontextmanager
async def open_stack(mode: str, tmp_path: Path) -> AsyncIterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if mode == "embedded":
        env = stack_environment(mode, tmp_path, f"sqlite+aiosqlite:///{tmp_path}/shouli.db", prefix)
        stack = Stack(mode, tmp_path, env)
        stack.runtime = await Runtime.open(stack.settings)
        try:
            yield stack
        finally:
            await stack.stop_routers()
            await stack.rt.close()
        return
    need_rabbitmq()
    async with fresh_postgres_database() as database_url:
        env = stack_environment(mode, tmp_path, database_url, prefix)
        stack = Stack(mode, tmp_path, env)
        stack.runtime = await Runtime.open(stack.settings)
        try:
            yield stack
        finally:
            await stack.stop_routers()
            await stack.rt.close()
            await delete_rabbit_queues(prefix)


def make_draft(
    source_key: str | None = None,
    *,
    body: str = "自来水发黄，有异味，已经三天了，请尽快处理。",
    subject: str = "水质问题",
    channel: Channel = Channel.API,
    **fields: Any,
) -> TicketDraft:
    data: dict[str, Any] = {
        "channel": channel,
        "source_key": source_key or uuid.uuid4().hex,
        "received_at": datetime.now(UTC),
        "subject": subject,
        "body": body,
        "complainant": {"name": "张三", "phone": "+8613812345678", "email": "zhang@example.cn"},
        "first_contact": FirstContact(kind=FirstContactKind.DESK, id="test-desk"),
    }
    data.update(fields)
    return TicketDraft.model_validate(data)
