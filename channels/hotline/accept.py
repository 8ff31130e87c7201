"""Accepting one call while the agent waits: the number the agent tells the caller.

The repeat decision is the router's (``router.repeats``); this edge only asks it what it
will be, so the agent can tell the caller "this is a repeat of TS...". One write transaction
answers, so a retry of the same call id gets the same answer:

1. a call id the router already merged into an open ticket gets that ticket's number (200);
2. a call id already reserved or made into a ticket keeps its number (200); the draft is
   published again if it never reached the router (as ``ingest.intake.accept`` does);
3. a new call the rule takes for a repeat of an open ticket gets that ticket's number (200)
   and no number of its own; the draft is published, and the router urges (催办) the open
   ticket;
4. otherwise a number is reserved for a new ticket (201), with the closed ticket it will be
   linked to when the caller is unhappy with that one's result (``draft.dissatisfied``).

Publishing happens after the commit, as in ``ingest.intake``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection

from ingest.draft import TicketDraft
from ingest.intake import EdgeDecision, decide_then_hand_off
from ingest.runtime import Runtime
from router.repeats import RepeatRule
from store.intake import is_known, reserve_number
from store.numbering import period_of

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallAccepted:
    number: str
    new: bool
    repeat_of_open: bool = False  # a repeat of this open ticket (no new ticket)
    repeat_of: str | None = None  # the new ticket repeats this closed one


async def accept_call(
    runtime: Runtime,
    rule: RepeatRule,
    draft: TicketDraft,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> CallAccepted:
    settings = runtime.settings.organisation
    period = period_of(settings.number_prefix, draft.received_at, ZoneInfo(settings.timezone))
    key = draft.idempotency_key

    def decide(conn: Connection) -> EdgeDecision[CallAccepted]:
        answer = rule.answer(conn, draft)
        if answer.open is not None and not is_known(conn, key):
            return EdgeDecision(CallAccepted(answer.open, new=True, repeat_of_open=True), draft)
        number, new, made = reserve_number(
            conn, channel=key[0], source_key=key[1], period=period, now=clock()
        )
        ready = None if made else draft.model_copy(update={"number": number})
        return EdgeDecision(CallAccepted(number, new, repeat_of=answer.repeat_of), ready)

    accepted = (await decide_then_hand_off(runtime, decide)).accepted
    if accepted.repeat_of_open:
        log.info("repeat_call_answered", number=accepted.number)
    return accepted
