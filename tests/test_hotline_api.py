"""POST /api/calls: agent tokens, field validation, phone numbers, on-the-spot closure and
service hours, against the real store and queue (both deployments where it matters)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, select

from ingest.app.cli import main
from store.models import Complainant, InboundItem, IntakeNumber, Ticket
from tests.stack import CONFIG, Stack, notes, ticket_of
from tests.support_http import AGENT_TOKENS, STAFF_TOKEN, api_client

pytestmark = pytest.mark.usefixtures("agent_tokens")


def call(**fields: Any) -> dict[str, Any]:
    """A realistic call record; override any field."""
    started = datetime.now(UTC) - timedelta(minutes=6)
    record: dict[str, Any] = {
        "call_id": f"CALL-{uuid.uuid4().hex[:12]}",
        "caller_number": "138 1234 5678",
        "hotline_number": "96116",
        "agent_id": "1001",
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(seconds=312)).isoformat(),
        "direction": "inbound",
        "recording_ref": "REC-20261123-0001",
        "ivr_path": "1-3-2",
        "category": "supply_outage",
        "summary": "光明小区5栋从昨天起停水，没有收到停水通知",
        "request": "尽快恢复供水并说明原因",
        "complainant_name": "张先生",
        "complainant_address": "示例市光明小区5栋2单元",
        "account_number": "31000123",
        "outcome": "dispatch",
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


async def complainant_of(stack: Stack, number: str) -> Complainant:
    async with stack.rt.database.sessions() as session:
        row = (
            await session.execute(
                select(Complainant)
                .join(Ticket, Ticket.complainant_id == Complainant.id)  # type: ignore[arg-type]
                .where(Ticket.number == number)  # type: ignore[arg-type]
            )
        ).scalar_one()
        return row


async def test_a_call_becomes_a_phone_ticket_with_the_agent_as_first_contact(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    record = call()
    response = await agent_api.post("/api/calls", json=record)
    assert response.status_code == 201, response.text
    number = response.json()["number"]
    assert response.json() == {"number": number}
    assert await stack.drain() == 1

    ticket = await ticket_of(stack, number)
    assert ticket["channel"] == "phone"
    assert ticket["source_key"] == record["call_id"]
    assert ticket["first_contact"] == {
        "kind": "agent",
        "id": "1001",
        "department": "customer_service",
    }
    assert ticket["category"] == "supply_outage" and ticket["department"] == "supply_dispatch"
    assert ticket["status"] == "dispatched"
    assert ticket["complainant"]["phone"] == "+8613812345678"
    assert ticket["complainant"]["name"] == "张先生" and ticket["complainant"]["anonymous"] is False
    assert ticket["subject"] == record["summary"]
    assert "诉求：尽快恢复供水并说明原因" in ticket["body"]
    assert "户号：31000123" in ticket["body"]
    assert "call: inbound, line 96116, 312 s, IVR 1-3-2, recording REC-20261123-0001" in notes(
        ticket
    )
    complainant = await complainant_of(stack, number)
    assert complainant.phone_raw == "138 1234 5678", "the original is kept as given"
    async with stack.rt.database.sessions() as session:
        raw = (
            await session.execute(select(Ticket.raw_sha256).where(Ticket.number == number))  # type: ignore[arg-type]
        ).scalar_one()
    assert raw and stack.rt.blobs.exists(raw), "the call record as received is kept"


async def test_the_same_call_id_again_answers_200_with_the_same_number(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    record = call()
    first = await agent_api.post("/api/calls", json=record)
    again = await agent_api.post("/api/calls", json=record)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert await stack.drain() == 1
    after = await agent_api.post("/api/calls", json=record)
    assert (after.status_code, after.json()) == (200, first.json())
    assert await stack.ticket_count() == 1


async def test_calls_need_an_agent_token(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    cases = {
        "": "unauthenticated",
        "Bearer ": "unauthenticated",
        f"Basic {AGENT_TOKENS['1001']}": "unauthenticated",
        "Bearer not-a-token-of-anyone-at-all": "invalid_token",
        # A staff token is for the ticket API; it does not make its holder an agent.
        f"Bearer {STAFF_TOKEN}": "invalid_token",
    }
    for header, code in cases.items():
        response = await embedded_agent_api.post(
            "/api/calls", json=call(), headers={"Authorization": header}
        )
        assert response.status_code == 401, (header, response.text)
        assert response.json()["error"]["code"] == code
        assert response.headers["www-authenticate"] == "Bearer"
    assert await _reserved(embedded_stack) == 0


async def test_an_agent_token_cannot_file_a_call_as_another_agent(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    as_other = await embedded_agent_api.post(
        "/api/calls",
        json=call(agent_id="1001"),
        headers={"Authorization": f"Bearer {AGENT_TOKENS['1002']}"},
    )
    assert as_other.status_code == 403
    error = as_other.json()["error"]
    assert error["code"] == "agent_mismatch" and "agent_id" in error["fields"]
    assert await _reserved(embedded_stack) == 0, "nothing is stored for a refused call"

    own = await embedded_agent_api.post(
        "/api/calls",
        json=call(agent_id=None),
        headers={"Authorization": f"Bearer {AGENT_TOKENS['1002']}"},
    )
    assert own.status_code == 201, "without agent_id the call is filed as the token's agent"
    assert await embedded_stack.drain() == 1
    ticket = await ticket_of(embedded_stack, own.json()["number"])
    assert ticket["first_contact"]["id"] == "1002"


async def test_invalid_fields_are_422_and_each_is_named(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    shape = await embedded_agent_api.post(
        "/api/calls",
        json=call(
            summary=None,
            started_at="2026-11-23 14:05:09",  # no UTC offset: ambiguous
            direction="sideways",
            caller_number="1" * 101,
            colour="blue",
        ),
    )
    assert shape.status_code == 422
    error = shape.json()["error"]
    assert error["code"] == "invalid_request"
    assert set(error["fields"]) == {"summary", "started_at", "direction", "caller_number", "colour"}

    started = datetime.now(UTC) - timedelta(hours=1)
    meaning = await embedded_agent_api.post(
        "/api/calls",
        json=call(
            started_at=started.isoformat(),
            ended_at=(started - timedelta(minutes=1)).isoformat(),
            category="weather",
            outcome="resolved",
        ),
    )
    assert meaning.status_code == 422
    fields = meaning.json()["error"]["fields"]
    assert set(fields) == {"ended_at", "category", "resolution"}
    assert "supply_outage" in fields["category"], "the known categories are listed"

    future = await embedded_agent_api.post(
        "/api/calls", json=call(started_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    )
    assert future.status_code == 422 and "started_at" in future.json()["error"]["fields"]

    not_json = await embedded_agent_api.post(
        "/api/calls", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    assert await _reserved(embedded_stack) == 0, "nothing half-stored"


# caller number as the agent's system sends it -> (E.164, anonymous, a note that must appear)
PHONES: dict[str, tuple[str | None, bool, str | None]] = {
    "+86 138-1234-5678": ("+8613812345678", False, None),
    "０１０－１２３４５６７８": ("+861012345678", False, None),  # full-width, Beijing landline
    "0086 755 8888 1234 转 808": ("+8675588881234", False, None),
    "(0755) 8888-1234": ("+8675588881234", False, None),
    "400-810-8888": ("+864008108888", False, None),
    "匿名": (None, True, "caller_withheld"),
    "": (None, True, "caller_withheld"),
    "12345": (None, False, "phone_service_number"),
    "87654321": (None, False, "phone_no_area_code"),
    "1381234567": (None, False, "phone_invalid: impossible_length, too_short"),
}

MATTERS = [
    ("water_quality", "自来水发黄有铁锈味"),
    ("billing", "水表读数与账单不符"),
    ("pipe_repair", "楼下路面冒水很久"),
    ("installation", "新房报装申请一直没人受理"),
    ("water_pressure", "高层住户水压不足"),
    ("service_attitude", "营业厅工作人员态度恶劣"),
    ("supply_outage", "整栋楼突然停水"),
    ("billing", "滞纳金计算有误"),
    ("water_quality", "烧开后水垢特别多"),
    ("pipe_repair", "井盖松动有安全隐患"),
]


async def test_caller_numbers_are_stored_as_e164_with_the_original_kept(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    numbers: dict[str, str] = {}
    for raw, (category, summary) in zip(PHONES, MATTERS, strict=True):
        # Different matters, so none is taken for a repeat of another (without the shared
        # request line, which alone makes two short summaries read alike).
        response = await embedded_agent_api.post(
            "/api/calls",
            json=call(
                caller_number=raw,
                account_number=None,
                complainant_name=None,
                category=category,
                summary=summary,
                request=None,
            ),
        )
        assert response.status_code == 201, (raw, response.text)
        numbers[raw] = response.json()["number"]
    assert await embedded_stack.drain() == len(PHONES)
    for raw, (e164, anonymous, note) in PHONES.items():
        ticket = await ticket_of(embedded_stack, numbers[raw])
        complainant = await complainant_of(embedded_stack, numbers[raw])
        assert complainant.phone == e164, raw
        assert complainant.anonymous is anonymous, raw
        if not anonymous:
            assert complainant.phone_raw == raw, "kept exactly as given, never 'fixed'"
        if note:
            assert note in notes(ticket), (raw, notes(ticket))
        assert not any(raw and raw in n for n in notes(ticket) if len(raw) > 5), (
            "no digits in notes"
        )


async def test_a_withheld_caller_who_gives_a_callback_number_is_reachable_on_it(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    response = await embedded_agent_api.post(
        "/api/calls", json=call(caller_number="unknown", contact_number="139-0000-1111")
    )
    number = response.json()["number"]
    assert await embedded_stack.drain() == 1
    ticket = await ticket_of(embedded_stack, number)
    assert ticket["complainant"]["phone"] == "+8613900001111"
    assert ticket["complainant"]["anonymous"] is False
    assert "caller_withheld" in notes(ticket)


async def test_a_call_resolved_on_the_spot_is_closed_with_its_scripted_answer(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    response = await agent_api.post(
        "/api/calls",
        json=call(
            category="billing",
            summary="询问本月水费为什么比上月高",
            outcome="resolved",
            resolution="已解释阶梯水价，客户表示理解",
            answer_code="GF-017",
        ),
    )
    assert response.status_code == 201
    assert await stack.drain() == 1
    ticket = await ticket_of(stack, response.json()["number"])
    assert ticket["status"] == "closed"
    closed = next(e for e in ticket["events"] if e["kind"] == "closed_on_contact")
    assert closed["actor"] == "agent:1001"
    assert closed["detail"]["answer_code"] == "GF-017"
    assert closed["detail"]["outcome"] == "已解释阶梯水价，客户表示理解"


async def test_an_after_hours_call_is_flagged_and_its_clock_starts_at_the_next_working_period(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    # Saturday 2025-06-14 22:30 in Shanghai, the night line; the next working period is
    # Monday 09:00. A general complaint has 5 working days: due Friday 2025-06-20 18:00.
    night = await embedded_agent_api.post(
        "/api/calls",
        json=call(started_at="2025-06-14T22:30:00+08:00", ended_at=None, account_number=None),
    )
    # Monday 2025-06-16 10:00, in service hours: due Monday 2025-06-23 10:00.
    day = await embedded_agent_api.post(
        "/api/calls",
        json=call(
            started_at="2025-06-16T10:00:00+08:00",
            ended_at=None,
            caller_number="13900002222",
            account_number=None,
        ),
    )
    assert (night.status_code, day.status_code) == (201, 201)
    assert await embedded_stack.drain() == 2
    night_ticket = await ticket_of(embedded_stack, night.json()["number"])
    day_ticket = await ticket_of(embedded_stack, day.json()["number"])
    assert "after_hours" in notes(night_ticket)
    assert "after_hours" not in notes(day_ticket)
    assert night_ticket["severity"] == "general"
    assert night_ticket["received_at"] == "2025-06-14T14:30:00Z", "stored in UTC"
    assert night_ticket["due_at"] == "2025-06-20T10:00:00Z"
    assert day_ticket["due_at"] == "2025-06-23T02:00:00Z"
    assert night.json()["number"].startswith("TS202506-")


async def test_a_call_is_answered_503_while_the_queue_is_down_and_the_retry_keeps_its_number(
    distributed_stack: Stack,
) -> None:
    # Distributed only: the embedded queue is the store itself, down only with the store.
    stack = distributed_stack
    async with api_client(stack.rt, token=AGENT_TOKENS["1001"]) as agent_api:
        record = call()
        await stack.rt.queue.close()
        try:
            down = await agent_api.post("/api/calls", json=record)
        finally:
            await stack.rt.queue.connect()
        assert down.status_code == 503
        assert down.headers["retry-after"] and down.json()["error"]["code"] == "queue_unavailable"
        retry = await agent_api.post("/api/calls", json=record)
        assert retry.status_code == 200
        assert await stack.drain() == 1
        ticket = await ticket_of(stack, retry.json()["number"])
        assert ticket["source_key"] == record["call_id"]


async def test_the_api_description_documents_post_api_calls(
    embedded_agent_api: httpx.AsyncClient,
) -> None:
    spec = (await embedded_agent_api.get("/openapi.json")).json()
    operation = spec["paths"]["/api/calls"]["post"]
    assert {"200", "201", "401", "403", "422", "503"} <= set(operation["responses"])
    schema = spec["components"]["schemas"]["CallRecord"]
    assert {"call_id", "caller_number", "started_at", "summary", "outcome"} <= set(
        schema["properties"]
    )


async def _reserved(stack: Stack) -> int:
    async with stack.rt.database.sessions() as session:
        reserved = (
            await session.execute(select(func.count()).select_from(IntakeNumber))
        ).scalar_one()
        merged = (await session.execute(select(func.count()).select_from(InboundItem))).scalar_one()
    return int(reserved) + int(merged)


def _check_config(tmp_path: Path, data: dict[str, Any]) -> tuple[int, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)], env={})
    return result.exit_code, result.output.strip().splitlines()


def test_hotline_config_mistakes_are_reported_by_their_path(tmp_path: Path) -> None:
    shipped = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert _check_config(tmp_path, shipped)[0] == 0

    crossed = copy.deepcopy(shipped)
    hotline = crossed["hotline"]
    hotline["agents"][0]["department"] = "night_shift"
    del hotline["agents"][1]["token_env"]
    hotline["agents"].append({"id": "1001", "department": "billing", "token_env": "X"})
    hotline["vendors"]["callcentre"]["category_values"]["咨询"] = "consulting"
    hotline["default_vendor"] = "acme"
    code, lines = _check_config(tmp_path, crossed)
    assert code == 1
    assert any(
        line.startswith("hotline.agents.0.department: unknown department 'night_shift'")
        for line in lines
    )
    assert "hotline.agents.1: give token_env (preferred) or token" in lines
    assert "hotline.agents.2.id: duplicate agent '1001'" in lines
    assert any(
        line.startswith("hotline.vendors.callcentre.category_values.咨询: unknown category")
        for line in lines
    )
    assert any(line.startswith("hotline.default_vendor: unknown vendor 'acme'") for line in lines)

    fields = copy.deepcopy(shipped)
    fields["hotline"]["default_region"] = "XX"
    fields["repeats"]["window"] = "2 working days"
    del fields["hotline"]["vendors"]["callcentre"]["columns"]["started_at"]
    fields["hotline"]["vendors"]["callcentre"]["columns"]["colour"] = "颜色"
    code, lines = _check_config(tmp_path, fields)
    assert code == 1
    text = "\n".join(lines)
    assert "hotline.default_region: Value error, unknown region 'XX'" in text
    assert "repeats.window: Value error, give the window in days" in text
    assert "hotline.vendors.callcentre.columns: Value error, unknown record field(s) colour" in text
