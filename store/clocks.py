"""Storing and reading a ticket's clocks; the rules that move them live in ``router.clocks``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ingest.draft import utc_iso
from store.clock_models import TicketClock
from store.models import Ticket
from store.times import as_utc


@dataclass(frozen=True)
class NewClock:
    name: str
    rule: str
    time_limit: str | None
    hours: str
    working: bool
    started_at: datetime
    due_at: datetime
    warn_at: datetime
    met_at: datetime | None


def clock_rows(
    ticket_id: int | None, clocks: Iterable[NewClock], now: datetime
) -> list[dict[str, Any]]:
    return [
        asdict(c) | {"ticket_id": ticket_id, "extended": 0.0, "updated_at": now} for c in clocks
    ]


def insert_clocks(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """In the router's own transaction: a ticket never exists without its clocks."""
    if rows:
        conn.execute(insert(TicketClock), list(rows))


async def add_clocks(
    session: AsyncSession, ticket_id: int, clocks: Iterable[NewClock], now: datetime
) -> None:
    rows = clock_rows(ticket_id, clocks, now)
    if rows:
        await session.execute(insert(TicketClock), rows)


async def load_clocks(session: AsyncSession, ticket_id: int) -> dict[str, TicketClock]:
    result = await session.execute(
        select(TicketClock)
        .where(col(TicketClock.ticket_id) == ticket_id)
        .order_by(col(TicketClock.id))
    )
    return {row.name: row for row in result.scalars()}


def clock_json(row: TicketClock) -> dict[str, Any]:
    """CONTRACT.md's ``clocks`` entry, plus what set the limit."""
    return {
        "name": row.name,
        "started_at": _iso(row.started_at),
        "due_at": _iso(row.due_at),
        "met_at": _iso(row.met_at),
        "breached_at": _iso(row.breached_at),
        "paused": row.paused_at is not None,
        "rule": row.rule,
        "time_limit": row.time_limit,
    }


async def clocks_json(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    return [clock_json(row) for row in (await load_clocks(session, ticket_id)).values()]


async def clock_counts(session: AsyncSession, now: datetime) -> dict[tuple[str, str], int]:
    """Running, unpaused clocks by (department, state): ``due_soon`` inside their warning
    lead, ``breached`` past due. Read from the times, not the SLA worker's marks, so the
    figure is right even while no SLA worker runs."""
    running = and_(col(TicketClock.met_at).is_(None), col(TicketClock.paused_at).is_(None))
    counts: dict[tuple[str, str], int] = {}
    for state, condition in (
        ("breached", col(TicketClock.due_at) <= now),
        ("due_soon", and_(col(TicketClock.warn_at) <= now, col(TicketClock.due_at) > now)),
    ):
        rows = await session.execute(
            select(col(Ticket.department), func.count())
            .select_from(TicketClock)
            .join(Ticket, col(Ticket.id) == col(TicketClock.ticket_id))
            .where(running, condition)
            .group_by(col(Ticket.department))
        )
        for department, count in rows:
            counts[(department or "", state)] = int(count)
    return counts


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return utc_iso(value) if value else None
