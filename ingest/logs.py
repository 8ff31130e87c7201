"""Structured logs (structlog): JSON when not on a terminal, never a full phone number,
email address or complaint text.

Redaction is a processor, so it applies to every line whatever the call site passed:
known personal fields are masked by name, and any phone- or address-shaped text in any
other string value is masked by pattern. Libraries' stdlib records (uvicorn, aiosmtpd's
``mail.log``, aio-pika, ...) are rendered by the same processors on the one root handler, so
the process writes one stream and their %-formatted messages are masked as text too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, TextIO
from urllib.parse import quote_plus, unquote_plus

import structlog

from ingest.sections import Section


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: LogFormat = LogFormat.AUTO


# Fields whose whole value is personal or complaint text: only their length is logged.
_TEXT_FIELDS = frozenset(
    {"body", "subject", "text", "summary", "request", "outcome", "address", "content"}
)
_NAME_FIELDS = frozenset({"name", "complainant", "complainant_name"})
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Runs of 7+ digits, optionally with +, spaces or dashes inside: phone numbers, IDs, accounts.
# Not after a letter or digit, so ticket numbers like TS202611-000123 stay readable.
_DIGITS = re.compile(r"(?<![A-Za-z0-9])\+?\d[\d\s-]{5,}\d")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _mask_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) < 7 or _DATE.match(match.group(0)):
        return match.group(0)
    return f"{digits[:3]}****{digits[-2:]}"


def _mask_plain(value: str) -> str:
    value = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
    return _DIGITS.sub(_mask_digits, value)


# A query value in a URL a library logs (httpx: "GET http://h/p?contact=%2B86+138+1234+5678"):
# percent-encoding and + for space hide an address or a number from the patterns above.
_QUERY_VALUE = re.compile(r"(?<=[?&])([^=\s&#?]+=)([^\s&#\"'<>]+)")


def _mask_query_value(match: re.Match[str]) -> str:
    raw = match.group(2)
    if "%" not in raw and "+" not in raw:
        return match.group(0)
    decoded = unquote_plus(raw)
    masked = _mask_plain(decoded)
    return match.group(1) + (raw if masked == decoded else quote_plus(masked, safe="*@"))


def redact_text(value: str) -> str:
    if "=" in value:
        value = _QUERY_VALUE.sub(_mask_query_value, value)
    return _mask_plain(value)


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _TEXT_FIELDS:
            return f"<{len(value)} chars>"
        if key in _NAME_FIELDS:
            return (value[:1] + "*" * max(len(value) - 1, 1)) if value else value
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


# The event is redacted too: for a library's line it is the rendered %-message, e.g.
# aiosmtpd's "('1.2.3.4', 5) sender: someone@example.cn".
_PASS_THROUGH = frozenset({"timestamp", "level", "logger"})


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {
        key: value if key in _PASS_THROUGH else _redact_value(key, value)
        for key, value in event_dict.items()
    }


# Loggers of our own code: they log at the configured level, debug included. Libraries log
# at INFO and above whatever the setting (their DEBUG is protocol frames and SQL).
_OWN_PACKAGES = ("ingest", "channels", "workers", "store", "router", "bench")
_QUIET = ("aiormq", "aio_pika", "alembic.runtime.migration", "jieba")


class _OneStream(logging.StreamHandler[TextIO]):
    """The root logger's handler: every line of the process, ours and the libraries'."""


def configure_logging(settings: LoggingSettings) -> None:
    """One stream on stderr: structlog's lines and every stdlib logger's (uvicorn, aiosmtpd,
    aio-pika, sqlalchemy, asyncio, warnings) go through the same processors, so each line
    has the same shape (JSON or console) and the same masking."""
    level = getattr(logging, settings.level.upper())
    as_json = settings.format is LogFormat.JSON or (
        settings.format is LogFormat.AUTO and not sys.stderr.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    # Run for our lines when they are logged and for a library's record when it is formatted.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = _OneStream(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Tracebacks become a string here, so redact masks them like any text.
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    # Replace only our own earlier handler (configure twice, tests): others may be a test
    # runner's capture. A real process has none, so this is the only output.
    for old in [h for h in root.handlers if isinstance(h, _OneStream)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.INFO))
    for name in _OWN_PACKAGES:
        logging.getLogger(name).setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # warnings.warn() and a crash's traceback would otherwise be plain text on stderr.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)
        return
    structlog.get_logger(__name__).critical("uncaught_exception", exc_info=(kind, error, traceback))
