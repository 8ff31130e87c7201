"""POST /api/complaints and /api/feedback: each field rule, as other systems see it (JSON)
and as a browser sees it (the form again, the message beside the field)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from tests.stack import Stack
from tests.support_http import api_client
from tests.test_web_support import (
    complaint_fields,
    feedback_fields,
    fixture,
    local_input,
    reserved_numbers,
    shared_app_fixture,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


shared = shared_app_fixture("web-forms")


@pytest_asyncio.fixture(loop_scope="module")
async def client(shared: tuple[Stack, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared[1]) as opened:
        yield opened


async def refused(
    client: httpx.AsyncClient, stack: Stack, path: str, data: dict[str, str]
) -> dict[str, str]:
    """Post, expect 422, check nothing was reserved or queued, return the field messages."""
    before = await reserved_numbers(stack)
    response = await client.post(
        path, data=data, files=[("evidence", ("", b"", "application/octet-stream"))]
    )
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert body["code"] == "invalid_request"
    assert await reserved_numbers(stack) == before
    return body["fields"]


async def test_a_complete_complaint_is_accepted_with_its_number_and_what_happens_next(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(),
        files=[("evidence", ("漏水.png", fixture("leak.png"), "image/png"))],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["number"].startswith("TS") and body["new"] is True
    assert body["progress_url"].startswith("http://127.0.0.1:8000/progress/")
    assert body["handle_within"] == "5 working days" and body["notify_by"] == "sms"
    accept_by = datetime.fromisoformat(body["accept_by"].replace("Z", "+00:00"))
    handle_by = datetime.fromisoformat(body["handle_by"].replace("Z", "+00:00"))
    assert datetime.now(UTC) < accept_by < handle_by


async def test_every_missing_required_field_is_named_with_its_message(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    fields = await refused(client, shared[0], "/api/complaints", {"lang": "en"})
    assert fields == {
        "name": "Please fill this in",
        "contact": "Please fill this in",
        "incident_at": "Please fill this in",
        "category": "Please fill this in",
        "details": "Please fill this in",
    }


async def test_messages_follow_the_language_of_the_form(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    fields = await refused(
        client, shared[0], "/api/complaints", complaint_fields(name="", lang="zh")
    )
    assert fields == {"name": "请填写此项"}


@pytest.mark.parametrize(
    "contact",
    ["12345", "1381234567", "95598", "zhang@", "zhang@example", "张三", "138-1234-5678-9999"],
)
async def test_a_contact_that_is_neither_a_phone_nor_an_email_is_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI], contact: str
) -> None:
    fields = await refused(client, shared[0], "/api/complaints", complaint_fields(contact=contact))
    assert fields == {"contact": "Enter a valid mobile number or email address"}


@pytest.mark.parametrize(
    ("incident_at", "message"),
    [
        ("yesterday", "Enter the date and time of the incident"),
        ("2026-13-40T25:00", "Enter the date and time of the incident"),
        (local_input(datetime.now(UTC) + timedelta(days=2)), "cannot be in the future"),
        ("1999-01-01T10:00", "Please check the year"),
    ],
)
async def test_an_unreadable_future_or_implausible_incident_time_is_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI], incident_at: str, message: str
) -> None:
    fields = await refused(
        client, shared[0], "/api/complaints", complaint_fields(incident_at=incident_at)
    )
    assert list(fields) == ["incident_at"] and message in fields["incident_at"]


async def test_a_complaint_type_that_is_not_configured_is_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    fields = await refused(client, shared[0], "/api/complaints", complaint_fields(category="fraud"))
    assert fields == {"category": "Choose a complaint type from the list"}


async def test_details_shorter_or_longer_than_configured_are_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    web = shared[0].settings.web
    short = await refused(client, shared[0], "/api/complaints", complaint_fields(details="停水"))
    assert short == {
        "details": f"Write at least {web.details_min_chars} characters about what "
        "happened and what you ask"
    }
    long = await refused(
        client,
        shared[0],
        "/api/complaints",
        complaint_fields(details="水" * (web.details_max_chars + 1)),
    )
    assert long == {"details": f"At most {web.details_max_chars} characters"}


async def test_a_name_longer_than_fifty_characters_is_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    fields = await refused(client, shared[0], "/api/complaints", complaint_fields(name="张" * 51))
    assert fields == {"name": "At most 50 characters"}


@pytest.mark.parametrize("key", ["short", "has space in it", "x" * 129, "<script>1234"])
async def test_a_malformed_idempotency_key_is_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI], key: str
) -> None:
    fields = await refused(
        client, shared[0], "/api/complaints", complaint_fields(idempotency_key=key)
    )
    assert list(fields) == ["idempotency_key"]


async def test_an_email_contact_is_accepted_and_the_answer_says_we_notify_by_email(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/complaints", data=complaint_fields(contact="Zhang.San@Example.CN")
    )
    assert response.status_code == 201, response.text
    assert response.json()["notify_by"] == "email"


async def test_an_idempotency_key_may_come_as_a_header_from_other_systems(
    client: httpx.AsyncClient,
) -> None:
    data = complaint_fields(idempotency_key=None)
    first = await client.post(
        "/api/complaints", data=data, headers={"Idempotency-Key": "crm-ticket-000042"}
    )
    again = await client.post(
        "/api/complaints", data=data, headers={"Idempotency-Key": "crm-ticket-000042"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["number"] == again.json()["number"]


async def test_feedback_needs_an_overall_rating_from_the_scale(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    missing = await refused(client, shared[0], "/api/feedback", feedback_fields(overall=None))
    assert missing == {"overall": "Please fill this in"}
    wrong = await refused(
        client,
        shared[0],
        "/api/feedback",
        feedback_fields(overall="great", aspect_attitude="5 stars"),
    )
    assert wrong == {"overall": "Choose one rating", "aspect_attitude": "Choose one rating"}


async def test_feedback_with_a_bad_contact_or_overlong_text_is_refused(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    fields = await refused(
        client,
        shared[0],
        "/api/feedback",
        feedback_fields(contact="call me", suggestions="多" * 2001),
    )
    assert fields == {
        "contact": "Enter a valid mobile number or email address",
        "suggestions": "At most 2000 characters",
    }


async def test_anonymous_feedback_is_accepted_without_a_reply_date(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/feedback", data=feedback_fields())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["reply_by"] is None and body["progress_url"]


async def test_feedback_with_a_contact_is_promised_a_reply_within_its_own_limit(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/feedback", data=feedback_fields(name="李四", contact="+86 139 0000 1111")
    )
    assert response.status_code == 201, response.text
    assert response.json()["reply_within"] == "2 working days"


async def test_a_body_that_is_not_a_form_is_refused_with_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/complaints", json=complaint_fields())
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_a_browser_sees_the_form_again_with_its_values_and_messages_beside_the_fields(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    page = await client.post(
        "/api/complaints",
        data=complaint_fields(contact="not a phone", details="太短", lang="zh"),
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 422
    html = page.text
    assert 'class="error-summary" role="alert" tabindex="-1" id="c-errors"' in html
    assert "请修改以下问题后重新提交" in html
    # The message sits in the contact field's own block, tied to the input.
    contact_block = html.split('<label for="c-contact">', 1)[1].split("</div>", 1)[0]
    assert (
        '<span class="error-message" id="c-contact-error">请填写有效的手机号码或电子邮箱</span>'
        in contact_block
    )
    assert 'aria-describedby="c-contact-error c-contact-hint" aria-invalid="true"' in contact_block
    assert 'value="not a phone"' in contact_block
    assert 'value="张三"' in html, "what the person typed is kept"
    assert "请至少填写10个字" in html
