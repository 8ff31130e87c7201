"""WorkCalendar: statutory working days (with 调休) and deadlines for time limits.

Expected values are written out by hand from the published 2026 schedule: Spring Festival
holidays Sun 15 Feb to Mon 23 Feb 2026, adjusted working Saturdays 14 Feb and 28 Feb.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from structlog.testing import capture_logs

from router.calendar import WorkCalendar
from router.settings import CalendarSettings, YearCalendar
from router.timelimit import TimeLimit, TimeUnit

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def calendar(settings: CalendarSettings | None = None) -> WorkCalendar:
    return WorkCalendar(settings or CalendarSettings(), "Asia/Shanghai")


def add(start: datetime, text: str, settings: CalendarSettings | None = None) -> datetime:
    return calendar(settings).add(start, TimeLimit.parse(text))


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


def unknown_year_warnings(logs: Iterable[Mapping[str, object]]) -> list[Mapping[str, object]]:
    return [entry for entry in logs if entry["event"] == "calendar_year_unknown"]


# --- which days are working days ---------------------------------------------------------


def test_the_2026_spring_festival_holidays_come_from_chinesecalendar() -> None:
    cal = calendar()
    festival = days(date(2026, 2, 15), date(2026, 2, 23))
    assert [cal.is_workday(day) for day in festival] == [False] * 9
    # The weekdays inside the festival are off, which Monday-Friday alone would get wrong.
    assert cal.is_workday(date(2026, 2, 16)) is False
    assert cal.is_workday(date(2026, 2, 20)) is False
    assert cal.is_workday(date(2026, 2, 13)) is True
    assert cal.is_workday(date(2026, 2, 24)) is True


def test_the_adjusted_saturdays_around_the_2026_spring_festival_are_working_days() -> None:
    cal = calendar()
    assert date(2026, 2, 14).weekday() == 5
    assert date(2026, 2, 28).weekday() == 5
    assert cal.is_workday(date(2026, 2, 14)) is True
    assert cal.is_workday(date(2026, 2, 28)) is True
    assert cal.is_workday(date(2026, 3, 1)) is False
    assert cal.is_workday(date(2026, 3, 7)) is False


def test_a_configured_year_overrides_chinesecalendar_even_for_a_year_it_knows() -> None:
    cal = calendar(CalendarSettings(years={2026: YearCalendar()}))
    assert cal.is_workday(date(2026, 2, 16)) is True
    assert cal.is_workday(date(2026, 2, 14)) is False


def test_each_day_asks_chinesecalendar_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[date] = []
    real = chinese_calendar.is_workday

    def counting(day: date) -> bool:
        asked.append(day)
        return bool(real(day))

    monkeypatch.setattr(chinese_calendar, "is_workday", counting)
    cal = calendar()
    for _ in range(50):
        cal.add(local(2026, 2, 12, 10), TimeLimit.parse("5 working days"))
    assert asked == days(date(2026, 2, 12), date(2026, 2, 26))


# --- working days across holidays and weekends -------------------------------------------


def test_one_working_day_before_spring_festival_lands_on_the_adjusted_saturday() -> None:
    assert add(local(2026, 2, 13, 17), "1 working day") == local(2026, 2, 14, 17)


def test_one_working_day_from_the_adjusted_saturday_lands_after_the_holiday() -> None:
    assert add(local(2026, 2, 14, 10), "1 working day") == local(2026, 2, 24, 10)


def test_five_working_days_across_the_spring_festival_count_the_adjusted_saturday() -> None:
    # Thu 12 (8 h left), Fri 13, Sat 14, Tue 24, Wed 25, and 1 h of Thu 26.
    assert add(local(2026, 2, 12, 10), "5 working days") == local(2026, 2, 26, 10)


def test_the_adjusted_saturday_after_the_festival_is_counted_too() -> None:
    assert add(local(2026, 2, 25, 10), "3 working days") == local(2026, 2, 28, 10)
    assert add(local(2026, 2, 25, 10), "4 working days") == local(2026, 3, 2, 10)


def test_one_working_day_from_monday_morning_is_tuesday_at_the_same_time() -> None:
    assert add(local(2026, 3, 9, 10), "1 working day") == local(2026, 3, 10, 10)


def test_one_working_day_from_the_start_of_service_ends_the_same_evening() -> None:
    assert add(local(2026, 3, 9, 9), "1 working day") == local(2026, 3, 9, 18)


def test_an_ordinary_weekend_is_skipped() -> None:
    assert add(local(2026, 3, 6, 17), "1 working day") == local(2026, 3, 9, 17)
    assert add(local(2026, 3, 5, 12), "3 working days") == local(2026, 3, 10, 12)


def test_a_week_long_national_day_holiday_is_skipped() -> None:
    # 1-7 Oct 2026 are off; Thu 8 and Fri 9 are working days.
    assert add(local(2026, 9, 30, 15), "1 working day") == local(2026, 10, 8, 15)


# --- clocks started outside service hours ------------------------------------------------


def test_a_start_in_the_evening_is_due_at_the_end_of_the_next_working_day() -> None:
    assert add(local(2026, 3, 9, 20), "1 working day") == local(2026, 3, 10, 18)


def test_a_start_exactly_at_closing_time_counts_from_the_next_morning() -> None:
    assert add(local(2026, 3, 9, 18), "1 working day") == local(2026, 3, 10, 18)


def test_a_start_before_opening_counts_from_opening_the_same_day() -> None:
    assert add(local(2026, 3, 10, 7), "1 working day") == local(2026, 3, 10, 18)
    assert add(local(2026, 3, 10, 7), "2 working hours") == local(2026, 3, 10, 11)


def test_a_start_on_a_weekend_is_due_at_the_end_of_monday() -> None:
    # The documented rule: the clock starts Monday 09:00, one service day ends 18:00.
    assert add(local(2026, 3, 7, 11), "1 working day") == local(2026, 3, 9, 18)
    assert add(local(2026, 3, 8, 23, 59), "2 working days") == local(2026, 3, 10, 18)


def test_a_start_on_a_holiday_is_due_at_the_end_of_the_first_day_back() -> None:
    assert add(local(2026, 2, 17, 11), "1 working day") == local(2026, 2, 24, 18)


# --- working hours, calendar time and fractions -----------------------------------------


def test_working_hours_spanning_two_days_continue_next_morning() -> None:
    assert add(local(2026, 3, 9, 16, 30), "2 working hours") == local(2026, 3, 10, 9, 30)


def test_working_hours_spanning_a_weekend_continue_on_monday() -> None:
    assert add(local(2026, 3, 6, 17), "3 working hours") == local(2026, 3, 9, 11)


def test_calendar_hours_minutes_and_days_ignore_weekends_and_holidays() -> None:
    start = local(2026, 2, 13, 17)
    assert add(start, "48 hours") == local(2026, 2, 15, 17)
    assert add(start, "90 minutes") == local(2026, 2, 13, 18, 30)
    assert add(start, "3 days") == local(2026, 2, 16, 17)
    assert add(start, "1.5 days") == local(2026, 2, 15, 5)


def test_half_a_working_day_is_half_a_service_day() -> None:
    assert add(local(2026, 3, 9, 9), "0.5 working day") == local(2026, 3, 9, 13, 30)


def test_a_fractional_working_day_carries_over_into_the_next_days() -> None:
    # 13.5 h: 3 h on Monday, 9 h on Tuesday, 1.5 h on Wednesday.
    assert add(local(2026, 3, 9, 15), "1.5 working days") == local(2026, 3, 11, 10, 30)


def test_shorter_service_hours_make_a_shorter_working_day() -> None:
    settings = CalendarSettings(service_start=time(8, 30), service_end=time(12, 0))
    assert add(local(2026, 3, 9, 11), "1 working day", settings) == local(2026, 3, 10, 11)
    assert add(local(2026, 3, 9, 13), "1 working day", settings) == local(2026, 3, 10, 12)


# --- years the calendar does not know ----------------------------------------------------


def test_an_unknown_year_falls_back_to_monday_to_friday_and_warns_once() -> None:
    cal = calendar()
    with capture_logs() as logs:
        # 1 Jan 2027 is a Friday; without data it is an ordinary working day.
        assert cal.is_workday(date(2027, 1, 1)) is True
        assert cal.is_workday(date(2027, 1, 2)) is False
        assert cal.is_workday(date(2027, 1, 4)) is True
        assert cal.add(local(2027, 1, 8, 17), TimeLimit.parse("1 working day")) == local(
            2027, 1, 11, 17
        )
        assert cal.add(local(2027, 3, 1, 10), TimeLimit.parse("5 working days")) == local(
            2027, 3, 8, 10
        )
    warnings = unknown_year_warnings(logs)
    assert len(warnings) == 1
    assert warnings[0]["year"] == 2027
    assert warnings[0]["log_level"] == "warning"


def test_each_unknown_year_warns_separately_and_each_calendar_warns_for_itself() -> None:
    first, second = calendar(), calendar()
    with capture_logs() as logs:
        first.is_workday(date(2027, 5, 3))
        first.is_workday(date(2028, 5, 3))
        first.is_workday(date(2028, 5, 4))
        second.is_workday(date(2027, 5, 4))
    assert [entry["year"] for entry in unknown_year_warnings(logs)] == [2027, 2028, 2027]


def test_a_configured_2027_is_used_without_a_warning() -> None:
    settings = CalendarSettings(
        years={
            2027: YearCalendar(
                holidays=(date(2027, 1, 1), *days(date(2027, 2, 6), date(2027, 2, 14))),
                workdays=(date(2027, 2, 20),),
            )
        }
    )
    cal = calendar(settings)
    with capture_logs() as logs:
        assert cal.is_workday(date(2027, 1, 1)) is False
        assert cal.is_workday(date(2027, 2, 8)) is False
        assert cal.is_workday(date(2027, 2, 20)) is True
        assert cal.is_workday(date(2027, 2, 21)) is False
        # Unlisted days follow Monday to Friday.
        assert cal.is_workday(date(2027, 3, 1)) is True
        assert cal.is_workday(date(2027, 3, 6)) is False
        assert cal.add(local(2027, 2, 5, 17), TimeLimit.parse("1 working day")) == local(
            2027, 2, 15, 17
        )
        assert cal.add(local(2027, 2, 19, 17), TimeLimit.parse("1 working day")) == local(
            2027, 2, 20, 17
        )
    assert unknown_year_warnings(logs) == []


def test_a_calendar_without_working_days_raises_instead_of_looping() -> None:
    no_work = CalendarSettings(
        years={
            year: YearCalendar(holidays=tuple(days(date(year, 1, 1), date(year, 12, 31))))
            for year in range(2027, 2031)
        }
    )
    cal = calendar(no_work)
    with pytest.raises(ValueError, match="no end within"):
        cal.add(local(2027, 1, 1, 10), TimeLimit.parse("1 working day"))
    with pytest.raises(ValueError, match="no end within"):
        cal.next_service_start(local(2027, 1, 1, 10))


def test_a_limit_longer_than_the_search_window_raises() -> None:
    with capture_logs():
        with pytest.raises(ValueError, match="no end within"):
            add(local(2027, 1, 4, 10), "2000 working days")


# --- time zones --------------------------------------------------------------------------


def test_the_result_is_in_utc() -> None:
    result = add(local(2026, 3, 9, 10), "1 working day")
    assert result.tzinfo is UTC
    assert (result.year, result.month, result.day, result.hour) == (2026, 3, 10, 2)


def test_a_utc_start_is_read_on_the_shanghai_clock() -> None:
    # 01:30 UTC is 09:30 in Shanghai, inside service hours.
    assert add(utc(2026, 3, 9, 1, 30), "1 working day") == utc(2026, 3, 10, 1, 30)
    # Friday 23:00 UTC is already Saturday 07:00 in Shanghai, so the weekend rule applies.
    assert add(utc(2026, 3, 6, 23), "1 working day") == utc(2026, 3, 9, 10)
    # Friday 09:30 UTC is 17:30 in Shanghai: half an hour left on Friday.
    assert add(utc(2026, 3, 6, 9, 30), "1 working hour") == utc(2026, 3, 9, 1, 30)


def test_a_start_in_a_daylight_saving_zone_is_converted_correctly() -> None:
    # 22:00 in New York on Sunday 8 Mar 2026 (EDT, UTC-4) is 10:00 Monday in Shanghai.
    start = datetime(2026, 3, 8, 22, tzinfo=ZoneInfo("America/New_York"))
    assert add(start, "1 working day") == local(2026, 3, 10, 10)


def test_calendar_hours_are_elapsed_time_even_across_a_daylight_saving_change() -> None:
    # New York springs forward on 8 Mar 2026: 24 h after 12:00 EST is 13:00 EDT, not 12:00.
    start = datetime(2026, 3, 7, 12, tzinfo=ZoneInfo("America/New_York"))
    assert add(start, "24 hours") == utc(2026, 3, 8, 17)


def test_a_naive_start_is_rejected() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        add(datetime(2026, 3, 9, 10), "1 working day")
    with pytest.raises(ValueError, match="no time zone"):
        add(datetime(2026, 3, 9, 10), "2 hours")


def test_a_negative_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        calendar().add(local(2026, 3, 9, 10), TimeLimit(-1.0, TimeUnit.WORKING_DAYS))


# --- service hours -----------------------------------------------------------------------


def test_in_service_hours_follows_the_working_calendar() -> None:
    cal = calendar()
    assert cal.in_service_hours(local(2026, 3, 9, 9)) is True
    assert cal.in_service_hours(datetime(2026, 3, 9, 17, 59, 59, tzinfo=SHANGHAI)) is True
    assert cal.in_service_hours(local(2026, 3, 9, 18)) is False
    assert cal.in_service_hours(local(2026, 3, 9, 8, 59)) is False
    assert cal.in_service_hours(local(2026, 3, 7, 10)) is False
    assert cal.in_service_hours(local(2026, 2, 14, 10)) is True
    assert cal.in_service_hours(local(2026, 2, 16, 10)) is False
    assert cal.in_service_hours(utc(2026, 3, 9, 1)) is True


def test_next_service_start_is_the_same_instant_inside_service_hours() -> None:
    result = calendar().next_service_start(local(2026, 3, 9, 14, 15))
    assert result == utc(2026, 3, 9, 6, 15)
    assert result.tzinfo is UTC


def test_next_service_start_after_hours_on_friday_is_monday_morning() -> None:
    assert calendar().next_service_start(local(2026, 3, 6, 18, 30)) == local(2026, 3, 9, 9)
    assert calendar().next_service_start(local(2026, 3, 6, 18)) == local(2026, 3, 9, 9)


def test_next_service_start_honours_holidays_and_adjusted_saturdays() -> None:
    cal = calendar()
    assert cal.next_service_start(local(2026, 2, 14, 8)) == local(2026, 2, 14, 9)
    assert cal.next_service_start(local(2026, 2, 14, 18, 1)) == local(2026, 2, 24, 9)
    assert cal.next_service_start(local(2026, 2, 16, 10)) == local(2026, 2, 24, 9)


@pytest.mark.parametrize(
    "written", ["1 working day", "2 working days", "1 hour", "0.5 days", "30 minutes"]
)
def test_a_limit_reads_back_as_it_is_written(written: str) -> None:
    # Shown in ticket JSON (clocks' time_limit) and events: "1 working day", not "1 ... days".
    limit = TimeLimit.parse(written)
    assert str(limit) == written and TimeLimit.parse(str(limit)) == limit
