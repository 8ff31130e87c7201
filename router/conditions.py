"""Evaluating a rule's ``when`` (router/rule_language.py) against one draft: pure, and every
answer says why, so the ticket's trace can name what held and what did not."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ingest.draft import Channel, TicketDraft
from router.matching import CLAUSE_BREAKS, Hit, Matches
from router.rule_language import Age, Negation, TextCondition, When

_HAN = re.compile(r"[^\W\d_a-z]")  # a letter of no Latin word: Chinese, after casefold
_WORD = re.compile(r"[a-z0-9']+")


def negated(hit: Hit, matches: Matches, negation: Negation) -> bool:
    """Whether a cue ends shortly before the hit (``negation.window`` Chinese characters,
    ``negation.window_words`` Latin words), in the same clause."""
    for cue in matches.of(negation.cues):
        if cue.end > hit.start:
            break
        gap = matches.text[cue.end : hit.start]
        if set(gap) & CLAUSE_BREAKS:
            continue
        han, words = len(_HAN.findall(gap)), len(_WORD.findall(gap))
        if han <= negation.window and words <= negation.window_words:
            return True
    return False


@dataclass(frozen=True)
class Facts:
    """What conditions read besides the text: the draft and what routing decided so far."""

    draft: TicketDraft
    matches: Matches
    category: str


@dataclass(frozen=True)
class Verdict:
    holds: bool
    why: str


def evaluate(when: When, facts: Facts, negation: Negation) -> Verdict:
    """All conditions given must hold; the first that does not is the reason for a miss."""
    held: list[str] = []
    draft = facts.draft
    if when.channel:
        channels = {draft.channel.value}
        # A referral order travelling on another channel (a 12345 order forwarded by email)
        # is still a referral.
        if draft.referral is not None:
            channels.add(Channel.REFERRAL.value)
        if not channels & set(when.channel):
            return Verdict(False, f"channel {draft.channel.value} not in {list(when.channel)}")
        held.append(f"channel {draft.channel.value}")
    if when.referral_source:
        source = draft.referral.source if draft.referral else None
        if source not in when.referral_source:
            return Verdict(False, f"referral source {source or 'none'} not listed")
        held.append(f"referral source {source}")
    if when.explicit_category:
        if draft.category not in when.explicit_category:
            return Verdict(False, f"chosen type {draft.category or 'none'} not listed")
        held.append(f"chosen type {draft.category}")
    if when.category:
        if facts.category not in when.category:
            return Verdict(False, f"category {facts.category} not listed")
        held.append(f"category {facts.category}")
    if when.closed_on_contact is not None:
        closed = draft.resolved_on_contact is not None
        if closed is not when.closed_on_contact:
            return Verdict(False, "closed on contact" if closed else "not closed on contact")
        held.append("closed on contact" if closed else "not closed on contact")
    if when.repeat is not None:
        repeat = draft.repeat_of is not None
        if repeat is not when.repeat:
            return Verdict(False, "a repeat" if repeat else "not a repeat")
        held.append("a repeat" if repeat else "not a repeat")
    if when.contact is not None:
        contact = _contact(draft)
        if contact != when.contact:
            return Verdict(False, f"contact {contact}")
        held.append(f"contact {contact}")
    if when.incident_older_than is not None:
        verdict = _older(draft, when.incident_older_than)
        if not verdict.holds:
            return verdict
        held.append(verdict.why)
    if when.text is not None:
        verdict = _text(when.text, facts.matches, negation)
        if not verdict.holds:
            return verdict
        held.append(verdict.why)
    return Verdict(True, "; ".join(held) or "always")


def _contact(draft: TicketDraft) -> str:
    person = draft.complainant
    if person.phone or person.email:
        return "present"
    # A number was given but could not be read as a phone (a typo, too few digits).
    return "unusable" if person.phone_raw else "absent"


def _older(draft: TicketDraft, age: Age) -> Verdict:
    if draft.incident_at is None:
        return Verdict(False, "no incident time")
    limit = _minus(draft.received_at.date(), age)
    if draft.incident_at.date() >= limit:
        return Verdict(False, f"incident within {age}")
    return Verdict(True, f"incident older than {age} ({draft.incident_at.date().isoformat()})")


def _minus(day: date, age: Age) -> date:
    if age.unit == "days":
        return date.fromordinal(day.toordinal() - age.count)
    months = age.count * (12 if age.unit == "years" else 1)
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    # 31 March minus one month is the last day of February.
    for candidate in range(day.day, 27, -1):
        try:
            return date(year, month + 1, candidate)
        except ValueError:
            continue
    return date(year, month + 1, min(day.day, 28))


def _text(condition: TextCondition, matches: Matches, negation: Negation) -> Verdict:
    def counted(keywords: Sequence[str]) -> list[Hit]:
        hits = matches.of(keywords)
        if condition.negatable:
            return [h for h in hits if not negated(h, matches, negation)]
        return list(hits)

    said: list[str] = []
    if condition.none_of and (present := matches.found(condition.none_of)):
        return Verdict(False, f"excluded by {', '.join(present)}")
    if condition.any_of:
        hits = counted(condition.any_of)
        if not hits:
            cancelled = matches.found(condition.any_of)
            return Verdict(
                False, f"negated: {', '.join(cancelled)}" if cancelled else "no keyword matched"
            )
        said.append(", ".join(dict.fromkeys(h.keyword for h in hits)))
    if condition.all_of:
        groups = condition.groups()
        per_group = [counted(group) for group in groups]
        missing = [" / ".join(g) for g, hits in zip(groups, per_group, strict=True) if not hits]
        if missing:
            return Verdict(False, f"missing {', '.join(missing)}")
        if condition.within is not None and not _close(per_group, condition.within):
            return Verdict(False, f"not within {condition.within} characters")
        words = " + ".join(hits[0].keyword for hits in per_group)
        said.append(f"{words} within {condition.within}" if condition.within else words)
    return Verdict(True, f"keywords: {'; '.join(said) or 'none excluded'}")


def _close(per_group: list[list[Hit]], within: int) -> bool:
    """Whether one hit of every group lies in a span of at most ``within`` characters."""
    tagged = sorted((h.start, h.end, g) for g, hits in enumerate(per_group) for h in hits)
    for i, (start, _, _) in enumerate(tagged):
        seen = {g for s, e, g in tagged[i:] if e - start <= within and s >= start}
        if len(seen) == len(per_group):
            return True
    return False
