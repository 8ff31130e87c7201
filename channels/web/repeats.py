"""The web form's repeat answer (重复投诉): what the answer page says about an open ticket.

The decision is the router's (``router.repeats``, for every channel). The form asks it what
it will be through ``channels.intake.accept`` (one transaction with the reservation), so a
complaint about the same matter as the complainant's open ticket is answered with that
ticket's number, and with that ticket's own dates: its promise to accept and its deadline,
not a new ticket's. Only a named complainant with a phone or an e-mail (:func:`can_repeat`)
is asked about; the router never merges the others either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import col

from channels.intake import accept
from channels.runtime import Runtime
from ingest.draft import TicketDraft
from router.repeats import RepeatRule, can_repeat
from router.rules import Router
from store.models import Ticket
from store.tickets import as_utc

__all__ = ["WebAccepted", "accept_complaint", "can_repeat", "repeat_rule"]


def repeat_rule(runtime: Runtime) -> RepeatRule:
    """The router's repeat rule, with the process's one segmenter (``Runtime.segmenter``)."""
    settings = runtime.settings
    return RepeatRule.for_router(settings, Router(settings, runtime.segmenter))


@dataclass(frozen=True)
class WebAccepted:
    number: str
    new: bool  # a new ticket (answer 201); False: sent before, or a repeat (200)
    repeat_of_open: bool = False  # a repeat of this open ticket (no new ticket)
    repeat_of: str | None = None  # the new ticket repeats this closed one
    # A repeat: the open ticket's own times, for an answer that tells the truth about it.
    received_at: datetime | None = None
    due_at: datetime | None = None


async def accept_complaint(
    runtime: Runtime,
    rule: RepeatRule,
    draft: TicketDraft,
    *,
    clock: Callable[[], datetime],
) -> WebAccepted:
    """Call only for a draft :func:`can_repeat` allows; others go to ``channels.intake.accept``."""
    accepted = await accept(runtime, draft, repeats=rule.answer, clock=clock)
    if not accepted.repeat_of_open:
        return WebAccepted(accepted.number, accepted.new, repeat_of=accepted.repeat_of)
    async with runtime.database.sessions() as session:
        row = (
            await session.execute(
                select(col(Ticket.received_at), col(Ticket.due_at)).where(
                    col(Ticket.number) == accepted.number
                )
            )
        ).first()
    return WebAccepted(
        accepted.number,
        new=False,
        repeat_of_open=True,
        received_at=as_utc(row.received_at) if row else None,
        due_at=as_utc(row.due_at) if row else None,
    )
