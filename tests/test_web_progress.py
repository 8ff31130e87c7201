"""Progress inquiry: by number + contact or by the link, the public timeline only, and the
same answer in the same time for a wrong number and a wrong contact."""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from channels.intake import accept
from tests.stack import ZHANG, Stack, make_draft, ticket_of
from tests.support_http import STAFF, api_client
from tests.test_web_support import (
    complaint_fields,
    feedback_fields,
)


async def submit(client: httpx.AsyncClient, **fields: str) -> dict[str, Any]:
    response = await client.post("/api/complaints", data=complaint_fields(**fields))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def progress(client: httpx.AsyncClient, number: str, contact: str) -> httpx.Response:
    return await client.get(f"/api/complaints/{number}/progress", params={"contact": contact})


async def test_before_the_router_has_run_the_inquiry_shows_received_and_when_acceptance_is_due(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as client:
        answer = await submit(client)
        response = await progress(client, answer["number"], "13812345678")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "received" and body["status_label"] == "已收到，待受理"
    steps = [s["step"] for s in body["timeline"]]
    assert steps == ["received", "expected_accept"]
    expected = body["timeline"][1]
    promised = datetime.fromisoformat(answer["accept_by"].replace("Z", "+00:00"))
    shown = datetime.fromisoformat(expected["at"].replace("Z", "+00:00"))
    assert abs((shown - promised).total_seconds()) < 5, "the page and the answer agree"
    assert expected["label"].startswith("预计") and expected["label_en"].startswith(
        "Review and acceptance expected by"
    )


async def test_the_public_timeline_shows_department_due_date_and_result_but_nothing_internal(
    stack: Stack,
) -> None:
    async with api_client(stack.rt) as client:
        answer = await submit(client, category="water_quality")
        number = answer["number"]
        assert await stack.drain() == 1
        dispatched = (await progress(client, number, "13812345678")).json()
        ticket = await ticket_of(stack, number)
        assert dispatched["status"] == "dispatched"
        assert dispatched["due_at"] == ticket["due_at"] is not None
        assert dispatched["department"] == {
            "key": "water_quality_centre",
            "name": "水质监测中心",
            "name_en": "Water Quality Monitoring Centre",
        }
        for kind, detail in (
            ("note", {"text": "内部备注：投诉涉及抄表员王五，注意保密"}),
            ("handle", {"result": "<b>已更换</b>入户水管并冲洗管道，水质复检合格"}),
            ("feedback", {"channel": "sms"}),
        ):
            step = await client.post(
                f"/api/tickets/{number}/events",
                json={"kind": kind, "detail": detail},
                headers=STAFF,
            )
            assert step.status_code == 201, step.text
        done = await progress(client, number, "+86 138 1234 5678")
        page = await client.get(answer["progress_url"].removeprefix("http://127.0.0.1:8000"))
    body = done.json()
    assert [s["step"] for s in body["timeline"]] == [
        "received",
        "accepted",
        "dispatched",
        "handled",
        "feedback",
    ]
    assert body["timeline"][2]["label"] == "已派至水质监测中心办理"
    assert body["timeline"][2]["label_en"] == "Passed to Water Quality Monitoring Centre"
    assert body["status"] == "feedback_given" and body["due_at"] is None
    assert body["result"] == "<b>已更换</b>入户水管并冲洗管道，水质复检合格"
    text = json.dumps(body, ensure_ascii=False)
    for secret in ("王五", "内部备注", "staff", "dev-officer", "router", "rule", "actor", "note"):
        assert secret not in text, secret
    assert page.status_code == 200
    assert "&lt;b&gt;已更换&lt;/b&gt;入户水管" in page.text and "<b>已更换" not in page.text
    assert "王五" not in page.text and "已派至水质监测中心办理" in page.text


async def test_a_wrong_number_and_a_wrong_contact_get_the_same_answer_in_the_same_time(
    embedded_stack: Stack,
) -> None:
    floor = embedded_stack.settings.web.progress_floor_seconds
    async with api_client(embedded_stack.rt) as client:
        number = (await submit(client))["number"]
        wrong_year = "TS199901-000001"
        asks = {
            "wrong contact": (number, "13900000000"),
            "wrong number": (wrong_year, "13812345678"),
            "malformed number": ("not-a-number", "13812345678"),
            "malformed contact": (number, "nobody"),
        }
        answers: dict[str, list[tuple[int, str]]] = {name: [] for name in asks}
        times: dict[str, list[float]] = {name: [] for name in asks}
        for _ in range(4):
            for name, (asked, contact) in asks.items():
                started = time.perf_counter()
                response = await progress(client, asked, contact)
                times[name].append(time.perf_counter() - started)
                answers[name].append((response.status_code, response.text))
        right = await progress(client, number, "13812345678")
    assert right.status_code == 200
    seen = {answer for replies in answers.values() for answer in replies}
    assert seen == {
        (
            404,
            '{"error":{"code":"not_found","message":"no complaint with this number and '
            'contact","fields":{}}}',
        )
    }
    medians = {name: statistics.median(values) for name, values in times.items()}
    assert min(medians.values()) >= floor
    assert max(medians.values()) - min(medians.values()) < 0.05, medians


@pytest.mark.parametrize(
    ("given", "asked"),
    [
        ("13812345678", "+86 138-1234-5678"),
        ("+8613812345678", "１３８１２３４５６７８"),
        ("Li.Si@Example.CN", "li.si@example.cn"),
    ],
)
async def test_the_contact_matches_however_it_is_written(
    embedded_stack: Stack, given: str, asked: str
) -> None:
    async with api_client(embedded_stack.rt) as client:
        number = (await submit(client, contact=given))["number"]
        assert (await progress(client, number, asked)).status_code == 200
        assert (await progress(client, number.lower(), asked)).status_code == 200


async def test_the_progress_link_opens_the_timeline_without_the_contact_and_a_bad_link_does_not(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as client:
        answer = await submit(client)
        token = answer["progress_url"].rsplit("/", 1)[1]
        assert len(token) >= 32
        api = await client.get(f"/api/progress/{token}")
        page = await client.get(f"/progress/{token}?lang=en")
        bad_api = await client.get(f"/api/progress/{token[:-4]}AAAA")
        bad_page = await client.get("/progress/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert api.status_code == 200 and api.json()["number"] == answer["number"]
    assert page.status_code == 200 and answer["number"] in page.text
    assert "Received, awaiting acceptance" in page.text
    assert f'href="/progress/{token}?lang=zh"' in page.text
    assert bad_api.status_code == 404 and bad_page.status_code == 404
    assert "此进度链接无效" in bad_page.text


async def test_the_inquiry_form_on_the_page_answers_with_the_timeline_or_asks_again(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as client:
        number = (await submit(client))["number"]
        found = await client.post(
            "/progress",
            data={"number": number, "contact": "13812345678", "lang": "zh"},
            headers={"Accept": "text/html"},
        )
        missing = await client.post(
            "/progress",
            data={"number": number, "contact": "13900000000", "lang": "en"},
            headers={"Accept": "text/html"},
        )
    assert found.status_code == 200
    assert f'id="complaint-number">{number}<' in found.text and "已收到，待受理" in found.text
    assert missing.status_code == 404
    assert "No complaint matches this number and contact" in missing.text
    assert f'value="{number}"' in missing.text and "13900000000" not in missing.text


async def test_a_ticket_from_another_channel_is_followed_by_number_and_the_complainants_contact(
    embedded_stack: Stack,
) -> None:
    accepted = await accept(embedded_stack.rt, make_draft(complainant=ZHANG))
    assert await embedded_stack.drain() == 1
    async with api_client(embedded_stack.rt) as client:
        by_phone = await progress(client, accepted.number, "138 1234 5678")
        by_email = await progress(client, accepted.number, "ZHANG@example.cn")
        other = await progress(client, accepted.number, "13900000000")
    assert by_phone.status_code == 200 and by_phone.json()["status"] == "dispatched"
    assert by_email.status_code == 200
    assert other.status_code == 404


async def test_anonymous_feedback_is_followed_only_by_its_link(embedded_stack: Stack) -> None:
    async with api_client(embedded_stack.rt) as client:
        answer = (await client.post("/api/feedback", data=feedback_fields())).json()
        token = answer["progress_url"].rsplit("/", 1)[1]
        assert (await client.get(f"/api/progress/{token}")).status_code == 200
        assert (await progress(client, answer["number"], "13812345678")).status_code == 404
