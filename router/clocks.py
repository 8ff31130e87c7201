"""The clock book: which named clocks a ticket runs, when each is due, and how events move them.

A *milestone* is what just happened to a ticket: the status it reached (``dispatched``,
``handled``) and the kind of event that got it there (``contact``). A clock starts on one of
its start milestones and is met on one of its stop milestones; a clock that was met starts
again when its start milestone comes round again (a review dispatches the ticket anew, so
handling has a fresh limit). Several limits may apply to one clock (by severity, category,
channel, referral source): the earliest due wins, and the clock records which rule set it.

Pure except for the rows it is handed: :mod:`router.clock_moves` loads and stores them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest.errors import Refused
from router.calendar import WorkCalendar
from router.clock_settings import (
    ClockDefinition,
    ClockSettings,
    DeadlinePolicy,
    LimitRule,
)
from router.hours import ClockHours, as_elapsed
from router.settings import RouterSettings, TimeLimits
from router.timelimit import TimeLimit, TimeUnit
from store.clock_models import TicketClock
from store.clocks import NewClock
from store.tickets import as_utc

_WORKING_UNITS = frozenset({TimeUnit.WORKING_DAYS, TimeUnit.WORKING_HOURS})
REFERRAL_RULE = "deadline.referral"
REFERRAL_LIMIT = "the referring authority's deadline"


class ClockRefused(Refused):
    """A staff clock action that cannot apply (unknown clock, not running, over the cap)."""


@dataclass(frozen=True)
class ClockFacts:
    """What a clock's limit may depend on."""

    severity: str
    category: str
    channel: str
    referral_source: str | None
    referral_deadline: datetime | None


@dataclass(frozen=True)
class Due:
    due_at: datetime
    rule: str
    time_limit: str | None
    working: bool
    hours: str


def default_definitions(limits: TimeLimits) -> tuple[ClockDefinition, ...]:
    """The clocks an older config (``time_limits`` only) gets, with the same deadlines."""
    handle_rules = [
        LimitRule(
            name=f"deadline.severity.{severity.value}", severity=(severity.value,), limit=limit
        )
        for severity, limit in limits.handle.items()
    ] + [
        LimitRule(name=f"deadline.channel.{channel}", channel=(channel,), limit=limit)
        for channel, limit in limits.by_channel.items()
    ]
    return (
        ClockDefinition(
            name="accept",
            start=("received",),
            stop=("accepted", "dispatched", "rejected", "invalid", "closed"),
            limit=limits.accept,
        ),
        ClockDefinition(
            name="handle",
            start=("dispatched",),
            stop=("handled", "closed", "closed_abnormal"),
            rules=tuple(handle_rules),
        ),
        ClockDefinition(
            name="feedback",
            start=("handled",),
            stop=("feedback_given", "closed", "closed_abnormal"),
            limit=limits.feedback_after_handling,
        ),
        ClockDefinition(
            name="callback",
            start=("feedback_given",),
            stop=("callback_done", "closed", "closed_abnormal"),
            limit=limits.callback_after_closure,
        ),
        ClockDefinition(
            name="referral",
            start=("received",),
            stop=("handled", "closed", "closed_abnormal", "rejected", "invalid"),
            referral_deadline=True,
        ),
    )


