"""The one outbox engine: every message Shouli owes someone is a row that this module queues,
leases, records and replays, whichever outbox table it lives in (synchronous Core, run
inside ``Database.write``).

An outbox is described by an :class:`Outbox` (its table, its dead letters, the events it
writes on the ticket); the rules are here once:

* :func:`enqueue`: new rows, due now; ``ON CONFLICT DO NOTHING`` on the table's unique key,
  so a replayed batch or two workers sweeping the same events never make a second row;
* :func:`claim_due`: rows whose time has come, leased by moving ``next_attempt_at`` and with
  this attempt counted, in one transaction: no other worker takes them meanwhile, and a worker
  that dies mid-send has still used up an attempt;
* :func:`record_attempt`: the one decision: sent; dead with a dead letter (a permanent
  refusal, or the last attempt); else the next attempt after ``ingest.backoff``'s schedule;
* :func:`replay`: a dead row back to pending with fresh attempts (``shouli dead-letters
  replay`` publishes the dead letter's body, which names the row).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, Row, Select, Table, and_, func, insert, select, update
from sqlmodel import SQLModel, col

from ingest import backoff
from ingest.logs import redact_text
from store.db import upsert_insert
from store.models import DeadLetter, Event, Ticket
from store.outbox_states import RowStatus

# Out-of-order commits: an event id below one already seen may still commit a moment later,
# so every event sweep looks this many ids back (cheap: a primary-key range).
EVENT_ID_MARGIN = 10_000

Entry = tuple[str, dict[str, Any]]  # an event to write on the ticket: its kind and detail


class RetryPolicy(backoff.RetryPolicy, Protocol):
    @property
    def max_attempts(self) -> int: ...


@dataclass(frozen=True)
class AttemptOutcome:
    """One send as the store needs it; each channel's sender maps its own result to this."""

    sent: bool
    permanent: bool = False  # not sent, and trying again will not help
    detail: str = ""  # the receiver's answer or the error
    code: int | None = None  # the receiver's status (HTTP or SMTP), when it gave one


