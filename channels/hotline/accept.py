"""Accepting one call while the agent waits: repeat of an open ticket, or a ticket of its own.

One write transaction decides, so an answer is never half-stored and a retry of the same
call id gets the same answer:

1. a call id already merged into an open ticket gets that ticket's number again (200);
2. a call id already reserved or made into a ticket keeps its number (200); the draft is
   published again if it never reached the router (as ``channels.intake.accept`` does);
3. a new call that repeats an open ticket of the same caller about the same matter makes no
   ticket: an urge (催办) on the open one, recorded with the inbound item that makes step 1
   work;
4. otherwise a number is reserved for a new ticket (201), linked ``repeat_of`` an earlier
   closed ticket when the caller is unhappy with its result, and the draft is published.

Searching, urging and reserving share the one transaction (on SQLite one thread hop and one
fsync per call); publishing happens after its commit, as in ``channels.intake``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection

from channels.intake import EdgeDecision, decide_then_hand_off
from channels.runtime import Runtime
from ingest.draft import TicketDraft
from router.repeats import Probe, RepeatFinder, RepeatFinding, merged_into, record_repeat_contact
from store.intake import is_known, reserve_number
from store.numbering import period_of

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallAccepted:
    number: str
    new: bool
    repeat_of_open: bool = False  # merged into this open ticket (no new ticket)
    repeat_of: str | None = None  # the new ticket repeats this closed one


def _closed_link(finding: RepeatFinding, dissatisfied: bool) -> tuple[str | None, tuple[str, ...]]:
    """``repeat_of`` and the notes saying why (or why not)."""
    closed = finding.closed
    if dissatisfied and closed is not None:
        number = closed.ticket.number
        return number, (f"repeat_after_closure: caller dissatisfied with the result of {number}",)
    if dissatisfied:
        return None, ("caller_dissatisfied: no closed ticket of this caller in the repeat window",)
    if closed is not None:
        return None, (f"similar_closed_ticket: {closed.ticket.number}",)
    return None, ()


async def accept_call(
    runtime: Runtime,
    finder: RepeatFinder,
    draft: TicketDraft,
    *,
    dissatisfied: bool,
    account: str | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> CallAccepted:
    settings = runtime.settings.organisation
    period = period_of(settings.number_prefix, draft.received_at, ZoneInfo(settings.timezone))
    probe = Probe.from_draft(draft, account=account)
    key = draft.idempotency_key

    def decide(conn: Connection) -> EdgeDecision[CallAccepted]:
        merged = merged_into(conn, *key)
        if merged is not None:
            return EdgeDecision(CallAccepted(merged, new=False, repeat_of_open=True))
        known = is_known(conn, key)
        finding = finder.find(conn, probe)
        now = clock()
        if not known and finding.open is not None:
            record_repeat_contact(conn, finding.open, draft, now=now)
            number = finding.open.ticket.number
            return EdgeDecision(
                CallAccepted(number, new=True, repeat_of_open=True), why=finding.open.why
            )
        repeat_of, notes = _closed_link(finding, dissatisfied)
        number, new, made = reserve_number(
            conn, channel=key[0], source_key=key[1], period=period, now=now
        )
        ready = draft.model_copy(
            update={"number": number, "repeat_of": repeat_of, "notes": (*draft.notes, *notes)}
        )
        return EdgeDecision(CallAccepted(number, new, repeat_of=repeat_of), None if made else ready)

    decision = await decide_then_hand_off(runtime, decide)
    if decision.why is not None:
        log.info("repeat_call_merged", number=decision.accepted.number, why=decision.why)
    return decision.accepted
