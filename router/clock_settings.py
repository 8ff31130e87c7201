"""The ``clocks`` section: the named time limits (时限) a ticket runs against.

Each clock has a start and a stop *milestone* (a lifecycle status the ticket reaches, such
as ``dispatched`` or ``handled``, or an event kind such as ``contact``), a limit, and the
hours it is counted on: the organisation's calendar, a desk's own service hours (a 24 h
hotline and a 9:00-18:00 office differ), or the desk the ticket came in through.

Left out of the config, the clocks come from ``time_limits`` (accept, handle, feedback,
callback) plus the referring authority's deadline, so older configs keep their deadlines.
This module must not import ``router.settings``: it is one section of it.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum

from pydantic import Field, model_validator

from ingest.sections import Section
from router.timelimit import TimeLimit, TimeUnit

ORGANISATION_HOURS = "organisation"
INTAKE_DESK_HOURS = "intake"


class DeadlinePolicy(StrEnum):
    """Whose deadline the handling clock keeps for a referred work order."""

    ORDER = "order"  # the order's deadline is the clock (12345 transfers, the water seed)
    EARLIEST = "earliest"  # the earlier of the order's and ours
    OURS = "ours"  # our own limit; the order's deadline has its own clock


class LimitRule(Section):
    """A limit for tickets that match every condition given (an empty one matches all)."""

    name: str | None = Field(
        default=None, max_length=100, description="named in the audit trail; default its index"
    )
    severity: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    referral_source: tuple[str, ...] = ()
    limit: TimeLimit

    def describe(self) -> str:
        parts = [
            f"{name}={'|'.join(values)}"
            for name, values in (
                ("severity", self.severity),
                ("category", self.category),
                ("channel", self.channel),
                ("referral_source", self.referral_source),
            )
            if values
        ]
        return ",".join(parts) or "any"


class ClockDefinition(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    start: tuple[str, ...] = Field(min_length=1, description="milestones that start it")
    stop: tuple[str, ...] = Field(min_length=1, description="milestones that stop it (met)")
    limit: TimeLimit | None = Field(
        default=None, description="the limit when no rule is earlier; none: only rules apply"
    )
    rules: tuple[LimitRule, ...] = ()
    referral_deadline: bool = Field(
        default=False, description="due at the referring order's own deadline (no limit)"
    )
    hours: str = Field(
        default=ORGANISATION_HOURS,
        description="'organisation', 'intake' (the desk of the ticket's channel) or a desk key",
    )
    max_extension: TimeLimit | None = Field(
        default=None, description="total extensions allowed (bank: 15 working days)"
    )
    warn_before: TimeLimit | None = Field(
        default=None, description="due-soon lead time; default clocks.warn_before"
    )

    @model_validator(mode="after")
    def _has_a_limit(self) -> ClockDefinition:
        if not self.referral_deadline and self.limit is None and not self.rules:
            raise ValueError("give a limit, rules, or referral_deadline: true")
        return self


class Desk(Section):
    """Service hours of one desk; ``channels`` are the channels it takes in."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    channels: tuple[str, ...] = ()
    around_the_clock: bool = Field(
        default=False, description="24 h, every day: working time is elapsed time"
    )
    service_start: time = time(9, 0)
    service_end: time = time(18, 0)


class ClockSettings(Section):
    definitions: tuple[ClockDefinition, ...] = Field(
        default=(), description="empty: accept, handle, feedback, callback from time_limits"
    )
    handling_clock: str = Field(default="handle", description="the clock the ticket's due_at is")
    warn_before: TimeLimit = TimeLimit(2, TimeUnit.HOURS)
    desks: tuple[Desk, ...] = ()
    referral_default: DeadlinePolicy = DeadlinePolicy.EARLIEST
    referral_policies: dict[str, DeadlinePolicy] = Field(
        default_factory=dict, description="referral source key -> deadline policy"
    )

    def policy_for(self, source: str | None) -> DeadlinePolicy:
        if source is None:
            return self.referral_default
        return self.referral_policies.get(source, self.referral_default)

    def problems(self) -> list[tuple[str, str]]:
        """Names that must point at each other inside this section."""
        found: list[tuple[str, str]] = []
        desks = {d.key for d in self.desks}
        names = [d.name for d in self.definitions]
        for index, definition in enumerate(self.definitions):
            where = f"clocks.definitions.{index}"
            if names.index(definition.name) != index:
                found.append((f"{where}.name", f"duplicate clock {definition.name!r}"))
            if definition.hours not in desks | {ORGANISATION_HOURS, INTAKE_DESK_HOURS}:
                found.append((f"{where}.hours", f"unknown desk {definition.hours!r}"))
        for index, desk in enumerate(self.desks):
            if not desk.around_the_clock and desk.service_start >= desk.service_end:
                found.append((f"clocks.desks.{index}.service_end", "must be after service_start"))
        return found
