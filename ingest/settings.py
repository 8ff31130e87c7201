"""One typed settings tree, loaded and validated once, passed by constructor.

Sources, later wins: ``config.yaml`` (path from ``-c`` or ``SHOULI_CONFIG``), then environment
variables ``SHOULI_<SECTION>__<KEY>`` (``SHOULI_DATABASE__URL``, ``SHOULI_BROKER__URL``).
Every problem is reported as ``path.to.field: message`` by :class:`ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date, time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from channels.email.settings import EmailSettings
from channels.hotline.settings import HotlineSettings
from channels.referral.settings import ReferralSettings
from channels.web.settings import WebSettings
from ingest.draft import Channel
from ingest.errors import Misconfigured
from ingest.references import KnownKeys
from ingest.sections import Section, env_secret
from router.rule_language import Negation, Rule, rule_problems
from router.timelimit import TimeLimit

ENV_PREFIX = "SHOULI_"
DEFAULT_CONFIG = "config.yaml"


class ConfigError(Misconfigured):
    """An invalid configuration; ``problems`` are ``(path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))


class ConfigNotFound(ConfigError):
    """No config file where we looked: the embedded defaults alone describe no organisation,
    so running on them would only fail later with a puzzling message."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        looked_in = path.absolute()
        self.message = (
            f"{path.name} not found (looked in {looked_in}, {source});"
            " give the file with -c FILE or SHOULI_CONFIG"
        )
        super().__init__([(str(path), f"file not found (looked in {looked_in}, {source})")])


class OrganisationSettings(Section):
    name: str = "示例市水务集团"
    name_en: str = "Example City Water Group"
    hotline: str = "96116"
    timezone: str = "Asia/Shanghai"
    number_prefix: str = Field(default="TS", pattern=r"^[A-Z]{1,6}$")
    public_url: str = Field(
        default="",
        description="base of links sent to complainants; empty: the HTTP listener's address "
        "(Settings.public_base_url)",
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("use an http:// or https:// URL, or leave it empty")
        return value


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///./var/shouli.db"
    pool_size: int = Field(default=10, ge=1, le=200)
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class BrokerSettings(Section):
    """No ``url``: the embedded queue in the store. An ``amqp://`` URL: RabbitMQ."""

    url: str | None = None
    prefix: str = Field(default="shouli", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    prefetch: int = Field(default=256, ge=1, le=10_000)
    delivery_limit: int = Field(
        default=5, ge=2, description="deliveries without a settlement before a dead letter"
    )
    confirm_timeout: float = Field(default=15.0, gt=0)
    reconnect_max_delay: float = Field(default=30.0, gt=0)
    visibility_timeout: float = Field(
        default=120.0, gt=0, description="embedded queue: seconds before an unacked message returns"
    )

    @field_validator("url")
    @classmethod
    def _amqp_only(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError(
                "use amqp://user:password@host:5672/vhost, or leave it out for the embedded queue"
            )
        return value


class WorkerSettings(Section):
    batch_size: int = Field(default=200, ge=1, le=5000)
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)


class SlaSettings(Section):
    interval_seconds: float = Field(default=60.0, gt=0)
    escalate_unresolved_after: TimeLimit = TimeLimit.parse("30 days")


class BlobSettings(Section):
    path: Path = Path("var/blobs")


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Every JSON body (hotline calls, ticket events; referral sources set their own
    # max_body_bytes) is cut off here while it streams, so a huge body cannot fill memory.
    max_json_body_bytes: int = Field(default=1_048_576, ge=1024, le=50 * 1_048_576)
    # Nesting refused before json.loads, which recurses per level: 100,000 levels of [[[...
    # would raise RecursionError inside the server. Real documents nest a handful of levels.
    max_json_depth: int = Field(default=64, ge=1, le=200)


# Where to listen is not where to connect: a link to "every address" names the loopback.
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def _listening_url(http: HttpSettings) -> str:
    host = _WILDCARD_HOSTS.get(http.host.strip(), http.host.strip())
    if ":" in host:  # an IPv6 address goes in brackets in a URL (RFC 3986 §3.2.2)
        host = f"[{host}]"
    return f"http://{host}:{http.port}"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: LogFormat = LogFormat.AUTO


class StaffToken(Section):
    """A bearer token for staff APIs. Prefer ``token_env`` so secrets stay out of the file."""

    id: str = Field(min_length=1)
    token: str | None = Field(default=None, min_length=16)
    token_env: str | None = None
    department: str | None = None

    def secret(self) -> str | None:
        return env_secret(self.token_env, self.token)


class AuthSettings(Section):
    staff: tuple[StaffToken, ...] = ()


class DepartmentRole(StrEnum):
    HANDLING = "handling"
    COORDINATING = "coordinating"  # 办公室 / 客服中心: owns unclear and multi-department dispatch
    DISCIPLINE = "discipline"  # 纪检监察室: misconduct complaints, never the accused department


class Department(Section):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_en: str
    role: DepartmentRole = DepartmentRole.HANDLING
    email: str | None = Field(
        default=None, max_length=320, description="where urges (催办) and reminders are sent"
    )


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


class Settings(Section):
    organisation: OrganisationSettings = OrganisationSettings()
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    worker: WorkerSettings = WorkerSettings()
    sla: SlaSettings = SlaSettings()
    blobs: BlobSettings = BlobSettings()
    http: HttpSettings = HttpSettings()
    logging: LoggingSettings = LoggingSettings()
    auth: AuthSettings = AuthSettings()
    departments: tuple[Department, ...] = ()
    categories: tuple[Category, ...] = ()
    rules: tuple[Rule, ...] = ()
    routing: RoutingSettings = RoutingSettings()
    time_limits: TimeLimits = TimeLimits()
    calendar: CalendarSettings = CalendarSettings()
    hotline: HotlineSettings = HotlineSettings()
    referrals: ReferralSettings = ReferralSettings()
    web: WebSettings = WebSettings()
    email: EmailSettings = EmailSettings()

    @property
    def public_base_url(self) -> str:
        """The base of links sent to complainants (progress pages), without a trailing slash:
        ``organisation.public_url``, else this instance's own HTTP listener, so a second
        instance on another port never links to the first one."""
        return self.organisation.public_url.rstrip("/") or _listening_url(self.http)

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


def _cross_reference_problems(settings: Settings) -> list[tuple[str, str]]:
    """What pydantic cannot see field by field: names that must point at each other."""
    problems: list[tuple[str, str]] = []
    department_keys = [d.key for d in settings.departments]
    for index, key in enumerate(department_keys):
        if department_keys.index(key) != index:
            problems.append((f"departments.{index}.key", f"duplicate department {key!r}"))
    for role in (DepartmentRole.COORDINATING, DepartmentRole.DISCIPLINE):
        count = sum(d.role is role for d in settings.departments)
        if count != 1:
            problems.append(
                ("departments", f"exactly one department needs role {role.value!r} (found {count})")
            )
    category_keys = [c.key for c in settings.categories]
    known = KnownKeys(department_keys, category_keys)
    for index, category in enumerate(settings.categories):
        if category_keys.index(category.key) != index:
            problems.append((f"categories.{index}.key", f"duplicate category {category.key!r}"))
        problems.extend(known.department(f"categories.{index}.department", category.department))
    problems.extend(known.category("routing.fallback_category", settings.routing.fallback_category))
    problems.extend(rule_problems(settings.rules, **_rule_references(settings)))
    for index, staff in enumerate(settings.auth.staff):
        if not staff.token and not staff.token_env:
            problems.append((f"auth.staff.{index}", "give token_env (preferred) or token"))
    problems.extend(settings.hotline.cross_reference_problems(known))
    problems.extend(settings.referrals.cross_reference_problems(known))
    problems.extend(settings.email.imap_problems())
    problems.extend(
        settings.referrals.mail_problems(
            referral_mailboxes=[
                f"email.mailboxes.{index}"
                for index, mailbox in enumerate(settings.email.mailboxes)
                if mailbox.referral
            ],
            outbound_configured=settings.email.outbound is not None,
        )
    )
    for index, mailbox in enumerate(settings.email.mailboxes):
        where = f"email.mailboxes.{index}"
        problems.extend(known.department(f"{where}.department", mailbox.department))
        problems.extend(known.category(f"{where}.category", mailbox.category))
        addresses = [m.address for m in settings.email.mailboxes]
        if addresses.index(mailbox.address) != index:
            problems.append((f"{where}.address", f"duplicate mailbox {mailbox.address!r}"))
    calendar = settings.calendar
    if calendar.service_start >= calendar.service_end:
        problems.append(("calendar.service_end", "must be later than calendar.service_start"))
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(settings.organisation.timezone)
    except Exception:
        problems.append(("organisation.timezone", "unknown time zone (use e.g. Asia/Shanghai)"))
    return problems


def _rule_references(settings: Settings) -> dict[str, list[str]]:
    return {
        "departments": [d.key for d in settings.departments],
        "categories": [c.key for c in settings.categories],
        "channels": [c.value for c in Channel],
        "referral_sources": [s.key for s in settings.referrals.sources],
    }


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        target = data
        for part in path[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        target[path[-1]] = _env_value(raw)


def _env_value(raw: str) -> Any:
    # Lists and maps may be given as YAML flow text; everything else stays a string and
    # pydantic converts it, so a URL or a token is never reinterpreted by YAML.
    if raw.strip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw
    return raw


_LOC_NOISE = re.compile(r"^(function-plain|function-after|function-before)\[.*\]$")


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not _LOC_NOISE.match(str(p))]
    return ".".join(parts) or "(top level)"


def _config_path(path: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The file to read and where its name came from (for the message when it is missing)."""
    if path:
        return Path(path), "given with -c"
    if environ.get("SHOULI_CONFIG"):
        return Path(environ["SHOULI_CONFIG"]), "named by SHOULI_CONFIG"
    return Path(DEFAULT_CONFIG), "the current directory"


def _read_config(config_path: Path, source: str) -> dict[str, Any]:
    if not config_path.is_file():
        raise ConfigNotFound(config_path, source)
    try:
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError([(str(config_path), f"not valid YAML at {where}")]) from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError([(str(config_path), "the top level must be a mapping of sections")])
    return loaded or {}


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the configuration; raise :class:`ConfigError` on any problem."""
    environ = os.environ if environ is None else environ
    data = _read_config(*_config_path(path, environ))
    _apply_env(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [(_format_loc(error["loc"]), error["msg"]) for error in exc.errors()]
        ) from exc
    problems = _cross_reference_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings
