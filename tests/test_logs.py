"""Logs never carry a full phone number, email address or complaint text."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ingest.access_log import AccessLog
from ingest.logs import LogFormat, LoggingSettings, configure_logging, redact_text
from tests.support_http import api_client


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give it back to the other tests."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hook
    logging.captureWarnings(False)


def json_lines(monkeypatch: pytest.MonkeyPatch, level: str = "info") -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging(LoggingSettings(format=LogFormat.JSON, level=level))  # type: ignore[arg-type]
    return buffer


def lines_of(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_phone_numbers_and_addresses_are_masked_inside_any_text() -> None:
    text = redact_text("call 13812345678 or +86 755 8888 1234, mail zhang.san@example.cn")
    assert "13812345678" not in text and "88881234" not in text.replace(" ", "")
    assert "zhang.san@example.cn" not in text
    assert "138****78" in text and "z***@example.cn" in text


def test_a_json_log_line_masks_personal_fields_by_name(monkeypatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging(LoggingSettings(format=LogFormat.JSON))
    structlog.get_logger("t").info(
        "ticket_created",
        number="TS202611-000001",
        body="我的电话是13812345678，水管爆了",
        name="张三丰",
        email="zhang@example.cn",
        detail={"phone": "+8613812345678", "due_at": "2026-11-30T02:21:04+00:00"},
    )
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["number"] == "TS202611-000001"
    assert line["timestamp"].startswith("20") and "*" not in line["timestamp"]
    assert line["body"] == "<21 chars>"
    assert line["name"] == "张**"
    assert line["email"] == "z***@example.cn"
    assert "13812345678" not in json.dumps(line, ensure_ascii=False)
    assert line["detail"]["due_at"] == "2026-11-30T02:21:04+00:00"


def test_library_lines_are_json_with_the_rendered_message_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = json_lines(monkeypatch)
    # As aiosmtpd logs an envelope: %-formatted, the address only in the rendered text.
    logging.getLogger("mail.log").info("%r sender: %s", ("10.0.0.1", 25), "zhang.san@example.cn")
    logging.getLogger("mail.log").info("%r >> %r", ("10.0.0.1", 25), b"MAIL FROM:<li@example.cn>")
    try:
        raise ValueError("no contact for +86 138 1234 5678")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("caller 13812345678 is odd", UserWarning, stacklevel=1)
    # As httpx logs a request: the URL's query percent-encoded, + for space.
    logging.getLogger("httpx").info(
        'HTTP Request: GET %s "%s"',
        "http://t/p?contact=%2B86+138+1234+5678&to=li%40example.cn&lang=en",
        "HTTP/1.1 200 OK",
    )
    logging.getLogger("aiormq.connection").info("frame noise")  # quiet below WARNING
    sender, command, failure, warned, request = lines_of(buffer)
    assert sender["logger"] == "mail.log" and sender["level"] == "info"
    assert sender["event"] == "('10.0.0.1', 25) sender: z***@example.cn"
    assert command["event"] == "('10.0.0.1', 25) >> b'MAIL FROM:<l***@example.cn>'"
    assert failure["logger"] == "uvicorn.error" and failure["level"] == "error"
    assert "ValueError" in failure["exception"] and "1234 5678" not in failure["exception"]
    assert warned["logger"] == "py.warnings" and "13812345678" not in warned["event"]
    assert request["event"].startswith(
        "HTTP Request: GET http://t/p?contact=861****78&to=l***@example.cn&lang=en "
    )
    assert all(line["timestamp"] for line in (sender, command, failure, warned, request))


def test_our_debug_lines_pass_at_debug_and_libraries_stay_at_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = json_lines(monkeypatch, level="debug")
    structlog.get_logger("workers.router_worker").debug("claimed", batch=3)
    logging.getLogger("sqlalchemy.engine").debug("SELECT 1")
    assert [line["event"] for line in lines_of(buffer)] == ["claimed"]


def test_configuring_twice_writes_each_line_once(monkeypatch: pytest.MonkeyPatch) -> None:
    json_lines(monkeypatch)
    buffer = json_lines(monkeypatch)
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    assert len(lines_of(buffer)) == 1


async def _echo(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok", status_code=202)


async def _boom(_request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


async def test_the_access_log_has_one_masked_line_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = json_lines(monkeypatch)
    app = AccessLog(
        Starlette(
            routes=[
                Route("/api/complaints/{number}/progress", _echo),
                Route("/progress/{token}", _echo),
                Route("/boom", _boom),
            ]
        )
    )
    async with api_client(app, base_url="http://t", raise_app_exceptions=False) as client:
        await client.get(
            "/api/complaints/TS202611-000001/progress",
            params={"contact": "+86 138 1234 5678", "lang": "en"},
        )
        await client.get("/api/complaints/TS202611-000001/progress?contact=li%40example.cn")
        await client.get("/progress/Zm9vYmFyLXNlY3JldC10b2tlbg")
        await client.get("/boom")
    # (The test client's own httpx lines are in the buffer too: only the server's count.)
    access = [line for line in lines_of(buffer) if line["event"] == "http_request"]
    text = json.dumps(access, ensure_ascii=False)
    by_phone, by_email, link, boom = access
    assert by_phone["method"] == "GET" and by_phone["status"] == 202
    assert by_phone["path"] == "/api/complaints/TS202611-000001/progress"
    assert by_phone["query"]["lang"] == "en" and "****" in by_phone["query"]["contact"]
    assert by_email["query"] == {"contact": "l***@example.cn"}
    assert link["path"] == "/progress/***" and "Zm9vYmFyLXNlY3JldC10b2tlbg" not in text
    assert boom["status"] == 500
    assert all(isinstance(line["duration_ms"], float) for line in access)
    assert "13812345678" not in text.replace(" ", "") and "li@example.cn" not in text
    assert not any("client" in line for line in access)
