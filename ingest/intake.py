"""Accepting one item at the edge: reserve its number, then hand the draft off durably.

Used by every channel whose sender must be told the complaint number in the answer
(HTTP 201). Only when :func:`accept` returns may the sender be told "accepted"; if it raises
``QueueUnavailable`` or a store error, answer "try again later" (HTTP 503): the reservation
stays, so the retry gets the same number and re-publishing is harmless (the router is
idempotent on the same key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError

from ingest.draft import TicketDraft
from ingest.runtime import Runtime
from store.intake import reserve_number
from store.numbering import period_of


@dataclass(frozen=True)
class Accepted:
    number: str
    new: bool  # False: the same item was accepted before (answer 200, not 201)


async def accept(runtime: Runtime, draft: TicketDraft) -> Accepted:
    settings = runtime.settings
    period = period_of(
        settings.organisation.number_prefix,
        draft.received_at,
        ZoneInfo(settings.organisation.timezone),
    )
    now = datetime.now(UTC)
    channel, source_key = draft.idempotency_key
    for attempt in range(2):
        try:
            number, new, made = await runtime.database.write(
                lambda conn: reserve_number(
                    conn, channel=channel, source_key=source_key, period=period, now=now
                )
            )
            break
        except IntegrityError:
            if attempt:
                raise
    if not made:
        await runtime.handoff.submit(draft.model_copy(update={"number": number}))
    return Accepted(number=number, new=new)
