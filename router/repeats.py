"""Repeat complaints (重复投诉): the same complainant about the same matter.

DOMAIN.md: while the first complaint is open, do not open a second: send a reminder (催办)
to the handling department and tell the complainant the progress. After it was closed and
the complainant is unhappy with the result: a new ticket linked to the old one.

*Same complainant* is the same E.164 phone, the same e-mail address or the same account
number (户号, ``complainants.account``). The probe's e-mail address is lower-cased and
compared with the stored one as it is (an index lookup), so channels should store addresses
lower-cased.

*Same matter* is the same category (not the fallback category, which says nothing about the
matter), or texts similar enough: rapidfuzz's token-set ratio over the jieba words of both,
with single characters, clause breaks and the address and account lines (the same on all of
one caller's complaints) left out.

*Within the window*: an open ticket received, or a closed one last changed, at most
``repeats.window`` before the new contact.

:meth:`RepeatFinder.find` only reads; :func:`record_repeat_contact` writes the urge event and
the inbound item that makes the merged contact idempotent. Both take a sync ``Connection``,
so they run inside ``Database.write`` next to whatever else the caller writes:

* the hotline edge (``channels/hotline/accept.py``) runs them while the agent waits and
  answers with the open ticket's number; the agent says whether the caller is unhappy with a
  closed ticket's result, and only then is the new ticket linked to it;
* the router worker runs :func:`apply_repeat_rule` for every other draft (email, web, imported
  calls), inside its batch transaction, after routing and before numbering::

      merged, ticket = apply_repeat_rule(conn, self._repeats, item.ticket, now=now)

  ``merged`` is the open ticket's number (make no ticket; count it like a duplicate);
  otherwise insert ``ticket``, linked ``repeat_of`` a closed one when there is one: writing
  again about a matter that was closed says the result did not satisfy.

Known gap: a contact whose first complaint is still in the queue (reserved, not yet a ticket)
is not found; two calls about one matter seconds apart can both open tickets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import Connection, insert, select, update
from sqlmodel import col

from ingest.draft import Channel, TicketDraft
from router.lifecycle import OPEN_STATUSES, Status
from router.rules import segmenter_for
from router.segment import BREAK, Segmenter
from router.settings import RouterSettings
from store.models import Complainant, Event, InboundItem, Ticket
from store.tickets import NewEvent, NewTicket, add_attachments, inbound_row

OPEN = frozenset(s.value for s in OPEN_STATUSES) | {Status.DISPATCHED.value}
CLOSED = frozenset({Status.CLOSED.value, Status.CLOSED_ABNORMAL.value, Status.CALLBACK_DONE.value})
ACCOUNT_LABEL = "户号："
ADDRESS_LABEL = "地址："
# Lines that say who complains, not what about: the same caller's address is on every one of
# their complaints and would make any two of them look alike.
_CONTACT_LINE = re.compile(rf"^(?:{ACCOUNT_LABEL}|{ADDRESS_LABEL}).*$", re.MULTILINE)
_ACCOUNT_LINE = re.compile(rf"(?:^|\n){ACCOUNT_LABEL}(\S+)(?:\n|$)")


def account_line(account: str) -> str:
    """The body line that shows staff the account number (the complainant row holds it)."""
    return f"{ACCOUNT_LABEL}{account}"


def account_in(body: str) -> str | None:
    """The account number a channel wrote into ``body`` with :func:`account_line`."""
    match = _ACCOUNT_LINE.search(body)
    return match.group(1) if match else None


@dataclass(frozen=True)
class RepeatPolicy:
    window: timedelta
    similarity: float  # 0-100
    vague_categories: frozenset[str]  # a shared fallback category is no evidence of a matter
    enabled: bool = True
    by_account: bool = True
    max_candidates: int = 20

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> RepeatPolicy:
        repeats = settings.repeats
        return cls(
            window=repeats.window_delta,
            similarity=repeats.similarity,
            vague_categories=frozenset({settings.routing.fallback_category}),
            enabled=repeats.enabled,
            by_account=repeats.by_account,
        )


@dataclass(frozen=True)
class Probe:
    """A new contact, as far as repeat detection needs it."""

    at: datetime
    text: str
    category: str | None = None
    phone: str | None = None
    email: str | None = None
    account: str | None = None
    key: tuple[str, str] | None = None  # its own (channel, source_key), never its own repeat

    @classmethod
    def from_draft(
        cls, draft: TicketDraft, *, category: str | None = None, account: str | None = None
    ) -> Probe:
        complainant = draft.complainant
        return cls(
            at=draft.received_at,
            text=f"{draft.subject}\n{draft.body}",
            category=category or draft.category,
            phone=complainant.phone,
            email=complainant.email.strip().lower() if complainant.email else None,
            account=account or complainant.account or account_in(draft.body),
            key=draft.idempotency_key,
        )


@dataclass(frozen=True)
class Candidate:
    id: int
    number: str
    status: str
    category: str
    department: str | None
    subject: str
    body: str
    received_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass(frozen=True)
class RepeatMatch:
    ticket: Candidate
    why: str  # "same category water_quality", "similar text 84", with the contact that matched


@dataclass(frozen=True)
class RepeatFinding:
    open: RepeatMatch | None = None
    closed: RepeatMatch | None = None


# Function words, and the labels channels put before parts of a complaint (诉求：...).
_STOP_WORDS = frozenset(
    {"一个", "一下", "已经", "还是", "就是", "没有", "什么", "怎么", "这个", "那个", "诉求"}
)


class TextSimilarity:
    """0-100: how far two complaint texts speak of the same thing, word by word."""

    def __init__(self, segmenter: Segmenter) -> None:
        self._segmenter = segmenter

    def words(self, text: str) -> list[str]:
        # Single characters (的, 了, 我, 水) and clause breaks carry no matter of their own.
        return [
            w
            for w in self._segmenter.tokens(_CONTACT_LINE.sub("", text))
            if w != BREAK and len(w) > 1 and w not in _STOP_WORDS and not w.isspace()
        ]

    def score(self, a: str, b: str) -> float:
        words_a, words_b = self.words(a), self.words(b)
        if not words_a or not words_b:
            return 0.0
        return float(fuzz.token_set_ratio(" ".join(words_a), " ".join(words_b)))


class RepeatFinder:
    """Finds the open (and the closed) ticket a new contact repeats. One per process."""

    def __init__(self, policy: RepeatPolicy, similarity: TextSimilarity) -> None:
        self.policy = policy
        self._similarity = similarity

    @classmethod
    def from_settings(
        cls, settings: RouterSettings, segmenter: Segmenter | None = None
    ) -> RepeatFinder:
        """``segmenter``: the process's shared one (``Runtime.segmenter``); without it, one of
        its own. Either way keywords are cut out whole (水压, 停水), as the routing rules see
        them."""
        return cls(
            RepeatPolicy.from_settings(settings),
            TextSimilarity(segmenter or segmenter_for(settings)),
        )

    def find(self, conn: Connection, probe: Probe) -> RepeatFinding:
        """The newest open ticket, and the newest closed one, that ``probe`` repeats."""
        if not self.policy.enabled:
            return RepeatFinding()
        found_open: RepeatMatch | None = None
        found_closed: RepeatMatch | None = None
        for candidate, contact in self._candidates(conn, probe):
            if (found_open if candidate.is_open else found_closed) is not None:
                continue
            why = self._same_matter(probe, candidate)
            if why is None:
                continue
            match = RepeatMatch(candidate, f"{why}; same {contact}")
            if candidate.is_open:
                found_open = match
            else:
                found_closed = match
            if found_open and found_closed:
                break
        return RepeatFinding(found_open, found_closed)

    def _same_matter(self, probe: Probe, candidate: Candidate) -> str | None:
        if (
            probe.category
            and probe.category == candidate.category
            and probe.category not in self.policy.vague_categories
        ):
            return f"same category {probe.category}"
        score = self._similarity.score(probe.text, f"{candidate.subject}\n{candidate.body}")
        if score >= self.policy.similarity:
            return f"similar text {score:.0f}"
        return None

    def _candidates(self, conn: Connection, probe: Probe) -> list[tuple[Candidate, str]]:
        """Tickets of the same contact in the window, newest first, each once.

        Each search is driven by its selective condition alone: the complainants with this
        phone, e-mail address or account number (index lookups). Status and window are
        checked here, not in SQL, so the planner cannot walk the status index instead (most
        tickets are ``dispatched``).
        """
        since = probe.at.astimezone(UTC) - self.policy.window
        searches: list[tuple[str, Any]] = []
        if probe.phone:
            searches.append(("phone", _by_complainant(col(Complainant.phone) == probe.phone)))
        if probe.email:
            searches.append(("email", _by_complainant(col(Complainant.email) == probe.email)))
        if probe.account and self.policy.by_account:
            searches.append(("account", _by_complainant(col(Complainant.account) == probe.account)))
        seen: dict[int, tuple[Candidate, str]] = {}
        for contact, condition in searches:
            for row in conn.execute(select(*_COLUMNS).where(condition).limit(_PER_CONTACT)):
                if probe.key == (row.channel, row.source_key):
                    continue
                candidate = _candidate(row)
                recent = candidate.received_at if candidate.is_open else candidate.updated_at
                if candidate.status in OPEN | CLOSED and recent >= since:
                    seen.setdefault(candidate.id, (candidate, contact))
        ordered = sorted(seen.values(), key=lambda c: c[0].received_at, reverse=True)
        return ordered[: self.policy.max_candidates]


# A contact with more tickets than this is a switchboard, not a complainant.
_PER_CONTACT = 500

_COLUMNS = tuple(
    col(c)
    for c in (
        Ticket.id,
        Ticket.channel,
        Ticket.source_key,
        Ticket.number,
        Ticket.status,
        Ticket.category,
        Ticket.department,
        Ticket.subject,
        Ticket.body,
        Ticket.received_at,
        Ticket.updated_at,
    )
)


def _by_complainant(condition: Any) -> Any:
    return col(Ticket.complainant_id).in_(select(col(Complainant.id)).where(condition))


def _candidate(row: Any) -> Candidate:
    return Candidate(
        id=row.id,
        number=row.number,
        status=row.status,
        category=row.category,
        department=row.department,
        subject=row.subject,
        body=row.body,
        received_at=_utc(row.received_at),
        updated_at=_utc(row.updated_at),
    )


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; the store keeps UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def record_repeat_contact(
    conn: Connection, match: RepeatMatch, draft: TicketDraft, *, now: datetime
) -> None:
    """Merge a repeat contact into the open ticket: an urge (催办) for its department, and the
    contact recorded as an inbound item of that ticket, so sending it again changes nothing.

    Raises ``IntegrityError`` when a concurrent transaction recorded the same contact first;
    the caller retries and then finds it with :func:`merged_into`.
    """
    ticket = match.ticket
    first = draft.first_contact
    received = draft.received_at.astimezone(UTC).isoformat()
    detail: dict[str, Any] = {
        "reason": "repeat complaint while open (重复投诉)",
        "matched": match.why,
        "notify_department": ticket.department,
    }
    if draft.channel is Channel.PHONE:
        detail["repeat_call"] = {"call_id": draft.source_key, "received_at": received}
    else:
        detail["repeat_contact"] = {
            "channel": draft.channel.value,
            "source_key": draft.source_key,
            "received_at": received,
        }
    if draft.attachments:
        # The repeat's evidence belongs with the complaint it repeats.
        detail["attachments"] = [a.sha256 for a in draft.attachments]
        add_attachments(conn, ticket.id, draft)
    conn.execute(
        insert(Event).values(
            ticket_id=ticket.id,
            at=now,
            kind="urge",
            actor=f"{first.kind.value}:{first.id}",
            detail=detail,
        )
    )
    conn.execute(update(Ticket).where(col(Ticket.id) == ticket.id).values(updated_at=now))
    conn.execute(insert(InboundItem).values(inbound_row(draft, ticket.id)))


def merged_into(conn: Connection, channel: str, source_key: str) -> str | None:
    """The number of the ticket this contact was merged into as a repeat, if it was."""
    row = conn.execute(
        select(col(Ticket.number), col(Ticket.channel), col(Ticket.source_key))
        .join(InboundItem, col(InboundItem.ticket_id) == col(Ticket.id))
        .where(col(InboundItem.channel) == channel, col(InboundItem.source_key) == source_key)
    ).first()
    if row is None or (row.channel, row.source_key) == (channel, source_key):
        return None  # unknown, or the contact's own ticket
    return str(row.number)


def apply_repeat_rule(
    conn: Connection, finder: RepeatFinder, ticket: NewTicket, *, now: datetime
) -> tuple[str | None, NewTicket]:
    """The router's use of the rule, for one routed draft inside its batch transaction.

    ``(number, ticket)``: with a number, the draft was merged into that open ticket (urged)
    and no ticket is to be made; without, ``ticket`` is to be inserted, linked to the closed
    ticket it repeats when there is one. Drafts the edge already answered (a reserved
    ``number``) or linked (``repeat_of``) are left alone; a redelivered draft that was merged
    before is found again, not merged twice.
    """
    draft = ticket.draft
    if draft.number is not None or draft.repeat_of is not None:
        return None, ticket
    merged = merged_into(conn, *draft.idempotency_key)
    if merged is not None:
        return merged, ticket
    finding = finder.find(conn, Probe.from_draft(draft, category=ticket.category))
    if finding.open is not None:
        record_repeat_contact(conn, finding.open, draft, now=now)
        return finding.open.ticket.number, ticket
    if finding.closed is None:
        return None, ticket
    earlier = finding.closed.ticket.number
    linked = draft.model_copy(update={"repeat_of": earlier})
    event = NewEvent(
        "repeat_of",
        "router",
        {"repeat_of": earlier, "matched": finding.closed.why, "rule": "repeat.after_closure"},
    )
    return None, replace(ticket, draft=linked, events=(*ticket.events, event))
