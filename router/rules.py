"""The routing table: small, pure, named rules read from ``config.yaml``.

:class:`Router` turns a :class:`~ingest.draft.TicketDraft` into a :class:`RoutingDecision`.
Rules run in four stages, in this order, and every rule consulted is recorded in the
decision's ``trace`` (hit or miss, and why), so "why did this go to Billing?" has an answer:

validity (all consulted; any hit makes the complaint invalid, 无效投诉)
    ``validity.anonymous_uncontactable``, ``validity.too_short``
category (first hit wins)
    ``category.explicit``, ``category.keywords``, ``category.fallback``
severity (all consulted; each hit may raise the level, never lower it)
    ``severity.default``, then ``severity.<name>`` for each ``severity_rules`` entry
dispatch (first hit wins)
    ``dispatch.invalid``, ``dispatch.discipline``, ``dispatch.first_contact_closed``,
    ``dispatch.coordinating``, ``dispatch.category``

Everything that depends only on the settings is computed once in ``__init__``; ``route`` reads
nothing but the draft, so the same draft always gets the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ingest.draft import Channel, TicketDraft
from ingest.sections import ConfigError
from router.segment import BREAK, Segmenter
from router.settings import DepartmentRole, RouterSettings, Severity

Status = Literal["dispatched", "closed", "invalid"]


@dataclass(frozen=True)
class RuleTrace:
    rule: str  # rule name, e.g. "category.keywords", "severity.media", "dispatch.discipline"
    hit: bool
    effect: str  # what it decided when hit, or why it missed


@dataclass(frozen=True)
class RoutingDecision:
    category: str
    severity: Severity
    department: str  # department key that owns the next step
    status: Status
    valid: bool
    invalid_reason: str | None
    trace: tuple[RuleTrace, ...]  # every rule consulted, in order, hits and misses


@dataclass(frozen=True)
class _Keywords:
    """A category's or a severity rule's keywords, in configuration order."""

    keywords: tuple[str, ...]

    def hits(self, found: frozenset[str]) -> tuple[str, ...]:
        return tuple(k for k in self.keywords if k in found)


@dataclass(frozen=True)
class _SeverityRule:
    name: str
    level: Severity
    keywords: _Keywords
    channels: frozenset[str]


@dataclass(frozen=True)
class _Category:
    key: str
    department: str
    misconduct: bool
    keywords: _Keywords


@dataclass(frozen=True)
class _CategoryChoice:
    """What the category stage decided, and what the dispatch stage needs to know of it."""

    category: _Category
    multi_department: tuple[_Category, ...] = ()


def segmenter_for(settings: RouterSettings) -> Segmenter:
    """A segmenter that knows every keyword of the rules: categories' and severity rules'.

    The one a process shares (``Runtime.segmenter``): the repeat rule needs only the category
    keywords, and knowing the severity ones too does not change how it sees a text
    (tests/test_one_segmenter.py), while a second segmenter costs another dictionary load.
    """
    return Segmenter(_rule_keywords(settings))


def _rule_keywords(settings: RouterSettings) -> list[str]:
    return [k for c in settings.categories for k in c.keywords] + [
        k for r in settings.severity_rules for k in r.keywords
    ]


class Router:
    """Routes drafts with the rules in ``settings``; raises :class:`ConfigError` at start-up
    for anything the settings' own validation cannot see (unknown channels, empty keywords).

    ``segmenter`` is the process's shared one (:func:`segmenter_for`); without it the router
    builds its own.
    """

    def __init__(self, settings: RouterSettings, segmenter: Segmenter | None = None) -> None:
        problems: list[tuple[str, str]] = []
        routing = settings.routing
        self._default_severity = routing.default_severity
        self._check_anonymous = routing.invalid_when_anonymous_and_uncontactable
        self._min_chars = routing.min_body_chars
        self._departments = frozenset(d.key for d in settings.departments)
        self._coordinating = _department_with_role(settings, DepartmentRole.COORDINATING, problems)
        self._discipline = _department_with_role(settings, DepartmentRole.DISCIPLINE, problems)

        # One segmenter that knows every keyword, so one segmentation of the text serves all
        # category and severity rules. One built for other settings would not cut these
        # keywords out whole and would silently miss them: refused.
        self._segmenter = segmenter or segmenter_for(settings)
        unknown = {k for k in _rule_keywords(settings) if k.strip()} - self._segmenter.keywords
        if unknown:
            raise ValueError(
                f"the segmenter does not know {len(unknown)} keyword(s) of the routing rules "
                f"(e.g. {min(unknown)!r}); build it with segmenter_for(settings)"
            )
        self._categories = {
            c.key: _Category(
                key=c.key,
                department=c.department,
                misconduct=c.misconduct,
                keywords=self._keywords(c.keywords, f"categories.{index}", problems),
            )
            for index, c in enumerate(settings.categories)
        }
        for index, c in enumerate(settings.categories):
            if c.department not in self._departments:
                where = f"categories.{index}.department"
                problems.append((where, f"unknown department {c.department!r}"))
        self._misconduct = tuple(c for c in self._categories.values() if c.misconduct)
        fallback = self._categories.get(routing.fallback_category)
        if fallback is None:
            where, key = "routing.fallback_category", routing.fallback_category
            problems.append((where, f"unknown category {key!r}"))

        self._severity_rules = tuple(
            _SeverityRule(
                name=rule.name,
                level=rule.level,
                keywords=self._keywords(rule.keywords, f"severity_rules.{index}", problems),
                channels=frozenset(rule.channels),
            )
            for index, rule in enumerate(settings.severity_rules)
        )
        problems.extend(_severity_rule_problems(settings))
        if problems or fallback is None:
            raise ConfigError(problems)
        self._fallback = fallback

    @property
    def segmenter(self) -> Segmenter:
        """The segmenter the rules match with; it knows every keyword (:func:`segmenter_for`)."""
        return self._segmenter

    def _keywords(
        self, keywords: tuple[str, ...], where: str, problems: list[tuple[str, str]]
    ) -> _Keywords:
        for index, keyword in enumerate(keywords):
            phrase = self._segmenter.phrase(keyword)
            if not phrase:
                problems.append((f"{where}.keywords.{index}", "keyword has no letters or digits"))
            elif BREAK in phrase:
                problems.append(
                    (f"{where}.keywords.{index}", f"keyword {keyword!r} spans punctuation")
                )
        return _Keywords(keywords)

    def route(self, draft: TicketDraft) -> RoutingDecision:
        trace: list[RuleTrace] = []
        found = self._segmenter.matches(f"{draft.subject}\n{draft.body}")

        invalid_reasons = self._validity(draft, trace)
        choice = self._category(draft, found, trace)
        severity = self._severity(draft, found, trace)
        department, status = self._dispatch(draft, choice, found, bool(invalid_reasons), trace)
        return RoutingDecision(
            category=choice.category.key,
            severity=severity,
            department=department,
            status=status,
            valid=not invalid_reasons,
            invalid_reason="; ".join(invalid_reasons) or None,
            trace=tuple(trace),
        )

    # -- validity -------------------------------------------------------------------------

    def _validity(self, draft: TicketDraft, trace: list[RuleTrace]) -> list[str]:
        reasons: list[str] = []
        rule = "validity.anonymous_uncontactable"
        complainant = draft.complainant
        if not self._check_anonymous:
            trace.append(RuleTrace(rule, False, "disabled in routing settings"))
        elif not complainant.anonymous:
            trace.append(RuleTrace(rule, False, "complainant is named"))
        elif complainant.contactable:
            trace.append(RuleTrace(rule, False, "anonymous but left a phone or email"))
        elif draft.channel is Channel.FEEDBACK:
            # Service supervision feedback (服务监督) is anonymous by design; it is read and
            # counted, just not replied to.
            trace.append(RuleTrace(rule, False, "feedback may be anonymous"))
        else:
            reason = "anonymous with no phone or email to reply to"
            reasons.append(reason)
            trace.append(RuleTrace(rule, True, f"invalid: {reason}"))

        rule = "validity.too_short"
        length = len(draft.subject.strip()) + len(draft.body.strip())
        if length < self._min_chars:
            reason = f"{length} characters of subject and body, fewer than {self._min_chars}"
            reasons.append(reason)
            trace.append(RuleTrace(rule, True, f"invalid: {reason}"))
        else:
            trace.append(RuleTrace(rule, False, f"{length} characters"))
        return reasons

    # -- category -------------------------------------------------------------------------

    def _category(
        self, draft: TicketDraft, found: frozenset[str], trace: list[RuleTrace]
    ) -> _CategoryChoice:
        rule = "category.explicit"
        if draft.category is None:
            trace.append(RuleTrace(rule, False, "no category given"))
        elif draft.category not in self._categories:
            trace.append(RuleTrace(rule, False, f"unknown category {draft.category!r}"))
        else:
            trace.append(RuleTrace(rule, True, f"category={draft.category}"))
            return _CategoryChoice(self._categories[draft.category])

        rule = "category.keywords"
        counted = [
            (category, hits)
            for category in self._categories.values()
            if (hits := category.keywords.hits(found))
        ]
        if counted:
            best = max(len(hits) for _, hits in counted)
            # Ties keep configuration order, so the first listed category names the ticket.
            top = [(category, hits) for category, hits in counted if len(hits) == best]
            winner = top[0][0]
            detail = "; ".join(f"{c.key}: {', '.join(hits)}" for c, hits in top)
            if len({category.department for category, _ in top}) > 1:
                tied = tuple(category for category, _ in top)
                trace.append(
                    RuleTrace(
                        rule,
                        True,
                        f"category={winner.key}, multi-department tie at {best} ({detail})",
                    )
                )
                return _CategoryChoice(winner, multi_department=tied)
            trace.append(RuleTrace(rule, True, f"category={winner.key} ({detail})"))
            return _CategoryChoice(winner)
        trace.append(RuleTrace(rule, False, "no keyword matched"))

        trace.append(RuleTrace("category.fallback", True, f"category={self._fallback.key}"))
        return _CategoryChoice(self._fallback)

    # -- severity -------------------------------------------------------------------------

    def _severity(
        self, draft: TicketDraft, found: frozenset[str], trace: list[RuleTrace]
    ) -> Severity:
        severity = self._default_severity
        trace.append(RuleTrace("severity.default", True, f"severity={severity.value}"))
        # A referral order travelling on another channel (a forwarded 12345 work order sent by
        # email) is still a referral, so channel rules for "referral" apply to it too.
        channels = {draft.channel.value}
        if draft.referral is not None:
            channels.add(Channel.REFERRAL.value)
        for rule in self._severity_rules:
            name = f"severity.{rule.name}"
            why = []
            if hits := rule.keywords.hits(found):
                why.append(f"keywords: {', '.join(hits)}")
            if via := sorted(channels & rule.channels):
                why.append(f"channel: {', '.join(via)}")
            if not why:
                trace.append(RuleTrace(name, False, "no keyword or channel matched"))
            elif rule.level.rank > severity.rank:
                severity = rule.level
                trace.append(RuleTrace(name, True, f"severity={severity.value} ({'; '.join(why)})"))
            else:
                # Never lowered: a later, milder rule leaves an earlier, graver level alone.
                trace.append(
                    RuleTrace(
                        name,
                        True,
                        f"kept {severity.value}, not raised to {rule.level.value} "
                        f"({'; '.join(why)})",
                    )
                )
        return severity

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(
        self,
        draft: TicketDraft,
        choice: _CategoryChoice,
        found: frozenset[str],
        invalid: bool,
        trace: list[RuleTrace],
    ) -> tuple[str, Status]:
        category = choice.category
        rule = "dispatch.invalid"
        if invalid:
            # Invalid complaints are still recorded, counted and archived (无效投诉), by the
            # coordinating office rather than a handling department.
            trace.append(RuleTrace(rule, True, f"department={self._coordinating} (archive)"))
            return self._coordinating, "invalid"
        trace.append(RuleTrace(rule, False, "complaint is valid"))

        rule = "dispatch.discipline"
        # 违规违纪 goes to the discipline office, never to the department complained about,
        # whatever category the complaint was filed under; and before on-the-spot closure,
        # so a first receiver cannot close a complaint about misconduct by themselves.
        misconduct_hits = [k for c in self._misconduct for k in c.keywords.hits(found)]
        if category.misconduct:
            trace.append(
                RuleTrace(rule, True, f"department={self._discipline} (category {category.key})")
            )
            return self._discipline, "dispatched"
        if misconduct_hits:
            words = ", ".join(dict.fromkeys(misconduct_hits))
            trace.append(RuleTrace(rule, True, f"department={self._discipline} ({words})"))
            return self._discipline, "dispatched"
        trace.append(RuleTrace(rule, False, "no misconduct category or keyword"))

        rule = "dispatch.first_contact_closed"
        if draft.resolved_on_contact is None:
            trace.append(RuleTrace(rule, False, "not resolved on contact"))
        else:
            own = draft.first_contact.department
            if own in self._departments:
                trace.append(RuleTrace(rule, True, f"department={own} (first contact), closed"))
                return own, "closed"
            # An agent team that is not a configured department (an outsourced call centre)
            # cannot own the record; the category's department does.
            why = (
                "first contact has no department" if own is None else f"unknown department {own!r}"
            )
            trace.append(RuleTrace(rule, True, f"department={category.department} ({why}), closed"))
            return category.department, "closed"

        rule = "dispatch.coordinating"
        # 首问负责制: when the owner is unclear or several departments are involved, the
        # coordinating office dispatches and convenes them.
        if choice.multi_department:
            involved = ", ".join(f"{c.key}→{c.department}" for c in choice.multi_department)
            trace.append(
                RuleTrace(
                    rule, True, f"department={self._coordinating} (multi-department: {involved})"
                )
            )
            return self._coordinating, "dispatched"
        if category is self._fallback:
            trace.append(
                RuleTrace(rule, True, f"department={self._coordinating} (unclear: {category.key})")
            )
            return self._coordinating, "dispatched"
        trace.append(RuleTrace(rule, False, "one department is responsible"))

        trace.append(RuleTrace("dispatch.category", True, f"department={category.department}"))
        return category.department, "dispatched"


def _severity_rule_problems(settings: RouterSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    known = {c.value for c in Channel}
    for index, rule in enumerate(settings.severity_rules):
        for channel in rule.channels:
            if channel not in known:
                where = f"severity_rules.{index}.channels"
                problems.append(
                    (where, f"unknown channel {channel!r} (known: {', '.join(sorted(known))})")
                )
        if not rule.keywords and not rule.channels:
            problems.append((f"severity_rules.{index}", "give keywords, channels or both"))
    return problems


def _department_with_role(
    settings: RouterSettings, role: DepartmentRole, problems: list[tuple[str, str]]
) -> str:
    try:
        return settings.department_with_role(role).key
    except KeyError:
        problems.append(("departments", f"one department needs role {role.value!r}"))
        return ""
