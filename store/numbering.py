"""Complaint numbers (统一编号): prefix + year + month + serial, e.g. ``TS202611-000123``.

The serial comes from a counter row per month, incremented inside the ticket's own
transaction: the row lock makes concurrent workers wait for each other instead of reading
``max()+1``, and a rolled-back transaction rolls its numbers back with it, so a number that
was ever committed is never handed out again.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, update
from sqlmodel import col

from store.db import upsert_insert
from store.models import NumberCounter


def period_of(prefix: str, at: datetime, timezone: ZoneInfo) -> str:
    return f"{prefix}{at.astimezone(timezone):%Y%m}"


def allocate_numbers(conn: Connection, period: str, count: int) -> list[str]:
    """Reserve ``count`` consecutive numbers of ``period`` inside the caller's transaction."""
    if count <= 0:
        return []
    insert = upsert_insert(conn)
    conn.execute(insert(NumberCounter).values(period=period, value=0).on_conflict_do_nothing())
    result = conn.execute(
        update(NumberCounter)
        .where(col(NumberCounter.period) == period)
        .values(value=col(NumberCounter.value) + count)
        .returning(col(NumberCounter.value))
    )
    last = int(result.scalar_one())
    return [f"{period}-{serial:06d}" for serial in range(last - count + 1, last + 1)]
