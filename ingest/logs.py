"""Structured logs (structlog): JSON when not on a terminal, never a full phone number,
email address or complaint text.

Redaction is a processor, so it applies to every line whatever the call site passed:
known personal fields are masked by name, and any phone- or address-shaped text in any
other string value is masked by pattern.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ingest.settings import LogFormat, LoggingSettings

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


def redact_text(value: str) -> str:
    value = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
    return _DIGITS.sub(_mask_digits, value)


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


_PASS_THROUGH = frozenset({"timestamp", "event", "level", "logger"})


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {
        key: value if key in _PASS_THROUGH else _redact_value(key, value)
        for key, value in event_dict.items()
    }


def configure_logging(settings: LoggingSettings) -> None:
    level = getattr(logging, settings.level.upper())
    as_json = settings.format is LogFormat.JSON or (
        settings.format is LogFormat.AUTO and not sys.stderr.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that use stdlib logging (uvicorn, aio-pika, alembic) go to stderr too.
    logging.basicConfig(
        level=max(level, logging.INFO),
        stream=sys.stderr,
        format="%(levelname)s %(name)s %(message)s",
    )
    for noisy in ("aiormq", "aio_pika", "alembic.runtime.migration", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
