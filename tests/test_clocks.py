"""The clock book: which clocks a ticket runs and when each is due, on the organisation's
calendar and each desk's own hours; referral deadline policies; extensions and pauses.

Dates come from the published 2026 schedule (see tests/test_calendar.py): Spring Festival
holidays Sun 15 Feb to Mon 23 Feb 2026, adjusted working Saturdays 14 Feb and 28 Feb.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.app.settings import Settings, load_settings
from ingest.sections import ConfigError
from router.calendar import WorkCalendar
from router.clock_settings import DeadlinePolicy
from router.clocks import ClockBook, ClockFacts, ClockRefused
from router.timelimit import TimeLimit
from store.clock_models import TicketClock
from tests.stack import CONFIG

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def settings(**policies: DeadlinePolicy) -> Settings:
    loaded = load_settings(CONFIG, environ={})
    if policies:
        clocks = loaded.clocks.model_copy(
            update={"referral_policies": loaded.clocks.referral_policies | policies}
        )
        loaded = loaded.model_copy(update={"clocks": clocks})
    return loaded


def book_of(loaded: Settings) -> ClockBook:
    return ClockBook.from_settings(
        loaded, WorkCalendar(loaded.calendar, loaded.organisation.timezone)
    )


def facts(
    channel: str = "web",
    *,
    category: str = "water_quality",
    severity: str = "general",
    source: str | None = None,
    deadline: datetime | None = None,
) -> ClockFacts:
    return ClockFacts(severity, category, channel, source, deadline)


def intake(
    book: ClockBook, received: datetime, what: ClockFacts, *milestones: str
) -> dict[str, datetime]:
    clocks = book.start(what, {"received", *milestones}, received, received)
    return {c.name: c.due_at.astimezone(SHANGHAI) for c in clocks}


def rows(book: ClockBook, received: datetime, what: ClockFacts) -> dict[str, TicketClock]:
    clocks = book.start(what, {"received", "accepted", "dispatched"}, received, received)
    return {
        c.name: TicketClock(ticket_id=1, extended=0.0, updated_at=received, **asdict(c))
        for c in clocks
    }


# --- across a Spring Festival and a desk's closing time ------------------------------------


def test_clocks_started_before_the_spring_festival_count_its_adjusted_saturday() -> None:
    book = book_of(settings())
    due = intake(book, local(2, 13, 17), facts(), "accepted", "dispatched")
    # Friday 17:00 + 1 working day: one hour on Friday, eight on the adjusted Saturday.
    assert due["accept"] == local(2, 14, 17)
    # 5 working days: Fri 1 h, Sat 14 (调休) 9 h, then nothing until Tue 24: 24, 25, 26, 27.
    assert due["handle"] == local(2, 27, 17)
    assert due["first_contact"] == local(2, 14, 17), "24 hours is elapsed time"


def test_the_accept_clock_counts_on_the_desk_the_ticket_came_in_through() -> None:
    book = book_of(settings())
    after_closing = local(2, 14, 19)  # the adjusted working Saturday, after the office closed
    by_mail = intake(book, after_closing, facts("web"))
    by_phone = intake(book, after_closing, facts("phone"))
    # The office opens again after the festival: Tuesday 24 Feb, due at its close.
    assert by_mail["accept"] == local(2, 24, 18)
    # The 24 h hotline keeps counting through the night and the holiday.
    assert by_phone["accept"] == local(2, 15, 19)


def test_a_minute_before_closing_leaves_one_minute_on_the_day() -> None:
    book = book_of(settings())
    due = intake(book, local(2, 12, 17, 59), facts("letter"))
    assert due["accept"] == local(2, 13, 17, 59)


# --- referral deadline policies -------------------------------------------------------------


def _handle(loaded: Settings, source: str, deadline: datetime) -> tuple[datetime, str]:
    book = book_of(loaded)
    received = local(3, 2, 10)  # Monday; ours is Monday 9 Mar 10:00 for an important order
    what = facts("referral", severity="important", source=source, deadline=deadline)
    (handle,) = [
        c
        for c in book.start(what, {"received", "dispatched"}, received, received)
        if c.name == "handle"
    ]
    return handle.due_at, handle.rule


@pytest.mark.parametrize(
    ("policy", "order_days_away", "expected"),
    [
        (DeadlinePolicy.ORDER, 10, "order"),
        (DeadlinePolicy.ORDER, 1, "order"),
        (DeadlinePolicy.EARLIEST, 10, "ours"),
        (DeadlinePolicy.EARLIEST, 1, "order"),
        (DeadlinePolicy.OURS, 10, "ours"),
        (DeadlinePolicy.OURS, 1, "ours"),
    ],
)
def test_a_referral_source_s_deadline_policy_decides_the_handling_clock(
    policy: DeadlinePolicy, order_days_away: int, expected: str
) -> None:
    order_deadline = local(3, 2 + order_days_away, 10).astimezone(UTC)
    ours = local(3, 5, 10).astimezone(UTC)  # 3 working days from Monday 10:00
    due, rule = _handle(settings(**{"src": policy}), "src", order_deadline)
    if expected == "order":
        assert (due, rule) == (order_deadline, "deadline.referral")
    else:
        assert (due, rule) == (ours, "deadline.severity.important")


def test_gov12345_keeps_its_order_deadline_and_every_order_has_its_own_clock() -> None:
    order_deadline = local(3, 20, 17).astimezone(UTC)
    due, rule = _handle(settings(), "gov12345", order_deadline)
    assert (due, rule) == (order_deadline, "deadline.referral")
    book = book_of(settings())
    what = facts("referral", source="housing-regulator", deadline=order_deadline)
    started = {c.name: c for c in book.start(what, {"received"}, local(3, 2, 10), local(3, 2, 10))}
    assert started["referral"].due_at == order_deadline
    assert "referral" not in intake(book, local(3, 2, 10), facts("web"))


# --- extensions and pauses ------------------------------------------------------------------


def test_an_extension_moves_the_clock_in_working_days_up_to_its_cap() -> None:
    loaded = settings()
    book = book_of(loaded)
    clocks = rows(book, local(2, 13, 17), facts())
    handle = clocks["handle"]
    book.extend(handle, "5 working days", local(2, 25, 10))
    # Fri 27 Feb 17:00 + 5 working days: Fri 1 h, Sat 28 (调休), Mon 2, Tue 3, Wed 4, Thu 5 8 h.
    assert handle.due_at.astimezone(SHANGHAI) == local(3, 5, 17)
    book.extend(handle, "10 working days", local(2, 25, 10))
    with pytest.raises(ClockRefused, match="at most 15 working days"):
        book.extend(handle, "1 working day", local(2, 25, 10))
    assert handle.extended == 15
    with pytest.raises(ClockRefused, match="in working days"):
        book.extend(handle, "2 hours", local(2, 25, 10))
    with pytest.raises(ClockRefused, match="cannot be extended"):
        book.extend(clocks["first_contact"], "1 working day", local(2, 25, 10))
    with pytest.raises(ClockRefused, match="stopped already"):
        book.extend(clocks["accept"], "1 working day", local(2, 25, 10))


def test_a_pause_keeps_the_working_time_left_and_gives_it_back_on_resume() -> None:
    book = book_of(settings())
    handle = rows(book, local(2, 13, 17), facts())["handle"]
    book.pause(handle, local(2, 25, 10))
    # Left at Wed 25 Feb 10:00: Wed 8 h + Thu 9 h + Fri 8 h = 25 working hours.
    assert handle.remaining_seconds == 25 * 3600
    with pytest.raises(ClockRefused, match="paused already"):
        book.pause(handle, local(2, 25, 11))
    with pytest.raises(ClockRefused, match="resume it before extending"):
        book.extend(handle, "1 working day", local(2, 25, 11))
    book.resume(handle, local(3, 2, 9))
    # Mon 2 Mar 9 h, Tue 9 h, Wed 7 h: Wednesday 4 Mar 16:00.
    assert handle.due_at.astimezone(SHANGHAI) == local(3, 4, 16)
    assert handle.paused_at is None
    with pytest.raises(ClockRefused, match="not paused"):
        book.resume(handle, local(3, 2, 10))


def test_a_met_clock_starts_again_when_a_review_dispatches_the_ticket_anew() -> None:
    book = book_of(settings())
    clocks = rows(book, local(2, 13, 17), facts())
    fresh = book.advance(clocks, facts(), {"handle", "handled"}, local(2, 20, 10))
    assert [c.name for c in fresh] == ["feedback"]
    assert clocks["handle"].met_at == local(2, 20, 10)
    with pytest.raises(ClockRefused, match="stopped already"):
        book.pause(clocks["handle"], local(2, 20, 11))
    book.advance(clocks, facts(), {"review", "dispatched"}, local(3, 2, 10))
    assert clocks["handle"].met_at is None
    assert clocks["handle"].due_at.astimezone(SHANGHAI) == local(3, 9, 10)


def test_a_limit_in_config_is_written_like_staff_write_it() -> None:
    assert str(TimeLimit.parse("15 个工作日")) == "15 working days"


def test_a_clock_on_an_unknown_desk_or_twice_named_is_a_config_error(tmp_path: Path) -> None:
    text = CONFIG.read_text(encoding="utf-8").replace(
        "      hours: intake\n", "      hours: night_desk\n", 1
    )
    text = text.replace("    - name: feedback ", "    - name: callback ", 1)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={})
    paths = [where for where, _ in raised.value.problems]
    assert "clocks.definitions.0.hours" in paths
    assert any(p.endswith(".name") and p.startswith("clocks.definitions.") for p in paths)
