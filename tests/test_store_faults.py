"""Errors sorted by who is at fault: an outage is retried, a refusal is a dead letter at once.

The errors here are the real ones, raised by the real PostgreSQL and SQLite, not built by
hand: a refusal (integrity, data) would fail again however often it was retried, while a
terminated connection or an unreachable server will pass once the store is back.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ingest.queue import Outgoing
from store.db import Database, is_outage
from store.dead_letters import open_dead_letters
from store.settings import DatabaseSettings
from tests.stack import Stack, fresh_postgres_database, make_draft
from tests.support import need_postgres


async def _raised(database: Database, sql: str) -> BaseException:
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text(sql))
    except Exception as exc:
        return exc
    raise AssertionError(f"{sql!r} did not fail")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_postgresql_refusals_are_permanent_and_lost_connections_are_outages() -> None:
    need_postgres()
    async with fresh_postgres_database() as url:
        database = Database(DatabaseSettings(url=url))
        try:
            refusals = [
                await _raised(database, "SELECT 1/0"),  # 22012 division_by_zero
                await _raised(database, "SELECT E'a\\\\000b'::bytea::text::int"),  # 22P02
                await _raised(database, "SELECT 'x'::int"),
                await _raised(database, "SELECT * FROM no_such_table"),  # 42P01
            ]
            async with database.engine.begin() as conn:
                await conn.execute(text("CREATE TABLE u (k int UNIQUE)"))
                await conn.execute(text("INSERT INTO u VALUES (1)"))
            refusals.append(await _raised(database, "INSERT INTO u VALUES (1)"))  # 23505
            for error in refusals:
                assert isinstance(error, DBAPIError), error
                assert not is_outage(error), error
            # 57P01 admin_shutdown: what a PostgreSQL restart does to open connections.
            terminated = await _raised(database, "SELECT pg_terminate_backend(pg_backend_pid())")
            assert is_outage(terminated), terminated
        finally:
            await database.close()
    down = Database(
        DatabaseSettings(url=f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/test")
    )
    try:
        assert is_outage(await _raised(down, "SELECT 1"))
    finally:
        await down.close()


async def test_sqlite_refusals_are_permanent_and_an_unopenable_file_is_an_outage(
    tmp_path: Path,
) -> None:
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/s.db"))
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE u (k int UNIQUE)"))
            await conn.execute(text("INSERT INTO u VALUES (1)"))
        assert not is_outage(await _raised(database, "INSERT INTO u VALUES (1)"))
    finally:
        await database.close()
    directory = tmp_path / "a-directory"  # where the database file should be
    directory.mkdir()
    unopenable = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{directory}"))
    try:
        assert is_outage(await _raised(unopenable, "SELECT 1"))
    finally:
        await unopenable.close()


@pytest.mark.slow
async def test_a_draft_the_store_refuses_is_dead_lettered_at_once_with_the_reason(
    stack: Stack,
) -> None:
    """A draft whose reserved number another ticket already has can never be stored:
    retrying it as an outage only delayed the dead letter (and hid the reason)."""
    first = make_draft(f"first-{uuid.uuid4().hex[:8]}")
    await stack.rt.handoff.submit(first)
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    async with stack.rt.database.sessions() as session:
        number = (await session.execute(text("SELECT number FROM tickets"))).scalar_one()
    clash = make_draft(f"clash-{uuid.uuid4().hex[:8]}", number=number)
    await stack.rt.queue.publish(
        stack.rt.names.drafts, [Outgoing(clash.to_bytes(), f"api:{clash.source_key}")]
    )

    async def dead() -> bool:
        async with stack.rt.database.sessions() as session:
            return len(await open_dead_letters(session)) == 1

    assert await stack.wait_until(dead, timeout=60)
    async with stack.rt.database.sessions() as session:
        (letter,) = await open_dead_letters(session)
    assert letter.attempts == 1, letter.reason
    assert letter.reason.startswith("could not be stored: IntegrityError"), letter.reason
    assert await stack.ticket_count() == 1


@pytest.mark.parametrize("worker", ["notify", "referrals"])
async def test_an_unreadable_replay_message_is_a_dead_letter_not_acknowledged_away(
    stack: Stack, worker: str
) -> None:
    from ingest.queues import QueueNames
    from workers.notify import NotifyWorker
    from workers.referrals import ReferralsWorker

    names = QueueNames(stack.settings.broker.prefix)
    if worker == "notify":
        queue, running = names.notifications, NotifyWorker(stack.rt, stack.settings.worker)
    else:
        queue, running = names.referral_replies, ReferralsWorker(stack.rt, stack.settings.worker)
    await stack.rt.queue.declare(queue)
    await stack.rt.queue.publish(
        queue,
        [
            Outgoing(b"\xff not json", "replay-garbage"),
            Outgoing(b'{"notification_id": "x", "outbox_id": "x"}', "replay-not-a-number"),
        ],
    )
    try:
        await running.sweep(strict=True)
    finally:
        if isinstance(running, ReferralsWorker):
            await running.close()
    async with stack.rt.database.sessions() as session:
        letters = {d.message_id: d for d in await open_dead_letters(session)}
    assert set(letters) == {"replay-garbage", "replay-not-a-number"}
    for letter in letters.values():
        assert letter.queue == queue and letter.attempts == 1
        assert letter.reason.startswith("unreadable replay message"), letter.reason
    assert await stack.rt.queue.receive(queue, 10, timeout=0.2) == []
