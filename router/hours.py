"""The hours a clock is counted on: the organisation's calendar or one desk's service hours.

A 9:00-18:00 office counts working time on the statutory calendar (调休 included) within its
own hours; a 24 h hotline (around the clock, every day) counts elapsed time, so its
"1 working day" is 24 hours, holidays included: the phone is answered on New Year's Day too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from router.calendar import WorkCalendar
from router.clock_settings import INTAKE_DESK_HOURS, ORGANISATION_HOURS, ClockSettings, Desk
from router.settings import CalendarSettings
from router.timelimit import TimeLimit, TimeUnit


class Hours(Protocol):
    """What a clock needs of a calendar."""

    def add(self, start: datetime, limit: TimeLimit) -> datetime: ...

    def working_between(self, start: datetime, end: datetime) -> timedelta: ...


_UNIT_HOURS = {
    TimeUnit.MINUTES: 1 / 60,
    TimeUnit.HOURS: 1.0,
    TimeUnit.WORKING_HOURS: 1.0,
    TimeUnit.DAYS: 24.0,
    TimeUnit.WORKING_DAYS: 24.0,
}


def as_elapsed(limit: TimeLimit) -> timedelta:
    """A limit read as elapsed time, a working day as 24 hours."""
    return timedelta(hours=limit.amount * _UNIT_HOURS[limit.unit])


class AroundTheClock:
    """Every hour of every day is service time."""

    def add(self, start: datetime, limit: TimeLimit) -> datetime:
        if start.tzinfo is None:
            raise ValueError(f"{start!r} has no time zone; pass an aware datetime")
        return start.astimezone(UTC) + as_elapsed(limit)

    def working_between(self, start: datetime, end: datetime) -> timedelta:
        return max(end - start, timedelta())


class ClockHours:
    """Looks up the hours a clock definition names, for a ticket's channel."""

    def __init__(
        self, organisation: WorkCalendar, desks: dict[str, Hours], by_channel: dict[str, str]
    ) -> None:
        self._organisation = organisation
        self._desks = desks
        self._by_channel = by_channel

    @classmethod
    def build(
        cls,
        settings: ClockSettings,
        calendar: CalendarSettings,
        timezone: str,
        organisation: WorkCalendar,
    ) -> ClockHours:
        desks: dict[str, Hours] = {}
        by_channel: dict[str, str] = {}
        for desk in settings.desks:
            desks[desk.key] = _desk_hours(desk, calendar, timezone)
            for channel in desk.channels:
                by_channel.setdefault(channel, desk.key)
        return cls(organisation, desks, by_channel)

    def resolve(self, hours: str, channel: str) -> str:
        """The key stored with a clock, so a pause or extension later counts the same way."""
        if hours == INTAKE_DESK_HOURS:
            return self._by_channel.get(channel, ORGANISATION_HOURS)
        return hours

    def get(self, key: str) -> Hours:
        # A desk removed from the config since: its clocks fall back to the organisation's.
        return self._desks.get(key, self._organisation)


def _desk_hours(desk: Desk, calendar: CalendarSettings, timezone: str) -> Hours:
    if desk.around_the_clock:
        return AroundTheClock()
    own = calendar.model_copy(
        update={"service_start": desk.service_start, "service_end": desk.service_end}
    )
    return WorkCalendar(own, timezone)
