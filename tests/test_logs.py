"""Logs never carry a full phone number, email address or complaint text."""

from __future__ import annotations

import io
import json
import sys

import structlog

from ingest.logs import configure_logging, redact_text
from ingest.settings import LogFormat, LoggingSettings


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
    structlog.reset_defaults()
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["number"] == "TS202611-000001"
    assert line["timestamp"].startswith("20") and "*" not in line["timestamp"]
    assert line["body"] == "<21 chars>"
    assert line["name"] == "张**"
    assert line["email"] == "z***@example.cn"
    assert "13812345678" not in json.dumps(line, ensure_ascii=False)
    assert line["detail"]["due_at"] == "2026-11-30T02:21:04+00:00"
