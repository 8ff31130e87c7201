"""The working calendar: which days are working days, and when a time limit (时限) runs out.

Which days are working days, first source that knows the year wins:

1. ``calendar.years`` in the settings: the State Council's holidays and adjusted working days
   (调休) for that year. Days it does not list follow Monday to Friday.
2. The ``chinesecalendar`` package, which ships the statutory calendar of the years it knows.
3. Monday to Friday, with a ``calendar_year_unknown`` warning (once per year per calendar), so
   operators notice that next year's holidays still need configuring.

How limits are counted (all clock readings are local time in the organisation's zone):

* ``minutes`` and ``hours`` are elapsed time; ``days`` are calendar days on the local clock
  (same local time N days later). Neither looks at working days.
* ``working hours`` count only time inside service hours (``service_start`` to
  ``service_end``) on working days.
* ``working days`` are N service days of working time, so a part day carries over:
  Monday 10:00 + 1 working day = Tuesday 10:00, Friday 17:00 + 1 working day = the next
  working day 17:00. Fractions are allowed: 0.5 working day is half a service day.

The rule for clocks started outside service hours: the clock starts at the next service
period start. An item received in the evening, at a weekend or on a holiday with a limit of
1 working day is therefore due at the *end* of the next working day: Saturday 11:00 + 1 working
day = Monday 18:00, which is what officers mean by "reply within one working day". A deadline
that exhausts the remaining time exactly at ``service_end`` is that day's ``service_end``, not
the next day's ``service_start``. Service hours are half-open: 18:00 itself is after hours.

A search looks at most :data:`MAX_SEARCH_DAYS` days ahead and raises :class:`ValueError`
beyond, so a calendar configured with no working days at all cannot hang a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import structlog

from router.settings import CalendarSettings
from router.timelimit import TimeLimit, TimeUnit

# Longest plausible limit is a few months (15 working days plus a 15 day extension); three
# years is far beyond that and still bounds the loop.
MAX_SEARCH_DAYS = 3 * 366

_ELAPSED_UNITS: dict[TimeUnit, timedelta] = {
    TimeUnit.MINUTES: timedelta(minutes=1),
    TimeUnit.HOURS: timedelta(hours=1),
}


class WorkCalendar:
    """Working days and deadlines for one organisation; safe to share, cheap to call."""

    def __init__(self, settings: CalendarSettings, timezone: str) -> None:
        if settings.service_start.tzinfo is not None or settings.service_end.tzinfo is not None:
            raise ValueError("service hours are local clock times; write them without an offset")
        if settings.service_start >= settings.service_end:
            raise ValueError("service_end must be later than service_start")
        self._zone = ZoneInfo(timezone)
        self._open = settings.service_start
        self._close = settings.service_end
        anchor = date(2000, 1, 1)
        self._service_day = datetime.combine(anchor, self._close) - datetime.combine(
            anchor, self._open
        )
        # Sets, because a configured year is consulted for every day of every deadline.
        self._holidays = {year: frozenset(entry.holidays) for year, entry in settings.years.items()}
        self._workdays = {year: frozenset(entry.workdays) for year, entry in settings.years.items()}
        # Bounded by the days deadlines actually touch (a few hundred per year in service).
        self._day_cache: dict[date, bool] = {}
        self._warned_years: set[int] = set()
        self._log = structlog.get_logger(__name__)

    def is_workday(self, day: date) -> bool:
        cached = self._day_cache.get(day)
        if cached is None:
            cached = self._day_cache[day] = self._lookup_workday(day)
        return cached

    def in_service_hours(self, at: datetime) -> bool:
        local = self._to_local(at)
        return self.is_workday(local.date()) and self._open <= local.time() < self._close

    def next_service_start(self, at: datetime) -> datetime:
        """``at`` itself (in UTC) when inside service hours, else the next period's start."""
        begin, _ = next(self._service_periods(self._to_local(at)))
        return self._to_utc(begin)

    def add(self, start: datetime, limit: TimeLimit) -> datetime:
        """The deadline for ``limit`` counted from ``start``, as an aware UTC datetime."""
        if limit.amount < 0:
            raise ValueError(f"time limit {limit.amount} {limit.unit.value} must not be negative")
        elapsed = _ELAPSED_UNITS.get(limit.unit)
        if elapsed is not None:
            # Arithmetic on an aware datetime is wall-clock in its own zone; in UTC it is elapsed.
            return self._require_aware(start).astimezone(UTC) + elapsed * limit.amount
        local = self._to_local(start)
        if limit.unit is TimeUnit.DAYS:
            return self._to_utc(local + timedelta(days=limit.amount))
        if limit.unit is TimeUnit.WORKING_HOURS:
            remaining = timedelta(hours=limit.amount)
        elif limit.unit is TimeUnit.WORKING_DAYS:
            remaining = self._service_day * limit.amount
        else:  # pragma: no cover - a new TimeUnit must be taught to the calendar
            raise ValueError(f"unsupported time unit {limit.unit!r}")
        for begin, end in self._service_periods(local):
            available = end - begin
            if remaining <= available:
                return self._to_utc(begin + remaining)
            remaining -= available
        raise AssertionError("unreachable: _service_periods raises when exhausted")

    def working_between(self, start: datetime, end: datetime) -> timedelta:
        """Service time from ``start`` to ``end`` (zero when ``end`` is not later): what a
        paused clock still has left, so resuming it gives back exactly that much."""
        local_end = self._to_local(end)
        total = timedelta()
        if local_end <= self._to_local(start):
            return total
        for begin, finish in self._service_periods(self._to_local(start)):
            if begin >= local_end:
                break
            total += min(finish, local_end) - begin
        return total

    def _service_periods(self, local: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Service periods (naive local) from ``local`` on; the first may be a partial day."""
        day = local.date()
        for _ in range(MAX_SEARCH_DAYS):
            if self.is_workday(day):
                begin = max(local, datetime.combine(day, self._open))
                end = datetime.combine(day, self._close)
                if begin < end:
                    yield begin, end
            day += timedelta(days=1)
        raise ValueError(
            f"no end within {MAX_SEARCH_DAYS} days of {local:%Y-%m-%d %H:%M}; "
            "check calendar.years for a year without working days"
        )

    def _lookup_workday(self, day: date) -> bool:
        year = day.year
        if year in self._holidays:
            if day in self._holidays[year]:
                return False
            if day in self._workdays[year]:
                return True
            return day.weekday() < 5
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if year not in self._warned_years:
                self._warned_years.add(year)
                self._log.warning(
                    "calendar_year_unknown",
                    year=year,
                    fallback="monday_to_friday",
                    hint=f"add calendar.years.{year} with that year's holidays and 调休 workdays",
                )
            return day.weekday() < 5

    def _to_local(self, at: datetime) -> datetime:
        """Naive local wall-clock time, so service hours compare as plain clock readings."""
        return self._require_aware(at).astimezone(self._zone).replace(tzinfo=None)

    def _to_utc(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self._zone).astimezone(UTC)

    @staticmethod
    def _require_aware(at: datetime) -> datetime:
        # A naive datetime would silently be read as the server's local zone.
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"{at!r} has no time zone; pass an aware datetime")
        return at
