"""Accepting a web complaint while the citizen waits: the number the answer page shows.

The repeat decision (重复投诉) is the router's (``router.repeats``, for every channel); the
form only asks it what it will be, so the answer can say "your complaint TS... is open and
we have urged it" instead of giving a number that will never be a ticket. One write
transaction answers, so the same submission sent again (the same idempotency key) gets the
same answer:

1. a submission the router already merged into an open ticket gets that ticket's number;
2. a submission already reserved or made into a ticket keeps its number; the draft is
   published again if it never reached the router (as ``ingest.intake.accept`` does);
3. a new submission the rule takes for a repeat of an open ticket gets that ticket's number
   and dates and no number of its own; the draft is published and the router urges (催办)
   the open ticket (the ``notify`` worker tells the department);
4. otherwise a number is reserved for a new ticket, with the closed ticket the router will
   link it to, and the draft is published after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection, select
from sqlmodel import col

from ingest.draft import TicketDraft
from ingest.intake import EdgeDecision, decide_then_hand_off
from ingest.runtime import Runtime
from router.repeats import RepeatRule, can_repeat
from router.rules import Router
from store.intake import is_known, reserve_number
from store.models import Ticket
from store.numbering import period_of
from store.tickets import as_utc

__all__ = ["WebAccepted", "accept_complaint", "can_repeat", "repeat_rule"]

log = structlog.get_logger(__name__)


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


def _open(conn: Connection, number: str) -> WebAccepted:
    row = conn.execute(
        select(col(Ticket.received_at), col(Ticket.due_at)).where(col(Ticket.number) == number)
    ).first()
    return WebAccepted(
        number,
        new=False,
        repeat_of_open=True,
        received_at=as_utc(row.received_at) if row else None,
        due_at=as_utc(row.due_at) if row else None,
    )


async def accept_complaint(
    runtime: Runtime,
    rule: RepeatRule,
    draft: TicketDraft,
    *,
    clock: Callable[[], datetime],
) -> WebAccepted:
    """Call only for a draft :func:`can_repeat` allows; others go to ``ingest.intake.accept``."""
    settings = runtime.settings.organisation
    period = period_of(settings.number_prefix, draft.received_at, ZoneInfo(settings.timezone))
    key = draft.idempotency_key

    def decide(conn: Connection) -> EdgeDecision[WebAccepted]:
        answer = rule.answer(conn, draft)
        if answer.open is not None and not is_known(conn, key):
            return EdgeDecision(_open(conn, answer.open), draft)
        number, new, made = reserve_number(
            conn, channel=key[0], source_key=key[1], period=period, now=clock()
        )
        ready = None if made else draft.model_copy(update={"number": number})
        return EdgeDecision(WebAccepted(number, new, repeat_of=answer.repeat_of), ready)

    accepted = (await decide_then_hand_off(runtime, decide)).accepted
    if accepted.repeat_of_open:
        log.info("web_repeat_answered", number=accepted.number)
    return accepted
