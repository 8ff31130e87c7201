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

:class:`RepeatRule` is the one decision, for every channel (calls filed or imported, web,
e-mail, referrals, letters): the router worker makes it inside its batch transaction, after
routing (on the routed category) and before numbering, for every draft. Edges whose sender
waits for the answer ask :meth:`RepeatRule.answer` what it will be; they never decide.

Race-free: :func:`hold_contacts` makes the decision about one complainant one transaction's
at a time across router workers, and the worker inserts a batch's earlier tickets of the same
complainant before it decides about the later ones, so the second of two intakes seconds
apart becomes the urge. If the edge had already reserved and told the second its own number,
the urge records that number (``reserved_number``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import Connection, insert, select, text, update
from sqlmodel import col

from ingest.draft import Channel, TicketDraft
from router.lifecycle import OPEN_STATUSES, Status
from router.rules import Router, segmenter_for
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
    def from_draft(cls, draft: TicketDraft, *, category: str | None = None) -> Probe:
        """``category``: the one the router gave the draft (else the sender's choice)."""
        complainant = draft.complainant
        return cls(
            at=draft.received_at,
            text=f"{draft.subject}\n{draft.body}",
            category=category or draft.category,
            phone=complainant.phone,
            email=complainant.email.strip().lower() if complainant.email else None,
            account=_account(draft),
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
    if draft.number is not None:
        # Reserved and told to the sender before a competing intake's ticket was made: the
        # number staff will be asked about.
        detail["reserved_number"] = draft.number
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


def can_repeat(draft: TicketDraft) -> bool:
    """Whether the rule applies at all: a named complainant we can tell again (a phone, an
    e-mail address or an account number). Service-supervision feedback (服务监督) reports on
    the service, not a matter of the sender's own, so it never repeats anything."""
    complainant = draft.complainant
    if draft.channel is Channel.FEEDBACK or complainant.anonymous:
        return False
    return bool(complainant.phone or complainant.email or _account(draft))


def _account(draft: TicketDraft) -> str | None:
    # Only the hotline writes the account line itself (the agent read it from the system);
    # anyone can type anyone's account number into a web form or a mail.
    if draft.complainant.account:
        return draft.complainant.account
    return account_in(draft.body) if draft.channel is Channel.PHONE else None


def contact_locks(drafts: Iterable[TicketDraft], *, by_account: bool = True) -> list[int]:
    """The advisory lock keys of these drafts' complainants, sorted (so two workers taking
    overlapping sets wait for each other instead of deadlocking)."""
    keys: set[int] = set()
    for draft in drafts:
        if not can_repeat(draft):
            continue
        probe = Probe.from_draft(draft)
        contacts = [("phone", probe.phone), ("email", probe.email)]
        if by_account:
            contacts.append(("account", probe.account))
        for kind, value in contacts:
            if value:
                digest = hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=8).digest()
                keys.add(int.from_bytes(digest, "big", signed=True))
    return sorted(keys)


def hold_contacts(conn: Connection, drafts: Iterable[TicketDraft], policy: RepeatPolicy) -> None:
    """Make the repeat decision about these complainants this transaction's alone until it
    commits: a competing router worker deciding about the same phone, address or account
    waits, then sees the ticket this one made (PostgreSQL's read-committed statements see
    what committed before them). SQLite needs nothing: its writers are serialised already
    (``BEGIN IMMEDIATE``, ``store.db``)."""
    if conn.dialect.name != "postgresql" or not policy.enabled:
        return
    keys = contact_locks(drafts, by_account=policy.by_account)
    if keys:
        # One round trip; the sorted subquery fixes the order the locks are taken in.
        conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS contacts"
            ),
            {"keys": keys},
        )


@dataclass(frozen=True)
class RepeatAnswer:
    """What the rule makes of a contact: for an edge's answer to a sender who waits."""

    open: str | None = None  # merged into this open ticket: no ticket of its own (urge)
    repeat_of: str | None = None  # a ticket of its own, linked to this closed one


@dataclass(frozen=True)
class RepeatDecision:
    """``merged``: the open ticket the draft was merged into (make no ticket); otherwise
    ``ticket`` is to be inserted, linked and annotated as the rule decided."""

    merged: str | None
    ticket: NewTicket


@dataclass(frozen=True)
class _Verdict:
    open: RepeatMatch | None = None
    closed: RepeatMatch | None = None
    link_closed: bool = False

    @property
    def merges(self) -> bool:
        return self.open is not None


_CLOSED_LINK_RULE = "repeat.after_closure"
_REFERRAL_RULE = "repeat.referral_while_open"