@dataclass(frozen=True)
class Due:
    """A claimed row: what every outbox has; each outbox's own kind of row adds the rest."""

    id: int
    kind: str
    ticket_id: int | None
    number: str | None
    attempt: int  # this attempt's number, counted when claimed


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_attempt` decided."""

    status: str
    error: str | None = None  # the masked answer, when not sent
    next_attempt_at: datetime | None = None
    reason: str | None = None  # why it is dead
    dead_letter_id: int | None = None


D = TypeVar("D", bound=Due)


@dataclass(frozen=True)
class Outbox(Generic[D]):
    """One outbox table and what differs between outboxes: the engine's rules do not.

    The tables stay apart (``notifications``, ``referral_outbox``): their rows share the
    engine's columns but not the rest (a recipient and a fixed Message-ID; a source, the
    trigger event and a payload), and merging them would renumber the rows that dead
    letters (``notification:7``) and ticket events (``outbox_id``) already name."""

    table: Table
    actor: str  # the actor of the events it writes
    dead_letter_prefix: str  # its dead letters' message ids are "<prefix>:<row id>"
    id_key: str  # the row id's key in a dead letter's body: what a replay message names
    refused: str  # why a permanent refusal is dead
    exhausted: str  # why the last attempt is dead, with {attempts}
    reason: str  # a dead letter's reason, with {kind}, {why} and {error}
    load: Callable[[Mapping[str, Any], Row[Any]], D]  # a claimed row, from the common fields
    attempted: Callable[[D, AttemptOutcome, Recorded], list[Entry]]  # events of an attempt
    replayed: Callable[[str, int, int], list[Entry]]  # events of a replay (kind, id, attempts)


def table_of(model: type[SQLModel]) -> Table:
    return model.metadata.tables[str(model.__tablename__)]


def write_event(
    conn: Connection,
    ticket_id: int | None,
    kind: str,
    detail: dict[str, Any],
    *,
    actor: str,
    at: datetime,
) -> None:
    if ticket_id is not None:  # a row without a ticket has nowhere to keep its history
        conn.execute(
            insert(Event).values(ticket_id=ticket_id, at=at, kind=kind, actor=actor, detail=detail)
        )


def newest_event_id(conn: Connection) -> int:
    """Where an event sweep stops; the next sweep starts after it."""
    return int(conn.execute(select(func.max(col(Event.id)))).scalar_one_or_none() or 0)


def new_events(
    kind: str | tuple[str, ...], after_event_id: int, newest: int, *ticket_columns: Any
) -> Select[Any]:
    """The ``kind`` events a sweep looks at, oldest first, each with its ticket (``event_id``,
    ``at``, ``actor``, ``detail``, ``ticket_id``, ``number`` and ``ticket_columns``): those
    after the last sweep's newest, less the margin for late commits. The caller adds its own
    conditions, the exclusion of the events it already has a row for among them."""
    return (
        select(
            col(Event.id).label("event_id"),
            col(Event.at),
            col(Event.actor),
            col(Event.detail),
            col(Ticket.id).label("ticket_id"),
            col(Ticket.number),
            *ticket_columns,
        )
        .join(Ticket, col(Ticket.id) == col(Event.ticket_id))
        .where(
            col(Event.id) > max(after_event_id - EVENT_ID_MARGIN, 0),
            col(Event.id) <= newest,
            col(Event.kind).in_((kind,) if isinstance(kind, str) else kind),
        )
        .order_by(col(Event.id))
    )


def enqueue(
    conn: Connection, outbox: Outbox[Any], rows: Sequence[Mapping[str, Any]], now: datetime
) -> int:
    """New rows, due now unless a row gives its own ``next_attempt_at`` (an SMS held until the
    quiet hours end); returns how many were new (one already there is left as it is)."""
    if not rows:
        return 0
    start = {"next_attempt_at": now}
    fixed = {"status": RowStatus.PENDING, "attempts": 0, "created_at": now}
    fresh = [{**start, **row, **fixed} for row in rows]
    dialect_insert = upsert_insert(conn)
    # Counted by RETURNING: asyncpg gives no rowcount for a many-row insert.
    statement = dialect_insert(outbox.table).on_conflict_do_nothing().returning(outbox.table.c.id)
    return len(conn.execute(statement, fresh).all())


def claim_due(
    conn: Connection,
    outbox: Outbox[D],
    now: datetime,
    *,
    lease: timedelta,
    limit: int,
    kinds: Collection[str] | None = None,
) -> list[D]:
    """Pending rows whose time has come, oldest due first, leased to this caller for
    ``lease``; their ``attempt`` is the attempt this caller makes. ``kinds``: only rows of
    these kinds (mail and SMS go out by different transports, each configured or not)."""
    table = outbox.table
    due = and_(table.c.status == RowStatus.PENDING, table.c.next_attempt_at <= now)
    if kinds is not None:
        due = and_(due, table.c.kind.in_(list(kinds)))
    query = select(table.c.id).where(due).order_by(table.c.next_attempt_at, table.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    # Conditions again: on SQLite there is no row lock, so the update is what decides.
    claimed = conn.execute(
        update(table)
        .where(table.c.id.in_(ids), due)
        .values(next_attempt_at=now + lease, attempts=table.c.attempts + 1)
        .returning(*table.c)
    ).all()
    order = {row_id: place for place, row_id in enumerate(ids)}
    return [
        outbox.load(
            {
                "id": row.id,
                "kind": row.kind,
                "ticket_id": row.ticket_id,
                "number": row.number,
                "attempt": row.attempts,
            },
            row,
        )
        for row in sorted(claimed, key=lambda row: order[row.id])
    ]


def record_attempt(
    conn: Connection,
    outbox: Outbox[D],
    due: D,
    outcome: AttemptOutcome,
    *,
    policy: RetryPolicy,
    dead_letter_queue: str,
    now: datetime,
) -> Recorded:
    """The outcome of one attempt: the row's next state, and its events on the ticket."""
    row = update(outbox.table).where(outbox.table.c.id == due.id)
    if outcome.sent:
        conn.execute(row.values(status=RowStatus.SENT, sent_at=now, last_error=None))
        recorded = Recorded(RowStatus.SENT)
    else:
        # An answer can quote an address ("550 <x@y>: no such user"): masked, since events
        # are shown to staff and kept for good.
        error = redact_text(outcome.detail)[:1000]
        if outcome.permanent or due.attempt >= policy.max_attempts:
            conn.execute(row.values(status=RowStatus.DEAD, last_error=error))
            recorded = _dead(conn, outbox, due, outcome, error, dead_letter_queue, now)
        else:
            next_at = now + timedelta(seconds=backoff.backoff_seconds(due.attempt, policy))
            conn.execute(row.values(next_attempt_at=next_at, last_error=error))
            recorded = Recorded(RowStatus.PENDING, error, next_attempt_at=next_at)
    for kind, detail in outbox.attempted(due, outcome, recorded):
        write_event(conn, due.ticket_id, kind, detail, actor=outbox.actor, at=now)
    return recorded


def _dead(
    conn: Connection,
    outbox: Outbox[D],
    due: D,
    outcome: AttemptOutcome,
    error: str,
    queue: str,
    now: datetime,
) -> Recorded:
    """A dead letter for a row given up on: listed with its reason, and replayable."""
    why = outbox.refused if outcome.permanent else outbox.exhausted.format(attempts=due.attempt)
    reason = outbox.reason.format(kind=due.kind, why=why, error=error)[:4000]
    body = {outbox.id_key: due.id, "number": due.number}
    dead = conn.execute(
        insert(DeadLetter)
        .values(
            queue=queue,
            message_id=f"{outbox.dead_letter_prefix}:{due.id}",
            body=json.dumps(body).encode(),
            reason=reason,
            attempts=due.attempt,
            failed_at=now,
        )
        .returning(col(DeadLetter.id))
    ).scalar_one()
    return Recorded(RowStatus.DEAD, error, reason=reason, dead_letter_id=dead)


def replay(conn: Connection, outbox: Outbox[Any], row_id: int, now: datetime) -> bool:
    """A dead row back to pending with fresh attempts; False if it is not dead."""
    table = outbox.table
    dead = and_(table.c.id == row_id, table.c.status == RowStatus.DEAD)
    found = conn.execute(
        select(table.c.ticket_id, table.c.kind, table.c.attempts).where(dead)
    ).first()
    if found is None:
        return False
    revived = conn.execute(
        update(table).where(dead).values(status=RowStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    if revived.rowcount != 1:
        return False  # another replay of the same row came first
    for kind, detail in outbox.replayed(found.kind, row_id, found.attempts):
        write_event(conn, found.ticket_id, kind, detail, actor=outbox.actor, at=now)
    return True
