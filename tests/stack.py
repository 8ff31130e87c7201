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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine.url import make_url

from channels.runtime import Runtime
from ingest.app.runtime import open_runtime
from ingest.app.settings import Settings, load_settings
from ingest.draft import Channel, FirstContact, FirstContactKind, TicketDraft
from ingest.queue import Delivery, QueueBackend
from router.calendar import WorkCalendar
from router.rules import Router
from store.models import Ticket
from store.tickets import find_ticket, ticket_json
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


class _WatchedQueue:
    """The stack's queue as one router worker sees it, noting when the worker asks for drafts.

    The worker settles a batch before it asks again, and a receive waits only while nothing
    is there to hand out (RabbitMQ's prefetch buffer included): a worker that is waiting in,
    or came back empty from, a request made after some moment holds nothing from before it.
    """

    def __init__(self, queue: QueueBackend, drafts: str) -> None:
        self._queue = queue
        self._drafts = drafts
        self._asking_since: float | None = None  # the request it is waiting in, if any
        self._empty_since = float("-inf")  # the last request that came back empty

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def receive(self, queue: str, max_messages: int, timeout: float) -> list[Delivery]:
        if queue != self._drafts:
            return await self._queue.receive(queue, max_messages, timeout)
        asked = self._asking_since = time.monotonic()
        try:
            deliveries = await self._queue.receive(queue, max_messages, timeout)
        finally:
            self._asking_since = None
        if not deliveries:
            self._empty_since = asked
        return deliveries

    def idle_since(self, moment: float) -> bool:
        asking = self._asking_since
        return self._empty_since >= moment or (asking is not None and asking >= moment)


@dataclass
class _Running:
    task: asyncio.Task[None]
    stopping: asyncio.Event
    queue: _WatchedQueue


class Stack:
    def __init__(self, mode: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.mode = mode
        self.tmp_path = tmp_path
        self.env = env
        self.settings: Settings = load_settings(CONFIG, environ=env)
        self.runtime: Runtime | None = None
        self._routers: list[_Running] = []

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    def process_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}
        return {**keep, **self.env}

    def shouli_command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ingest.app.cli", *args]

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
        queue = _WatchedQueue(self.rt.queue, self.rt.names.drafts)
        worker = RouterWorker(
            settings=settings,
            queue=queue,
            database=self.rt.database,
            router=router or Router(settings),
            calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
            metrics=self.rt.metrics,
        )
        stopping = asyncio.Event()
        self._routers.append(_Running(asyncio.create_task(worker.run(stopping)), stopping, queue))
        return worker

    async def stop_routers(self) -> None:
        for running in self._routers:
            running.stopping.set()
        await asyncio.gather(*(running.task for running in self._routers))
        self._routers.clear()

    async def drain(self, *, stop: bool = False, timeout: float = 60.0) -> int:
        """Route what was published: wait until no draft is waiting in the drafts queue and
        every running router (one is started when none runs) has settled all it took (made
        the tickets, placed the mail, retried or dead-lettered); with ``stop``, stop the
        routers then (join them). Retries scheduled for later are not waited for.
        Returns the number of tickets, final for what was published before the call."""
        if not self._routers:
            self.start_router()
        deadline = time.monotonic() + timeout
        while True:
            if await self.rt.queue.depth(self.rt.names.drafts) == 0:
                # Nothing waits: what is left is in the routers' hands (RabbitMQ's prefetch
                # buffer included). Each router asks again once it has settled it.
                emptied = time.monotonic()
                while not all(r.queue.idle_since(emptied) for r in self._routers):
                    self._check_routers(deadline)
                    await asyncio.sleep(0.02)
                if await self.rt.queue.depth(self.rt.names.drafts) == 0:
                    break
            self._check_routers(deadline)
            await asyncio.sleep(0.02)
        if stop:
            await self.stop_routers()
        return await self.ticket_count()

    def _check_routers(self, deadline: float) -> None:
        for running in self._routers:
            if running.task.done():
                running.task.result()  # its exception, if it died of one
                raise AssertionError("a router stopped while the drafts were draining")
        if time.monotonic() > deadline:
            raise AssertionError("the drafts queue did not drain in time")

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
        stack.runtime = await open_runtime(stack.settings)
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
        stack.runtime = await open_runtime(stack.settings)
        try:
            yield stack
        finally:
            await stack.stop_routers()
            await stack.rt.close()
            await delete_rabbit_queues(prefix)


ZHANG = {"name": "张三", "phone": "+8613812345678", "email": "zhang@example.cn"}


def a_complainant() -> dict[str, str]:
    """张三 with a phone and an address of their own: drafts made alike are different
    complainants' unless a test says otherwise (``complainant=ZHANG``), so the router's
    repeat rule never takes one for a repeat of another."""
    tag = uuid.uuid4().int
    return ZHANG | {"phone": f"+86138{tag % 10**8:08d}", "email": f"zhang.{tag}@example.cn"}


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
        "complainant": a_complainant(),
        "first_contact": FirstContact(kind=FirstContactKind.DESK, id="test-desk"),
    }
    data.update(fields)
    return TicketDraft.model_validate(data)


async def ticket_of(stack: Stack, number: str) -> dict[str, Any]:
    """The ticket as the API shows it (events, links, complainant)."""
    async with stack.rt.database.sessions() as session:
        ticket = await find_ticket(session, number)
        assert ticket is not None, f"no ticket {number}"
        return await ticket_json(session, ticket)


def events(ticket: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in ticket["events"] if e["kind"] == kind]


def notes(ticket: dict[str, Any]) -> list[str]:
    return [e["detail"]["note"] for e in events(ticket, "intake_note")]