class RepeatRule:
    """The repeat decision (重复投诉) for every channel. One per process.

    :meth:`decide` is the decision, made by the router worker in its batch transaction (with
    :func:`hold_contacts` taken first) for every draft, on the category the router gave it:

    * an open ticket of the same complainant about the same matter: an urge (催办) on it and
      no ticket of its own; a referral instead gets a ticket of its own (the authority's order
      has its own clock and reply), linked ``repeat_of`` the open one;
    * a closed one: a new ticket linked ``repeat_of`` it, since writing again about a closed
      matter says the result did not satisfy; a call only when the caller says so
      (``draft.dissatisfied``, the agent asks), otherwise a note names the closed ticket.

    :meth:`answer` is the same judgement, read only, for an edge whose sender waits for the
    answer (the hotline API, the web form): it says what :meth:`decide` will do, so the
    answer names the open ticket; it never writes. A draft the sender linked itself
    (``repeat_of``) is left as it is.
    """

    def __init__(self, finder: RepeatFinder, categorise: Callable[[TicketDraft], str]) -> None:
        self.finder = finder
        self._categorise = categorise

    @classmethod
    def for_router(cls, settings: RouterSettings, router: Router) -> RepeatRule:
        """With ``router``'s segmenter (the process's one) and its category for a draft."""
        return cls(
            RepeatFinder.from_settings(settings, router.segmenter),
            lambda draft: router.route(draft).category,
        )

    def answer(self, conn: Connection, draft: TicketDraft) -> RepeatAnswer:
        merged = merged_into(conn, *draft.idempotency_key)
        if merged is not None:
            return RepeatAnswer(open=merged)
        verdict = self._judge(conn, draft, self._categorise(draft))
        if verdict.open is not None and draft.channel is not Channel.REFERRAL:
            return RepeatAnswer(open=verdict.open.ticket.number)
        if verdict.link_closed and verdict.closed is not None:
            return RepeatAnswer(repeat_of=verdict.closed.ticket.number)
        return RepeatAnswer()

    def decide(self, conn: Connection, ticket: NewTicket, *, now: datetime) -> RepeatDecision:
        """A redelivered draft that was merged before is found merged again, not twice."""
        draft = ticket.draft
        merged = merged_into(conn, *draft.idempotency_key)
        if merged is not None:
            return RepeatDecision(merged, ticket)
        verdict = self._judge(conn, draft, ticket.category)
        if verdict.open is not None and draft.channel is not Channel.REFERRAL:
            record_repeat_contact(conn, verdict.open, draft, now=now)
            return RepeatDecision(verdict.open.ticket.number, ticket)
        return RepeatDecision(None, _annotated(ticket, verdict))

    def _judge(self, conn: Connection, draft: TicketDraft, category: str) -> _Verdict:
        if draft.repeat_of is not None or not can_repeat(draft):
            return _Verdict()
        finding = self.finder.find(conn, Probe.from_draft(draft, category=category))
        says_unhappy = draft.channel is not Channel.PHONE or draft.dissatisfied
        return _Verdict(finding.open, finding.closed, finding.closed is not None and says_unhappy)


def _annotated(ticket: NewTicket, verdict: _Verdict) -> NewTicket:
    """The ticket linked as ``verdict`` says, with the intake notes saying why (no PII: the
    rule, the ticket number and the kind of contact that matched)."""
    draft = ticket.draft
    events: list[NewEvent] = []
    link: RepeatMatch | None = None
    rule = _CLOSED_LINK_RULE
    if verdict.open is not None:  # a referral about an open matter
        link, rule = verdict.open, _REFERRAL_RULE
        events.append(_note(f"repeat_while_open: {link.ticket.number} ({link.why})"))
    elif verdict.closed is not None and verdict.link_closed:
        link = verdict.closed
        events.append(_note(f"repeat_after_closure: {link.ticket.number} ({link.why})"))
    elif verdict.closed is not None:
        events.append(_note(f"similar_closed_ticket: {verdict.closed.ticket.number}"))
    elif draft.dissatisfied and draft.repeat_of is None:
        events.append(_note("caller_dissatisfied: no closed ticket of this caller in the window"))
    if link is not None:
        number = link.ticket.number
        draft = draft.model_copy(update={"repeat_of": number})
        detail = {"repeat_of": number, "matched": link.why, "rule": rule}
        events.append(NewEvent("repeat_of", "router", detail))
    if not events:
        return ticket
    return replace(ticket, draft=draft, events=(*ticket.events, *events))


def _note(note: str) -> NewEvent:
    return NewEvent("intake_note", "router", {"note": note})
