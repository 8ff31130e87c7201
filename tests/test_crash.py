"""Nothing lost, nothing doubled: real worker processes killed mid-flight, a broker restart."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from ingest.queue import QueueUnavailable
from store.models import Ticket
from tests.stack import Stack, make_draft
from tests.support_rabbit import rabbitmqctl, start_app

pytestmark = pytest.mark.slow

DRAFTS = 1000


def _start_worker(stack: Stack, log_name: str) -> subprocess.Popen[bytes]:
    env = stack.process_env()
    # Small batches so the kill lands with many drafts leased but not yet committed.
    env["SHOULI_WORKER__BATCH_SIZE"] = "20"
    log = open(stack.tmp_path / log_name, "wb")
    return subprocess.Popen(
        stack.shouli_command("worker", "router"),
        env=env,
        cwd=stack.tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _tickets_and_keys(stack: Stack) -> tuple[int, int, int]:
    async with stack.rt.database.sessions() as session:
        total = (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        keys = (
            await session.execute(select(func.count(func.distinct(Ticket.source_key))))
        ).scalar_one()
        numbers = (
            await session.execute(select(func.count(func.distinct(Ticket.number))))
        ).scalar_one()
    return int(total), int(keys), int(numbers)


async def test_kill_9_of_a_router_worker_mid_flight_loses_and_doubles_nothing(stack: Stack) -> None:
    drafts = [make_draft(f"crash-{i:04d}") for i in range(DRAFTS)]
    for start in range(0, DRAFTS, 100):
        await stack.rt.handoff.submit_many(drafts[start : start + 100])

    first = _start_worker(stack, "worker-1.log")
    try:
        started = await stack.wait_until(lambda: _at_least(stack, 100), timeout=90)
        assert started, (stack.tmp_path / "worker-1.log").read_text(errors="replace")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    at_kill = await stack.ticket_count()
    assert first.returncode == -signal.SIGKILL
    assert at_kill < DRAFTS, "the kill must land while drafts are still in flight"

    second = _start_worker(stack, "worker-2.log")
    try:
        assert await stack.wait_for_tickets(DRAFTS, timeout=180) == DRAFTS, (
            stack.tmp_path / "worker-2.log"
        ).read_text(errors="replace")[-3000:]
        # Let any redelivery of an already-committed draft come through before counting.
        assert await stack.wait_until(lambda: _drained(stack), timeout=60)
        await asyncio.sleep(1.0)
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(30)
    assert code == 0, "SIGTERM drains and exits cleanly"
    total, keys, numbers = await _tickets_and_keys(stack)
    assert (total, keys, numbers) == (DRAFTS, DRAFTS, DRAFTS)


async def _at_least(stack: Stack, count: int) -> bool:
    return await stack.ticket_count() >= count


async def _drained(stack: Stack) -> bool:
    return await stack.rt.queue.depth(stack.rt.names.drafts) == 0


async def test_every_confirmed_publish_survives_a_rabbitmq_restart(
    distributed_stack: Stack,
) -> None:
    stack = distributed_stack
    total = 400
    drafts = [make_draft(f"restart-{i:04d}") for i in range(total)]
    confirmed: set[str] = set()
    refused: list[int] = []
    stack.start_router()

    async def publish_all() -> None:
        for index, draft in enumerate(drafts):
            try:
                await stack.rt.handoff.submit(draft)
                confirmed.add(draft.source_key)
            except QueueUnavailable:
                refused.append(index)
            await asyncio.sleep(0.005)

    publishing = asyncio.create_task(publish_all())
    await stack.wait_until(lambda: len(confirmed) >= 100, timeout=60)
    try:
        await rabbitmqctl("stop_app")
        await asyncio.sleep(1.0)
    finally:
        await start_app()
    await publishing
    # A sender that was told "try again later" (SMTP 451 / HTTP 503) does so.
    deadline = time.monotonic() + 60
    while refused and time.monotonic() < deadline:
        index = refused[0]
        try:
            await stack.rt.handoff.submit(drafts[index])
            confirmed.add(drafts[index].source_key)
            refused.pop(0)
        except QueueUnavailable:
            await asyncio.sleep(0.5)
    assert len(confirmed) == total
    assert await stack.wait_for_tickets(total, timeout=120) == total
    await asyncio.sleep(1.0)
    async with stack.rt.database.sessions() as session:
        keys = set((await session.execute(select(Ticket.source_key))).scalars())
    assert keys == confirmed
    assert await stack.ticket_count() == total


async def test_sigterm_lets_the_worker_finish_its_batch_and_exit_cleanly(stack: Stack) -> None:
    drafts = [make_draft(f"term-{i:03d}") for i in range(200)]
    await stack.rt.handoff.submit_many(drafts)
    worker = _start_worker(stack, "worker-term.log")
    try:
        assert await stack.wait_until(lambda: _at_least(stack, 20), timeout=90)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    assert code == 0
    log = (stack.tmp_path / "worker-term.log").read_text(errors="replace")
    assert "router_stopped" in log
    # Whatever it did not finish is still queued, not lost: a new worker completes it.
    stack.start_router()
    assert await stack.wait_for_tickets(200, timeout=120) == 200