class ClockBook:
    def __init__(
        self, settings: ClockSettings, definitions: Iterable[ClockDefinition], hours: ClockHours
    ) -> None:
        self._settings = settings
        self.definitions = {d.name: d for d in definitions}
        self._hours = hours
        self.handling_clock = settings.handling_clock

    @classmethod
    def from_settings(cls, settings: RouterSettings, calendar: WorkCalendar) -> ClockBook:
        section = settings.clocks
        hours = ClockHours.build(
            section, settings.calendar, settings.organisation.timezone, calendar
        )
        definitions = section.definitions or default_definitions(settings.time_limits)
        return cls(section, definitions, hours)

    # --- when a clock is due ------------------------------------------------------------

    def due(self, definition: ClockDefinition, facts: ClockFacts, start: datetime) -> Due | None:
        """None when no limit applies to this ticket (a rules-only clock, no order deadline)."""
        key = self._hours.resolve(definition.hours, facts.channel)
        if definition.referral_deadline:
            if facts.referral_deadline is None:
                return None
            return Due(facts.referral_deadline, REFERRAL_RULE, None, False, key)
        hours = self._hours.get(key)
        candidates: list[tuple[datetime, str, TimeLimit]] = []
        if definition.limit is not None:
            candidates.append(
                (
                    hours.add(start, definition.limit),
                    f"clock.{definition.name}.limit",
                    definition.limit,
                )
            )
        for index, rule in enumerate(definition.rules):
            if _matches(rule, facts):
                name = rule.name or f"clock.{definition.name}.rules.{index}"
                candidates.append((hours.add(start, rule.limit), name, rule.limit))
        if not candidates:
            return None
        due_at, rule_name, limit = min(candidates, key=lambda c: c[0])
        ours = Due(due_at, rule_name, str(limit), limit.unit in _WORKING_UNITS, key)
        if definition.name == self.handling_clock and facts.referral_deadline is not None:
            return self._apply_policy(ours, facts, key)
        return ours

    def _apply_policy(self, ours: Due, facts: ClockFacts, key: str) -> Due:
        order = Due(
            facts.referral_deadline or ours.due_at, REFERRAL_RULE, REFERRAL_LIMIT, False, key
        )
        policy = self._settings.policy_for(facts.referral_source)
        if policy is DeadlinePolicy.ORDER:
            return order
        if policy is DeadlinePolicy.EARLIEST and order.due_at < ours.due_at:
            return order
        return ours

    def warn_at(self, definition: ClockDefinition, due_at: datetime) -> datetime:
        # Elapsed lead time: "2 hours before it is due" is what a supervisor reads on a wall.
        return due_at - as_elapsed(definition.warn_before or self._settings.warn_before)

    # --- starting and stopping ----------------------------------------------------------

    def start(
        self, facts: ClockFacts, milestones: Collection[str], started_at: datetime, now: datetime
    ) -> tuple[NewClock, ...]:
        """The clocks of a new ticket: started at intake, met at once when intake already
        reached their stop (the router accepts and dispatches in one go)."""
        clocks: list[NewClock] = []
        for definition in self.definitions.values():
            if not milestones_hit(definition.start, milestones):
                continue
            due = self.due(definition, facts, started_at)
            if due is None:
                continue
            met = now if milestones_hit(definition.stop, milestones) else None
            clocks.append(
                NewClock(
                    name=definition.name,
                    rule=due.rule,
                    time_limit=due.time_limit,
                    hours=due.hours,
                    working=due.working,
                    started_at=started_at,
                    due_at=due.due_at,
                    warn_at=self.warn_at(definition, due.due_at),
                    met_at=met,
                )
            )
        return tuple(clocks)

    def advance(
        self,
        rows: dict[str, TicketClock],
        facts: ClockFacts,
        milestones: Collection[str],
        now: datetime,
    ) -> list[NewClock]:
        """Stop running clocks this milestone meets, restart met ones it starts (changing the
        rows in place); returns the clocks that start for the first time."""
        fresh: list[NewClock] = []
        stopped: set[str] = set()
        for name, running in rows.items():
            definition = self.definitions.get(name)
            if (
                definition
                and running.met_at is None
                and milestones_hit(definition.stop, milestones)
            ):
                running.met_at, running.paused_at, running.remaining_seconds = now, None, None
                running.updated_at = now
                stopped.add(name)
        for definition in self.definitions.values():
            if definition.name in stopped or not milestones_hit(definition.start, milestones):
                continue
            row = rows.get(definition.name)
            if row is not None and row.met_at is None:
                continue  # running already: a second dispatch does not reset its limit
            due = self.due(definition, facts, now)
            if due is None:
                continue
            if row is None:
                fresh.append(
                    NewClock(
                        definition.name,
                        due.rule,
                        due.time_limit,
                        due.hours,
                        due.working,
                        now,
                        due.due_at,
                        self.warn_at(definition, due.due_at),
                        None,
                    )
                )
                continue
            row.rule, row.time_limit, row.hours, row.working = (
                due.rule,
                due.time_limit,
                due.hours,
                due.working,
            )
            row.started_at, row.due_at = now, due.due_at
            row.warn_at = self.warn_at(definition, due.due_at)
            row.met_at = row.warned_at = row.breached_at = row.paused_at = None
            row.remaining_seconds, row.extended, row.updated_at = None, 0.0, now
        return fresh

    # --- staff actions on one clock -----------------------------------------------------

    def pause(self, found: TicketClock | None, now: datetime) -> None:
        row = self._running(found)
        if row.paused_at is not None:
            raise ClockRefused(f"clock {row.name!r} is paused already")
        due = _utc(row.due_at)
        hours = self._hours.get(row.hours)
        left = hours.working_between(now, due) if row.working else max(due - now, timedelta())
        row.paused_at, row.remaining_seconds, row.updated_at = now, left.total_seconds(), now

    def resume(self, found: TicketClock | None, now: datetime) -> None:
        row = self._running(found)
        if row.paused_at is None or row.remaining_seconds is None:
            raise ClockRefused(f"clock {row.name!r} is not paused")
        left = row.remaining_seconds
        if row.working:
            due = self._hours.get(row.hours).add(
                now, TimeLimit(left / 3600, TimeUnit.WORKING_HOURS)
            )
        else:
            due = now + timedelta(seconds=left)
        self._move(row, due, now)
        row.paused_at, row.remaining_seconds = None, None

    def extend(self, found: TicketClock | None, by: str, now: datetime) -> None:
        row = self._running(found)
        if row.paused_at is not None:
            raise ClockRefused(f"clock {row.name!r} is paused; resume it before extending")
        try:
            limit = TimeLimit.parse(by)
        except ValueError as exc:
            raise ClockRefused(str(exc)) from exc
        cap = self.definitions[row.name].max_extension
        if cap is None:
            raise ClockRefused(f"clock {row.name!r} cannot be extended")
        if limit.unit is not cap.unit:
            raise ClockRefused(f"extend {row.name!r} in {cap.unit.value} (at most {cap} in all)")
        if row.extended + limit.amount > cap.amount:
            raise ClockRefused(
                f"clock {row.name!r} may be extended by at most {cap} in all "
                f"({row.extended:g} {cap.unit.value} used)"
            )
        self._move(row, self._hours.get(row.hours).add(_utc(row.due_at), limit), now)
        row.extended += limit.amount

    def _running(self, row: TicketClock | None) -> TicketClock:
        if row is None:
            raise ClockRefused(f"no such clock; this ticket has: {', '.join(self.definitions)}")
        if row.met_at is not None:
            raise ClockRefused(f"clock {row.name!r} has stopped already")
        return row

    def policy_for(self, source: str | None) -> DeadlinePolicy:
        return self._settings.policy_for(source)

    def move(self, row: TicketClock, due: datetime, now: datetime) -> None:
        """A new due time from outside (the referring authority's new deadline)."""
        self._move(row, due, now)

    def _move(self, row: TicketClock, due: datetime, now: datetime) -> None:
        definition = self.definitions.get(row.name)
        row.due_at = due
        row.warn_at = self.warn_at(definition, due) if definition else due
        if due > now:
            row.warned_at = None  # a new deadline earns a new warning; a breach stays recorded
        row.updated_at = now


def clock_book(settings: RouterSettings) -> ClockBook:
    """The book on the organisation's own calendar, for callers that have no calendar yet."""
    return ClockBook.from_settings(
        settings, WorkCalendar(settings.calendar, settings.organisation.timezone)
    )


def milestones_hit(wanted: Collection[str], milestones: Collection[str]) -> bool:
    return any(m in wanted for m in milestones)


def _matches(rule: LimitRule, facts: ClockFacts) -> bool:
    return (
        (not rule.severity or facts.severity in rule.severity)
        and (not rule.category or facts.category in rule.category)
        and (not rule.channel or facts.channel in rule.channel)
        and (not rule.referral_source or facts.referral_source in rule.referral_source)
    )


def _utc(value: datetime) -> datetime:
    converted = as_utc(value)
    assert converted is not None
    return converted
