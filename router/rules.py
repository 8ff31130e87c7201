"""The routing table: small, pure, named rules read from ``config.yaml``.

:class:`Router` turns a :class:`~ingest.draft.TicketDraft` into a :class:`RoutingDecision`.
Stages run in this order, and every rule consulted is recorded in the decision's ``trace``
(hit or miss, and why), so "why did this go to Billing?" has an answer:

validity (all consulted; any hit makes the complaint invalid, 无效投诉)
    ``validity.anonymous_uncontactable``, ``validity.too_short``
category (first hit wins, then misconduct overrides)
    ``category.explicit``, ``category.keywords``, ``category.fallback``, ``category.misconduct``
severity
    ``severity.default``
the configured rules, in order (router/rule_language.py)
    ``rule.<name>``: category, department, severity, validity, acceptance (不予受理), flags
dispatch (first hit wins)
    ``dispatch.discipline``, ``dispatch.invalid``, ``dispatch.not_accepted``,
    ``dispatch.first_contact_closed``, ``dispatch.rule``, ``dispatch.coordinating``,
    ``dispatch.category``

Keywords match as substrings of the normalised text (router/matching.py), all found in one
pass. Everything that depends only on the settings is computed once in ``__init__``; ``route``
reads nothing but the draft, so the same draft always gets the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ingest.draft import Channel, TicketDraft
from ingest.sections import ConfigError
from router.conditions import Facts, evaluate
from router.matching import Matcher, Matches
from router.rule_language import Rule, Then, rule_keywords, rule_problems
from router.segment import Segmenter
from router.settings import DepartmentRole, RouterSettings, Severity

Status = Literal["dispatched", "closed", "invalid", "rejected"]


@dataclass(frozen=True)
class RuleTrace:
    rule: str  # rule name, e.g. "category.keywords", "rule.media", "dispatch.discipline"
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
    accepted: bool = True  # False: 不予受理, with rejected_reason
    rejected_reason: str | None = None
    flags: tuple[str, ...] = ()  # e.g. 越级倾向, from the rules' effects
    involved: tuple[str, ...] = ()  # other categories matched (a misconduct complaint's)
    invalid_rule: str | None = None  # the rule that made it invalid / not accepted
    rejected_rule: str | None = None


@dataclass(frozen=True)
class _Category:
    key: str
    department: str
    misconduct: bool
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class _CategoryChoice:
    """What the category stage decided, and what the dispatch stage needs to know of it."""

    category: _Category
    multi_department: tuple[_Category, ...] = ()
    involved: tuple[str, ...] = ()


@dataclass
class _State:
    """What the rules decide, one after another."""

    category: _Category
    severity: Severity
    department: tuple[str, str] | None = None  # (department, rule that set it)
    category_rule: str | None = None  # the rule that set the category, if one did
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (rule, reason)
    rejected: tuple[str, str] | None = None
    flags: list[str] = field(default_factory=list)


def segmenter_for(settings: RouterSettings) -> Segmenter:
    """A segmenter that knows every category keyword, for text similarity (the repeat rule):
    the one a process shares (``Runtime.segmenter``). Routing itself matches substrings
    (router/matching.py) and does not segment; the rules' keywords (要去, 不是, ...) are
    left out so they do not change how the repeat rule sees a text."""
    return Segmenter(_category_keywords(settings))


def _category_keywords(settings: RouterSettings) -> list[str]:
    return [k for c in settings.categories for k in c.keywords]


class Router:
    """Routes drafts with the rules in ``settings``; raises :class:`ConfigError` at start-up
    for anything the settings' own validation cannot see (unknown names, empty keywords).

    ``segmenter`` is the process's shared one (:func:`segmenter_for`), handed on to the
    repeat rule's text similarity; without it the router builds its own.
    """

    def __init__(self, settings: RouterSettings, segmenter: Segmenter | None = None) -> None:
        problems: list[tuple[str, str]] = []
        routing = settings.routing
        self._default_severity = routing.default_severity
        self._check_anonymous = routing.invalid_when_anonymous_and_uncontactable
        self._min_chars = routing.min_body_chars
        self._negation = routing.negation
        self._departments = frozenset(d.key for d in settings.departments)
        self._coordinating = _department_with_role(settings, DepartmentRole.COORDINATING, problems)
        self._discipline = _department_with_role(settings, DepartmentRole.DISCIPLINE, problems)

        self._segmenter = segmenter or segmenter_for(settings)
        unknown = {k for k in _category_keywords(settings) if k.strip()} - self._segmenter.keywords
        if unknown:
            raise ValueError(
                f"the segmenter does not know {len(unknown)} keyword(s) of the routing rules "
                f"(e.g. {min(unknown)!r}); build it with segmenter_for(settings)"
            )
        self._categories = {
            c.key: _Category(c.key, c.department, c.misconduct, c.keywords)
            for c in settings.categories
        }
        for index, c in enumerate(settings.categories):
            if c.department not in self._departments:
                where = f"categories.{index}.department"
                problems.append((where, f"unknown department {c.department!r}"))
            for at, keyword in enumerate(c.keywords):
                if not Matcher.usable(keyword):
                    where = f"categories.{index}.keywords.{at}"
                    problems.append((where, "keyword has no letters or digits"))
        self._misconduct = tuple(c for c in self._categories.values() if c.misconduct)
        fallback = self._categories.get(routing.fallback_category)
        if fallback is None:
            where, key = "routing.fallback_category", routing.fallback_category
            problems.append((where, f"unknown category {key!r}"))
        self._rules: tuple[Rule, ...] = settings.rules
        problems.extend(
            rule_problems(
                settings.rules,
                departments=self._departments,
                categories=self._categories.keys(),
                channels=[c.value for c in Channel],
                referral_sources=None,
            )
        )
        if problems or fallback is None:
            raise ConfigError(problems)
        self._fallback = fallback
        self._matcher = Matcher(
            [*_category_keywords(settings), *rule_keywords(settings.rules), *self._negation.cues]
        )

    @property
    def segmenter(self) -> Segmenter:
        """The segmenter for text similarity; it knows every keyword (:func:`segmenter_for`)."""
        return self._segmenter

    def route(self, draft: TicketDraft) -> RoutingDecision:
        trace: list[RuleTrace] = []
        matches = self._matcher.match(f"{draft.subject}\n{draft.body}")

        invalid = self._validity(draft, trace)
        choice = self._category(draft, matches, trace)
        state = _State(choice.category, self._default_severity, invalid=invalid)
        trace.append(RuleTrace("severity.default", True, f"severity={state.severity.value}"))
        for rule in self._rules:
            self._apply(rule, draft, matches, state, trace)
        department, status = self._dispatch(draft, choice, state, trace)
        return RoutingDecision(
            category=state.category.key,
            severity=state.severity,
            department=department,
            status=status,
            valid=not state.invalid,
            invalid_reason="; ".join(reason for _, reason in state.invalid) or None,
            trace=tuple(trace),
            accepted=state.rejected is None,
            rejected_reason=state.rejected[1] if state.rejected else None,
            flags=tuple(dict.fromkeys(state.flags)),
            involved=tuple(k for k in choice.involved if k != state.category.key),
            invalid_rule=state.invalid[0][0] if state.invalid else None,
            rejected_rule=state.rejected[0] if state.rejected else None,
        )

    # -- validity -------------------------------------------------------------------------

    def _validity(self, draft: TicketDraft, trace: list[RuleTrace]) -> list[tuple[str, str]]:
        reasons: list[tuple[str, str]] = []
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
            reasons.append((rule, reason))
            trace.append(RuleTrace(rule, True, f"invalid: {reason}"))

        rule = "validity.too_short"
        length = len(draft.subject.strip()) + len(draft.body.strip())
        if length < self._min_chars:
            reason = f"{length} characters of subject and body, fewer than {self._min_chars}"
            reasons.append((rule, reason))
            trace.append(RuleTrace(rule, True, f"invalid: {reason}"))
        else:
            trace.append(RuleTrace(rule, False, f"{length} characters"))
        return reasons

    # -- category -------------------------------------------------------------------------

    @staticmethod
    def _hits(category: _Category, matches: Matches) -> tuple[str, ...]:
        # Not negated: complaints are about what is missing (没有水压, 没有水), so a cue
        # before a category keyword still names the matter.
        return matches.found(category.keywords)

    def _category(
        self, draft: TicketDraft, matches: Matches, trace: list[RuleTrace]
    ) -> _CategoryChoice:
        counted = [
            (category, hits)
            for category in self._categories.values()
            if (hits := self._hits(category, matches))
        ]
        choice = self._first_category(draft, counted, trace)
        # 违规违纪 is the category whatever else the complaint is about (the others are
        # recorded as involved), so it reaches the discipline office and is counted as such.
        rule = "category.misconduct"
        involved = tuple(c.key for c, _ in counted)
        if choice.category.misconduct:
            trace.append(RuleTrace(rule, False, f"already {choice.category.key}"))
            return _CategoryChoice(choice.category, involved=involved)
        found = [(c, hits) for c, hits in counted if c.misconduct]
        if not found:
            trace.append(RuleTrace(rule, False, "no misconduct keyword"))
            return choice
        category, hits = found[0]
        others = [k for k in involved if k != category.key]
        also = f"; involved: {', '.join(others)}" if others else ""
        trace.append(RuleTrace(rule, True, f"category={category.key} ({', '.join(hits)}){also}"))
        return _CategoryChoice(category, involved=involved)

    def _first_category(
        self,
        draft: TicketDraft,
        counted: list[tuple[_Category, tuple[str, ...]]],
        trace: list[RuleTrace],
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

    # -- the configured rules -------------------------------------------------------------

    def _apply(
        self,
        rule: Rule,
        draft: TicketDraft,
        matches: Matches,
        state: _State,
        trace: list[RuleTrace],
    ) -> None:
        name = f"rule.{rule.name}"
        facts = Facts(draft, matches, state.category.key)
        verdict = evaluate(rule.when, facts, self._negation)
        if not verdict.holds:
            trace.append(RuleTrace(name, False, verdict.why))
            return
        effects = self._effects(name, rule.then, state)
        trace.append(RuleTrace(name, True, f"{', '.join(effects)} ({verdict.why})"))

    def _effects(self, name: str, then: Then, state: _State) -> list[str]:
        said: list[str] = []
        if then.category is not None:
            state.category = self._categories[then.category]
            state.category_rule = name
            said.append(f"category={then.category}")
        if then.department is not None:
            state.department = (then.department, name)
            said.append(f"department={then.department}")
        if then.severity is not None:
            effect = then.severity
            if effect.exactly is not None:
                state.severity = Severity(effect.exactly)
                said.append(f"severity={state.severity.value} (exactly)")
            elif effect.at_least is not None:
                level = Severity(effect.at_least)
                if level.rank > state.severity.rank:
                    state.severity = level
                    said.append(f"severity={level.value}")
                else:
                    said.append(f"kept {state.severity.value}, not raised to {level.value}")
        reason = then.reason or ""
        if then.valid is False:
            state.invalid.append((name, reason))
            said.append(f"invalid: {reason}")
        if then.accepted is False:
            if state.rejected is None:
                state.rejected = (name, reason)
                said.append(f"not accepted: {reason}")
            else:
                said.append(f"not accepted already by {state.rejected[0]}")
        if then.flags:
            state.flags.extend(then.flags)
            said.append(f"flags: {', '.join(then.flags)}")
        return said

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(
        self,
        draft: TicketDraft,
        choice: _CategoryChoice,
        state: _State,
        trace: list[RuleTrace],
    ) -> tuple[str, Status]:
        category = state.category
        outcome: Status = (
            "invalid" if state.invalid else "rejected" if state.rejected else ("dispatched")
        )

        rule = "dispatch.discipline"
        # 违规违纪 goes to the discipline office, never to the department complained about:
        # invalid or not accepted too (the office judges an anonymous tip itself), whatever a
        # rule's department says, and before on-the-spot closure, so a first receiver cannot
        # close a complaint about misconduct by themselves.
        if category.misconduct:
            trace.append(
                RuleTrace(rule, True, f"department={self._discipline} (category {category.key})")
            )
            return self._discipline, outcome
        trace.append(RuleTrace(rule, False, "not a misconduct complaint"))

        rule = "dispatch.invalid"
        if state.invalid:
            # Invalid complaints are still recorded, counted and archived (无效投诉), by the
            # coordinating office rather than a handling department.
            trace.append(RuleTrace(rule, True, f"department={self._coordinating} (archive)"))
            return self._coordinating, "invalid"
        trace.append(RuleTrace(rule, False, "complaint is valid"))

        rule = "dispatch.not_accepted"
        if state.rejected is not None:
            # 不予受理: recorded and counted; the coordinating office tells the complainant why.
            trace.append(
                RuleTrace(rule, True, f"department={self._coordinating} ({state.rejected[1]})")
            )
            return self._coordinating, "rejected"
        trace.append(RuleTrace(rule, False, "complaint is accepted"))

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

        rule = "dispatch.rule"
        if state.department is not None:
            department, by = state.department
            trace.append(RuleTrace(rule, True, f"department={department} ({by})"))
            return department, "dispatched"
        trace.append(RuleTrace(rule, False, "no rule named a department"))

        rule = "dispatch.coordinating"
        # 首问负责制: when the owner is unclear or several departments are involved, the
        # coordinating office dispatches and convenes them. A rule that set the category
        # settled the tie (多办 … 副卡 at the shop is a tariff matter, not the shop's).
        if choice.multi_department and state.category_rule is None:
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


def _department_with_role(
    settings: RouterSettings, role: DepartmentRole, problems: list[tuple[str, str]]
) -> str:
    try:
        return settings.department_with_role(role).key
    except KeyError:
        problems.append(("departments", f"one department needs role {role.value!r}"))
        return ""
