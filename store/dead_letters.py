"""Dead letters: messages that could not be processed, with the reason, until replayed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from store.models import DeadLetter


async def add_dead_letter(
    session: AsyncSession,
    *,
    queue: str,
    message_id: str,
    body: bytes,
    reason: str,
    attempts: int,
    at: datetime,
) -> None:
    await session.execute(
        insert(DeadLetter).values(
            queue=queue,
            message_id=message_id,
            body=body,
            reason=reason[:4000],
            attempts=attempts,
            failed_at=at,
        )
    )


async def open_dead_letters(session: AsyncSession, limit: int = 1000) -> list[DeadLetter]:
    result = await session.execute(
        select(DeadLetter)
        .where(col(DeadLetter.replayed_at).is_(None))
        .order_by(col(DeadLetter.id))
        .limit(limit)
    )
    return list(result.scalars())


async def get_dead_letter(session: AsyncSession, dead_letter_id: int) -> DeadLetter | None:
    return await session.get(DeadLetter, dead_letter_id)


async def mark_replayed(session: AsyncSession, dead_letter_id: int, at: datetime) -> None:
    await session.execute(
        update(DeadLetter).where(col(DeadLetter.id) == dead_letter_id).values(replayed_at=at)
    )
