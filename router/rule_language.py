"""The routing rule language of ``config.yaml`` (the ``rules`` list): what a rule says.

A rule is named, has conditions (``when``, all must hold) and effects (``then``). Rules run in
configuration order after the category stage, each sees what the rules before it decided (its
``category`` condition is the category so far), and every rule's hit or miss is recorded in
the ticket's ``routed`` event as ``rule.<name>``. router/conditions.py evaluates ``when``;
router/rules.py applies ``then``.

This module reads no other settings: cross-references (departments, categories, channels)
are checked by :func:`rule_problems` with the keys passed in.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ingest.sections import Section

Level = Literal["general", "important", "major"]
Contact = Literal["present", "absent", "unusable"]

_AGE = re.compile(
    r"^\s*(?P<n>\d+)\s*(?P<unit>days?|months?|years?|天|日|个月|月|年)\s*$", re.IGNORECASE
)
_UNITS = {"day": "days", "天": "days", "日": "days", "month": "months", "个月": "months"}
_UNITS |= {"月": "months", "year": "years", "年": "years"}


@dataclass(frozen=True)
class Age:
    """How old an incident is, in calendar units: "5 months", "2 years", "180 days", 2年."""

    count: int
    unit: Literal["days", "months", "years"]

    @classmethod
    def parse(cls, text: str) -> Age:
        match = _AGE.match(text)
        if not match:
            raise ValueError(f"{text!r} is not an age such as '5 months', '2 years', '180 days'")
        raw = match["unit"].lower()
        unit = _UNITS.get(raw.rstrip("s") if raw.isascii() else raw)
        if unit == "days":
            return cls(int(match["n"]), "days")
        return cls(int(match["n"]), "months" if unit == "months" else "years")

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


class Negation(Section):
    """Cues that make a keyword right after them not count: 没有人受伤 is no injury, "nobody
    was injured" neither. ``window`` / ``window_words``: how far before the keyword a cue may
    end, in Chinese characters / Latin words, within one clause. 不 is left out on purpose:
    不小心受伤 is an injury."""

    cues: tuple[str, ...] = (
        "没有", "没", "未", "并未", "不是", "并非", "无",
        "not", "no", "never", "nobody", "without", "no one", "none",
    )  # fmt: skip
    window: int = Field(default=4, ge=0, le=50)  # Chinese characters between cue and keyword
    # Latin words between them: English negation reaches the next words only ("nobody was
    # injured", but not "if it is not fixed I will complain").
    window_words: int = Field(default=1, ge=0, le=20)


class TextCondition(Section):
    """Conditions on subject + body, as normalised substrings (router/matching.py).

    ``any_of``: one of these occurs. ``all_of``: each item occurs (an item may be a list of
    alternatives: ``[要去, 准备去]``), within ``within`` characters of each other when given
    (多办 … 副卡). ``none_of``: none of these occurs. With ``negatable`` (the default) an
    occurrence right after a negation cue of ``routing.negation_cues`` (没有人受伤, not
    injured) does not count for ``any_of`` / ``all_of``.
    """

    any_of: tuple[str, ...] = ()
    all_of: tuple[str | tuple[str, ...], ...] = ()
    within: int | None = Field(default=None, ge=1, le=10_000)
    none_of: tuple[str, ...] = ()
    negatable: bool = True

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_keywords(cls, data: object) -> object:
        # YAML reads 12315 as a number; a number keyword means its digits. (yes / no are read
        # as booleans and stay an error: quote them, "no".)
        if not isinstance(data, dict):
            return data
        lists = ("any_of", "all_of", "none_of")
        return {k: _digits_as_text(v) if k in lists else v for k, v in data.items()}

    @model_validator(mode="after")
    def _says_something(self) -> TextCondition:
        if not (self.any_of or self.all_of or self.none_of):
            raise ValueError("give any_of, all_of or none_of")
        if self.within is not None and len(self.all_of) < 2:
            raise ValueError("within needs at least two all_of items")
        return self

    def groups(self) -> tuple[tuple[str, ...], ...]:
        return tuple((item,) if isinstance(item, str) else item for item in self.all_of)

    def keywords(self) -> tuple[str, ...]:
        return (*self.any_of, *(k for g in self.groups() for k in g), *self.none_of)


def _digits_as_text(value: object) -> object:
    if isinstance(value, list | tuple):
        return [_digits_as_text(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class When(Section):
    """The conditions of a rule; every one given must hold (an empty ``when`` always holds)."""

    text: TextCondition | None = None
    channel: tuple[str, ...] = Field(
        default=(), description="a draft with a referral order counts as channel referral too"
    )
    referral_source: tuple[str, ...] = ()  # referrals.sources keys (12345, regulator, ...)
    explicit_category: tuple[str, ...] = ()  # the type the complainant or agent chose
    category: tuple[str, ...] = ()  # the category decided so far (keywords or earlier rules)
    closed_on_contact: bool | None = None  # 直接办结 by the first receiver
    repeat: bool | None = None  # a repeat of an earlier, closed ticket (repeat_of)
    contact: Contact | None = None  # unusable: a number given that is not a phone, no email
    incident_older_than: Age | None = None  # from incident_at to received_at

    @field_validator("incident_older_than", mode="before")
    @classmethod
    def _age(cls, value: object) -> object:
        return Age.parse(value) if isinstance(value, str) else value


class SeverityEffect(Section):
    at_least: Level | None = None  # raise to this level, never lower
    exactly: Level | None = None  # set this level, also lower (every direct closure is general)

    @model_validator(mode="after")
    def _one(self) -> SeverityEffect:
        if (self.at_least is None) == (self.exactly is None):
            raise ValueError("give exactly one of at_least, exactly")
        return self


class Then(Section):
    category: str | None = None
    department: str | None = None
    severity: SeverityEffect | None = None
    valid: Literal[False] | None = None  # 无效投诉, with reason
    accepted: Literal[False] | None = None  # 不予受理, with reason
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    flags: tuple[str, ...] = ()  # e.g. 越级倾向 (escalation tendency)

    @model_validator(mode="after")
    def _reason(self) -> Then:
        if (self.valid is False or self.accepted is False) and not self.reason:
            raise ValueError("valid: false and accepted: false need a reason")
        if self.valid is False and self.accepted is False:
            raise ValueError("say valid: false or accepted: false, not both")
        if (
            not any((self.category, self.department, self.severity, self.flags))
            and self.valid is None
            and self.accepted is None
        ):
            raise ValueError("a rule needs at least one effect")
        return self


class Rule(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: When = When()
    then: Then


def rule_keywords(rules: Sequence[Rule]) -> tuple[str, ...]:
    return tuple(k for r in rules if r.when.text for k in r.when.text.keywords())


def rule_problems(
    rules: Sequence[Rule],
    *,
    departments: Collection[str],
    categories: Collection[str],
    channels: Collection[str],
    referral_sources: Collection[str] | None,
) -> list[tuple[str, str]]:
    """What field validation cannot see: names that must exist elsewhere in the config.
    ``referral_sources`` None: not checked here (they are the referral channel's, which the
    router does not see; the configuration's own check names them)."""
    problems: list[tuple[str, str]] = []
    names = [r.name for r in rules]

    def unknown(where: str, kind: str, value: str, known: Collection[str]) -> None:
        problems.append((where, f"unknown {kind} {value!r} (known: {', '.join(sorted(known))})"))

    for index, rule in enumerate(rules):
        where = f"rules.{index}"
        if names.index(rule.name) != index:
            problems.append((f"{where}.name", f"duplicate rule {rule.name!r}"))
        when, then = rule.when, rule.then
        for channel in when.channel:
            if channel not in channels:
                unknown(f"{where}.when.channel", "channel", channel, channels)
        for source in when.referral_source:
            if referral_sources is not None and source not in referral_sources:
                unknown(
                    f"{where}.when.referral_source", "referral source", source, referral_sources
                )
        for field, values in (
            ("explicit_category", when.explicit_category),
            ("category", when.category),
        ):
            for value in values:
                if value not in categories:
                    unknown(f"{where}.when.{field}", "category", value, categories)
        if then.category is not None and then.category not in categories:
            unknown(f"{where}.then.category", "category", then.category, categories)
        if then.department is not None and then.department not in departments:
            unknown(f"{where}.then.department", "department", then.department, departments)
        if when.text is not None:
            for keyword in when.text.keywords():
                if not any(ch.isalnum() for ch in keyword):
                    problems.append(
                        (f"{where}.when.text", f"keyword {keyword!r} has no letters or digits")
                    )
    return problems
