"""The router's settings: departments, categories, severity rules, routing defaults, time
limits and the working calendar, and the tree the router is built from (these sections plus
the organisation). The channels' and workers' trees extend it, so a router component takes
the root settings and reads only what is declared here."""

from __future__ import annotations

from datetime import date, time, timedelta
from enum import StrEnum

from pydantic import Field, field_validator

from ingest.organisation import OrganisationSettings
from ingest.references import KnownKeys
from ingest.sections import Section, env_secret
from router.clock_settings import ClockSettings
from router.rule_language import Negation, Rule
from router.timelimit import TimeLimit, as_elapsed


class DepartmentRole(StrEnum):
    HANDLING = "handling"
    COORDINATING = "coordinating"  # 办公室 / 客服中心: owns unclear and multi-department dispatch
    DISCIPLINE = "discipline"  # 纪检监察室: misconduct complaints, never the accused department


class DepartmentWebhook(Section):
    """The department's own work-order system: each ticket dispatched to the department is
    POSTed there as JSON, signed (ingest/signing.py) with the secret in ``secret_env``."""

    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = None
    secret: str | None = Field(default=None, min_length=16)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    def key(self) -> str | None:
        return env_secret(self.secret_env, self.secret)


class Department(Section):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_en: str
    role: DepartmentRole = DepartmentRole.HANDLING
    email: str | None = Field(
        default=None, max_length=320, description="where urges (催办) and reminders are sent"
    )
    webhook: DepartmentWebhook | None = None


class Category(Section):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_en: str
    department: str
    keywords: tuple[str, ...] = ()
    misconduct: bool = Field(
        default=False, description="staff misconduct (违规违纪): goes to the discipline office"
    )


class Severity(StrEnum):
    GENERAL = "general"
    IMPORTANT = "important"
    MAJOR = "major"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class RoutingSettings(Section):
    fallback_category: str = "other"
    default_severity: Severity = Severity.GENERAL
    invalid_when_anonymous_and_uncontactable: bool = True
    min_body_chars: int = Field(
        default=4, ge=0, description="shorter complaints are not specific enough (无效投诉)"
    )
    negation: Negation = Negation()


class TimeLimits(Section):
    accept: TimeLimit = TimeLimit.parse("1 working day")
    handle: dict[Severity, TimeLimit] = Field(
        default_factory=lambda: {
            Severity.GENERAL: TimeLimit.parse("5 working days"),
            Severity.IMPORTANT: TimeLimit.parse("3 working days"),
            Severity.MAJOR: TimeLimit.parse("1 working day"),
        }
    )
    by_channel: dict[str, TimeLimit] = Field(
        default_factory=dict, description="a channel's own handling limit, e.g. feedback"
    )
    feedback_after_handling: TimeLimit = TimeLimit.parse("1 working day")
    callback_after_closure: TimeLimit = TimeLimit.parse("2 working days")


class YearCalendar(Section):
    """A year's statutory holidays and adjusted working days (调休), as the State Council
    publishes them each autumn; overrides chinesecalendar, which ships only known years."""

    holidays: tuple[date, ...] = ()
    workdays: tuple[date, ...] = ()


class CalendarSettings(Section):
    service_start: time = time(9, 0)
    service_end: time = time(18, 0)
    years: dict[int, YearCalendar] = Field(default_factory=dict)


class RepeatSettings(Section):
    """The repeat-complaint rule (重复投诉), applied by the router to every channel whose
    complainant leaves a phone, an email or an account number."""

    enabled: bool = True
    window: TimeLimit = Field(
        default=TimeLimit.parse("30 days"),
        description="open tickets received, or closed tickets last changed, within this",
    )
    similarity: float = Field(
        default=70.0, ge=0, le=100, description="text similarity (0-100) that makes 'same matter'"
    )
    by_account: bool = Field(
        default=True,
        description="also match the account number (户号), an index lookup",
    )

    @field_validator("window")
    @classmethod
    def _elapsed_time(cls, value: TimeLimit) -> TimeLimit:
        as_elapsed(value)
        return value

    @property
    def window_delta(self) -> timedelta:
        return as_elapsed(self.window)


class BatchArea(Section):
    """A place complaints name (a residential compound, a street, a district): complaints of
    one category naming the same area can be a batch."""

    name: str = Field(min_length=1, max_length=64)
    keywords: tuple[str, ...] = Field(min_length=1)


class BatchSettings(Section):
    """批量投诉: ``min_complainants`` different complainants about one category in one area
    within ``window`` become one batch, every member linked, severity at least ``severity``,
    the coordinating office told once; a later member joins the open batch."""

    enabled: bool = True
    min_complainants: int = Field(default=3, ge=2, le=1000)
    window: TimeLimit = TimeLimit.parse("24 hours")
    severity: Severity = Severity.IMPORTANT
    areas: tuple[BatchArea, ...] = ()

    @field_validator("window")
    @classmethod
    def _elapsed_time(cls, value: TimeLimit) -> TimeLimit:
        as_elapsed(value)
        return value

    @property
    def window_delta(self) -> timedelta:
        return as_elapsed(self.window)


class RouterSettings(Section):
    organisation: OrganisationSettings = OrganisationSettings()
    departments: tuple[Department, ...] = ()
    categories: tuple[Category, ...] = ()
    rules: tuple[Rule, ...] = ()
    routing: RoutingSettings = RoutingSettings()
    time_limits: TimeLimits = TimeLimits()
    calendar: CalendarSettings = CalendarSettings()
    repeats: RepeatSettings = RepeatSettings()
    clocks: ClockSettings = ClockSettings()
    batches: BatchSettings = BatchSettings()

    def department(self, key: str) -> Department:
        for department in self.departments:
            if department.key == key:
                return department
        raise KeyError(key)

    def department_with_role(self, role: DepartmentRole) -> Department:
        for department in self.departments:
            if department.role is role:
                return department
        raise KeyError(role)

    def category(self, key: str) -> Category | None:
        return next((c for c in self.categories if c.key == key), None)

    def known_keys(self) -> KnownKeys:
        return KnownKeys([d.key for d in self.departments], [c.key for c in self.categories])

    def problems(self) -> list[tuple[str, str]]:
        """What pydantic cannot see field by field: names that must point at each other.
        Each tree above adds its own sections' problems to these."""
        problems: list[tuple[str, str]] = []
        department_keys = [d.key for d in self.departments]
        for index, key in enumerate(department_keys):
            if department_keys.index(key) != index:
                problems.append((f"departments.{index}.key", f"duplicate department {key!r}"))
        for role in (DepartmentRole.COORDINATING, DepartmentRole.DISCIPLINE):
            count = sum(d.role is role for d in self.departments)
            if count != 1:
                problems.append(
                    (
                        "departments",
                        f"exactly one department needs role {role.value!r} (found {count})",
                    )
                )
        category_keys = [c.key for c in self.categories]
        known = self.known_keys()
        for index, category in enumerate(self.categories):
            if category_keys.index(category.key) != index:
                problems.append((f"categories.{index}.key", f"duplicate category {category.key!r}"))
            problems.extend(known.department(f"categories.{index}.department", category.department))
        problems.extend(known.category("routing.fallback_category", self.routing.fallback_category))
        problems.extend(self.clocks.problems())
        if self.calendar.service_start >= self.calendar.service_end:
            problems.append(("calendar.service_end", "must be later than calendar.service_start"))
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.organisation.timezone)
        except Exception:
            problems.append(("organisation.timezone", "unknown time zone (use e.g. Asia/Shanghai)"))
        return problems
