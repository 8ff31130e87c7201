"""Accepting a web complaint while the citizen waits: repeat of an open ticket, or a ticket of
its own (重复投诉, issue 4 item 4: "the same rule serves email and web complainants by their
contact").

The hotline's way (``channels/hotline/accept.py``) with the rule of ``router/repeats.py``,
for the complaint form only; one write transaction decides, so an answer is never half-stored
and the same submission sent again (the same idempotency key) gets the same answer:

1. a submission already merged into an open ticket gets that ticket's number again;
2. a submission already reserved or made into a ticket keeps its number; the draft is
   published again if it never reached the router (as ``channels.intake.accept`` does);
3. a new submission that repeats an open ticket of the same complainant (the same E.164
   phone or lower-cased e-mail address: the form's contact) about the same matter (the
   category the citizen chose, or similar text) makes no ticket: an urge (催办) on the open
   one, recorded with the inbound item that makes step 1 work. The ``notify`` worker tells
   the department;
4. otherwise a number is reserved for a new ticket, linked ``repeat_of`` the closed ticket it
   repeats when there is one (writing again about a closed matter says the result did not
   satisfy, as the router's ``apply_repeat_rule`` decides for e-mail), and the draft is
   published after the commit.

Only the contact identifies the complainant here, never an account line (户号：...) typed into
the details: anyone can type anyone's account number. Anonymous drafts and drafts without a
contact are never merged (the caller sends them to ``channels.intake.accept``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection, select
from sqlmodel import col

from channels.intake import EdgeDecision, decide_then_hand_off
from channels.runtime import Runtime
from ingest.draft import TicketDraft
from router.repeats import (
    Probe,
    RepeatFinder,
    RepeatFinding,
    merged_into,
    record_repeat_contact,
)
from store.intake import is_known, reserve_number
from store.models import Ticket
from store.numbering import period_of
from store.tickets import as_utc

log = structlog.get_logger(__name__)


def repeat_finder(runtime: Runtime) -> RepeatFinder:
    """The repeat rule for the form, with the process's one segmenter (``Runtime.segmenter``),
    which the hotline edge and the router worker share."""
    return RepeatFinder.from_settings(runtime.settings, runtime.segmenter)


def can_repeat(draft: TicketDraft) -> bool:
    """Whether the repeat rule applies: a named complainant who left a phone or an e-mail."""
    complainant = draft.complainant
    return not complainant.anonymous and bool(complainant.phone or complainant.email)


@dataclass(frozen=True)
class WebAccepted:
    number: str
    new: bool  # a new ticket (answer 201); False: sent before, or merged (200)
    repeat_of_open: bool = False  # merged into this open ticket (no new ticket)
    repeat_of: str | None = None  # the new ticket repeats this closed one
    # Merged: the open ticket's own times, for an answer that tells the truth about it.
    received_at: datetime | None = None
    due_at: datetime | None = None


def _merged(conn: Connection, number: str) -> WebAccepted:
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


def _closed_link(finding: RepeatFinding) -> tuple[str | None, tuple[str, ...]]:
    """``repeat_of`` and the note saying why (no personal data: the rule and the contact kind)."""
    closed = finding.closed
    if closed is None:
        return None, ()
    number = closed.ticket.number
    return number, (f"repeat_after_closure: wrote again about {number} ({closed.why})",)


async def accept_complaint(
    runtime: Runtime,
    finder: RepeatFinder,
    draft: TicketDraft,
    *,
    clock: Callable[[], datetime],
) -> WebAccepted:
    """Call only for a draft :func:`can_repeat` allows; others go to ``channels.intake.accept``."""
    settings = runtime.settings.organisation
    period = period_of(settings.number_prefix, draft.received_at, ZoneInfo(settings.timezone))
    # By the contact alone (see the module docstring), with the category the citizen chose.
    probe = replace(Probe.from_draft(draft), account=None)
    key = draft.idempotency_key

    def decide(conn: Connection) -> EdgeDecision[WebAccepted]:
        merged = merged_into(conn, *key)
        if merged is not None:
            return EdgeDecision(_merged(conn, merged))
        known = is_known(conn, key)
        finding = finder.find(conn, probe)
        now = clock()
        if not known and finding.open is not None:
            record_repeat_contact(conn, finding.open, draft, now=now)
            return EdgeDecision(_merged(conn, finding.open.ticket.number), why=finding.open.why)
        repeat_of, notes = _closed_link(finding)
        number, new, made = reserve_number(
            conn, channel=key[0], source_key=key[1], period=period, now=now
        )
        ready = draft.model_copy(
            update={"number": number, "repeat_of": repeat_of, "notes": (*draft.notes, *notes)}
        )
        return EdgeDecision(WebAccepted(number, new, repeat_of=repeat_of), None if made else ready)

    decision = await decide_then_hand_off(runtime, decide)
    if decision.why is not None:
        log.info("web_repeat_merged", number=decision.accepted.number, why=decision.why)
    return decision.accepted
