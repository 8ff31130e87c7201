"""The one outbox engine (store.outbox) on its own, against SQLite and PostgreSQL, with both
outboxes it drives (notifications, referral replies): the lease, the one retry/dead
decision, dead letters and replays. The workers' end-to-end behaviour is in test_notify.py
and test_referral_*.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select
from sqlmodel import col

from store.db import Database
from store.migrate import migrate
from store.models import DeadLetter, Event, Ticket
from store.notification_outbox import NOTIFICATIONS
from store.outbox import (
    AttemptOutcome,
    Outbox,
    claim_due,
    enqueue,
    record_attempt,
    replay,
    table_of,
)
from store.outbox_states import RowStatus
from store.referral_models import ReferralOutbox
from store.referral_outbox import REPLIES
from store.settings import DatabaseSettings
from store.tickets import NewEvent, NewTicket, as_utc, insert_tickets
from tests.stack import fresh_postgres_database, make_draft

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)
QUEUE = "t.outbox"


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 25.0


POLICY = Policy()
SENT = AttemptOutcome(True, detail="250 ok", code=250)
TRANSIENT = AttemptOutcome(False, detail="421 try later <zhang@example.cn>", code=421)
REFUSED = AttemptOutcome(False, permanent=True, detail="550 no such user", code=550)

# What each outbox writes on the ticket, per outcome: the event kinds its history shows.
EVENTS = {
    "notification": {
        "sent": ["notification_sent"],
        "retry": ["notification_attempt_failed"],
        "dead": ["notification_failed"],
        "replay": ["notification_replayed"],
    },
    "referral-outbox": {
        "sent": ["reply_attempt", "reply_delivered"],
        "retry": ["reply_attempt"],
        "dead": ["reply_attempt", "reply_dead_lettered"],
        "replay": ["reply_replayed"],
    },
}
OUTBOXES = {"notifications": NOTIFICATIONS, "replies": REPLIES}


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async def opened(url: str) -> AsyncIterator[Database]:
        database = Database(DatabaseSettings(url=url))
        try:
            await migrate(database)
            yield database
        finally:
            await database.close()

    if request.param == "sqlite":
        async for database in opened(f"sqlite+aiosqlite:///{tmp_path}/outbox.db"):
            yield database
        return
    async with fresh_postgres_database() as url:
        async for database in opened(url):
            yield database


@pytest.fixture(params=sorted(OUTBOXES))
def outbox(request: pytest.FixtureRequest) -> Outbox[Any]:
    return OUTBOXES[request.param]


def _new_ticket(conn: Connection) -> tuple[int, str]:
    number = f"TS{uuid.uuid4().hex[:10]}"
    made = (NewEvent("created", "test"),)
    ticket = NewTicket(make_draft(), number, "water", "normal", "new", True, None, None, None, made)
    insert_tickets(conn, [ticket], NOW)
    ticket_id = conn.execute(select(col(Ticket.id)).where(col(Ticket.number) == number))
    return int(ticket_id.scalar_one()), number


def _row(outbox: Outbox[Any], ticket_id: int, number: str, n: int) -> dict[str, Any]:
    if outbox is NOTIFICATIONS:
        return {
            "kind": "ack",
            "dedupe_key": f"ack:{number}:{n}",
            "ticket_id": ticket_id,
            "number": number,
            "recipient": "zhang@example.cn",
            "message_id": f"<ack.{uuid.uuid4().hex}@example.cn>",
            "detail": {},
        }
    return {
        "ticket_id": ticket_id,
        "number": number,
        "source": "hotline12345",
        "kind": "reply",
        "trigger_event_id": n,
        "payload": {"type": "reply", "n": n},
    }


async def _queued(database: Database, outbox: Outbox[Any], count: int) -> tuple[int, str]:
    """A ticket with ``count`` rows due now (the second enqueue is a replayed batch)."""

    def body(conn: Connection) -> tuple[int, str]:
        ticket_id, number = _new_ticket(conn)
        rows = [_row(outbox, ticket_id, number, n) for n in range(count)]
        assert enqueue(conn, outbox, rows, NOW) == count
        assert enqueue(conn, outbox, rows, NOW) == 0
        return ticket_id, number

    return await database.write(body)


async def _state(database: Database, outbox: Outbox[Any], row_id: int) -> Any:
    table = outbox.table
    return await database.write(
        lambda conn: conn.execute(select(table).where(table.c.id == row_id)).one()
    )


async def _outbox_events(database: Database, ticket_id: int, actor: str) -> list[dict[str, Any]]:
    found = await database.write(
        lambda conn: conn.execute(
            select(col(Event.kind), col(Event.detail))
            .where(col(Event.ticket_id) == ticket_id, col(Event.actor) == actor)
            .order_by(col(Event.id))
        ).all()
    )
    return [{"kind": kind, "detail": detail} for kind, detail in found]


async def _claim(database: Database, outbox: Outbox[Any], at: datetime, limit: int = 10) -> Any:
    return await database.write(lambda conn: claim_due(conn, outbox, at, lease=LEASE, limit=limit))


async def _record(
    database: Database, outbox: Outbox[Any], due: Any, outcome: AttemptOutcome, at: datetime
) -> Any:
    return await database.write(
        lambda conn: record_attempt(
            conn, outbox, due, outcome, policy=POLICY, dead_letter_queue=QUEUE, now=at
        )
    )


async def test_a_claim_leases_rows_and_counts_the_attempt(
    database: Database, outbox: Outbox[Any]
) -> None:
    await _queued(database, outbox, 3)
    first = await _claim(database, outbox, NOW, limit=2)
    assert [d.attempt for d in first] == [1, 1]
    second = await _claim(database, outbox, NOW)
    assert len(second) == 1, "leased rows are not handed out again"
    assert {d.id for d in first}.isdisjoint(d.id for d in second)
    assert await _claim(database, outbox, NOW + LEASE - timedelta(seconds=1)) == []
    # The claimers died mid-send: once the lease runs out the rows come back, and the
    # attempt they used is counted.
    again = await _claim(database, outbox, NOW + LEASE)
    assert sorted(d.id for d in again) == sorted(d.id for d in first + second)
    assert {d.attempt for d in again} == {2}


async def test_sent_is_final(database: Database, outbox: Outbox[Any]) -> None:
    ticket_id, _ = await _queued(database, outbox, 1)
    (due,) = await _claim(database, outbox, NOW)
    recorded = await _record(database, outbox, due, SENT, NOW)
    assert recorded.status == RowStatus.SENT
    row = await _state(database, outbox, due.id)
    assert (row.status, row.attempts, row.last_error) == (RowStatus.SENT, 1, None)
    assert as_utc(row.sent_at) == NOW
    assert await _claim(database, outbox, NOW + timedelta(days=1)) == []
    written = await _outbox_events(database, ticket_id, outbox.actor)
    assert [e["kind"] for e in written] == EVENTS[outbox.dead_letter_prefix]["sent"]
    assert written[0]["detail"]["attempt"] == 1


async def test_a_failure_is_retried_with_backoff_then_dead_after_max_attempts(
    database: Database, outbox: Outbox[Any]
) -> None:
    ticket_id, number = await _queued(database, outbox, 1)
    at = NOW
    for attempt in range(1, POLICY.max_attempts):
        (due,) = await _claim(database, outbox, at)
        assert due.attempt == attempt
        recorded = await _record(database, outbox, due, TRANSIENT, at)
        assert recorded.status == RowStatus.PENDING
        # ingest.backoff: base·2^(n-1), capped, jittered into its upper half.
        ceiling = min(POLICY.retry_max_seconds, POLICY.retry_base_seconds * 2 ** (attempt - 1))
        waited = (recorded.next_attempt_at - at).total_seconds()
        assert ceiling / 2 <= waited <= ceiling
        row = await _state(database, outbox, due.id)
        assert row.status == RowStatus.PENDING
        assert as_utc(row.next_attempt_at) == recorded.next_attempt_at
        assert "zhang@example.cn" not in row.last_error, "answers are masked"
        assert await _claim(database, outbox, recorded.next_attempt_at - timedelta(seconds=1)) == []
        at = recorded.next_attempt_at
    (due,) = await _claim(database, outbox, at)
    assert due.attempt == POLICY.max_attempts
    recorded = await _record(database, outbox, due, TRANSIENT, at)
    assert recorded.status == RowStatus.DEAD
    assert await _claim(database, outbox, at + timedelta(days=1)) == []
    letter = await _dead_letter(database, recorded.dead_letter_id)
    assert letter.queue == QUEUE
    assert letter.message_id == f"{outbox.dead_letter_prefix}:{due.id}"
    assert json.loads(letter.body) == {outbox.id_key: due.id, "number": number}
    assert letter.attempts == POLICY.max_attempts
    assert f"{POLICY.max_attempts} attempts" in letter.reason
    assert "421 try later" in letter.reason and "zhang@example.cn" not in letter.reason
    kinds = [e["kind"] for e in await _outbox_events(database, ticket_id, outbox.actor)]
    expected = EVENTS[outbox.dead_letter_prefix]
    assert kinds == expected["retry"] * (POLICY.max_attempts - 1) + expected["dead"]


async def test_a_permanent_refusal_is_dead_at_once_and_a_replay_sends_it_again(
    database: Database, outbox: Outbox[Any]
) -> None:
    ticket_id, _ = await _queued(database, outbox, 1)
    (due,) = await _claim(database, outbox, NOW)
    assert not await database.write(lambda conn: replay(conn, outbox, due.id, NOW))
    recorded = await _record(database, outbox, due, REFUSED, NOW)
    assert recorded.status == RowStatus.DEAD
    assert outbox.refused in (recorded.reason or "")
    letter = await _dead_letter(database, recorded.dead_letter_id)
    assert letter.attempts == 1 and "550 no such user" in letter.reason

    later = NOW + timedelta(hours=1)
    assert await database.write(lambda conn: replay(conn, outbox, due.id, later))
    assert not await database.write(lambda conn: replay(conn, outbox, due.id, later))
    row = await _state(database, outbox, due.id)
    assert (row.status, row.attempts) == (RowStatus.PENDING, 0)
    (again,) = await _claim(database, outbox, later)
    assert again.attempt == 1, "a replay starts with fresh attempts"
    assert (await _record(database, outbox, again, SENT, later)).status == RowStatus.SENT
    kinds = [e["kind"] for e in await _outbox_events(database, ticket_id, outbox.actor)]
    expected = EVENTS[outbox.dead_letter_prefix]
    assert kinds == expected["dead"] + expected["replay"] + expected["sent"]


async def test_concurrent_claimers_never_hold_the_same_row_on_postgresql() -> None:
    async with fresh_postgres_database() as url:
        database = Database(DatabaseSettings(url=url))
        try:
            await migrate(database)
            await _queued(database, REPLIES, 6)
            table = table_of(ReferralOutbox)
            # One claimer holds its rows in an open transaction; the other skips them
            # instead of waiting for it, and takes the rest.
            async with database.engine.begin() as holding:
                held = await holding.run_sync(
                    lambda conn: claim_due(conn, REPLIES, NOW, lease=LEASE, limit=3)
                )
                other = await asyncio.wait_for(_claim(database, REPLIES, NOW), timeout=10)
            assert len(held) == 3 and len(other) == 3
            assert {d.id for d in held}.isdisjoint(d.id for d in other)

            # And many at once, each in its own transaction: every row claimed exactly once.
            await _queued(database, REPLIES, 40)
            later = NOW + LEASE
            claims = await asyncio.gather(*(_claim(database, REPLIES, later, 4) for _ in range(16)))
            ids = [d.id for claim in claims for d in claim]
            assert len(ids) == len(set(ids)) == 46
            pending = await database.write(
                lambda conn: conn.execute(
                    select(table.c.id).where(table.c.next_attempt_at <= later)
                ).all()
            )
            assert pending == [], "every claimed row is leased past the claim"
        finally:
            await database.close()


async def _dead_letter(database: Database, dead_letter_id: int | None) -> DeadLetter:
    assert dead_letter_id is not None
    async with database.sessions() as session:
        letter = await session.get(DeadLetter, dead_letter_id)
    assert letter is not None
    return letter
