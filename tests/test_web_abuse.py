"""Abuse resistance: CSRF for the browser form, the honeypot, per-IP rate limits, one ticket
per form however often it is sent, and every echoed value escaped."""

from __future__ import annotations

import asyncio
import re

import pytest

from channels.web.abuse import CsrfGuard
from channels.web.settings import RateLimit, RateLimits
from tests.stack import Stack, ticket_of
from tests.support_http import BASE_URL, api_client
from tests.test_web_support import (
    BROWSER_HEADERS,
    complaint_fields,
    feedback_fields,
    fixture,
    nothing_filed,
    open_form,
    with_web,
)

SECRET = "web-csrf-secret-for-tests-0123456789"


@pytest.fixture(autouse=True)
def csrf_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOULI_WEB_CSRF_SECRET", SECRET)


async def test_the_browser_form_with_its_token_and_cookie_is_accepted(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as browser:
        hidden = await open_form(browser)
        assert hidden["lang"] == "zh"
        page = await browser.post(
            "/api/complaints",
            data={**complaint_fields(idempotency_key=None), **hidden},
            files=[("evidence", ("漏水.png", fixture("leak.png"), "image/png"))],
            headers=BROWSER_HEADERS,
        )
    assert page.status_code == 201, page.text
    assert "投诉已提交" in page.text
    number = re.search(r'id="complaint-number">([A-Z]+\d{6}-\d+)<', page.text)
    assert number is not None
    assert 'id="progress-link" href="http://127.0.0.1:8000/progress/' in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_a_browser_post_without_the_token_is_refused_and_nothing_is_filed(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as browser:
        await open_form(browser)  # has the cookie, but sends no token
        response = await browser.post(
            "/api/complaints", data=complaint_fields(), headers={"Origin": BASE_URL}
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert await nothing_filed(embedded_stack)


async def test_a_token_issued_to_another_browser_is_refused(embedded_stack: Stack) -> None:
    async with api_client(embedded_stack.rt) as victim, api_client(embedded_stack.rt) as other:
        await open_form(victim)
        stolen = await open_form(other)
        response = await victim.post(
            "/api/complaints",
            data={**complaint_fields(), "csrf_token": stolen["csrf_token"]},
            headers={"Origin": BASE_URL},
        )
    assert response.status_code == 403
    assert await nothing_filed(embedded_stack)


async def test_a_form_from_another_site_is_refused_before_its_body_is_read(
    embedded_stack: Stack,
) -> None:
    read = 0

    async def body() -> object:
        nonlocal read
        read += 1
        yield b"name=x"

    async with api_client(embedded_stack.rt) as client:
        response = await client.post(
            "/api/complaints",
            content=body(),
            headers={
                "Origin": "https://evil.example",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "text/html",
            },
        )
    assert response.status_code == 403
    assert "表单已过期或来源无法验证" in response.text
    assert read == 0


async def test_an_expired_form_is_shown_again_with_what_was_typed_and_a_fresh_token(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as browser:
        await open_form(browser)
        cookie = browser.cookies["shouli_csrf"]
        old = CsrfGuard(SECRET.encode(), 24 * 3600, clock=lambda: 1_000_000_000.0)
        data = complaint_fields(name="王五")
        page = await browser.post(
            "/api/complaints",
            data={**data, "csrf_token": old.token_for(cookie), "lang": "zh"},
            headers=BROWSER_HEADERS,
        )
    assert page.status_code == 403
    assert "表单已过期或来源无法验证，请重新提交" in page.text
    assert 'value="王五"' in page.text
    assert f'name="idempotency_key" value="{data["idempotency_key"]}"' in page.text
    fresh = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert fresh is not None and not fresh.group(1).startswith("1000000000.")
    assert await nothing_filed(embedded_stack)


async def test_a_filled_honeypot_files_nothing(embedded_stack: Stack) -> None:
    async with api_client(embedded_stack.rt) as client:
        api = await client.post(
            "/api/complaints", data=complaint_fields(website="http://cheap-pills.example")
        )
        page = await client.post(
            "/api/feedback",
            data=feedback_fields(website="http://cheap-pills.example", lang="zh"),
            headers={"Accept": "text/html"},
        )
    assert api.status_code == 422 and api.json()["error"]["code"] == "rejected"
    assert page.status_code == 422 and "此次提交被判定为自动提交" in page.text
    assert await nothing_filed(embedded_stack)


async def test_submissions_beyond_the_rate_limit_get_429_with_retry_after_per_address(
    embedded_stack: Stack,
) -> None:
    runtime = with_web(
        embedded_stack,
        rate_limits=RateLimits(
            submissions=RateLimit(requests=3, per_seconds=600),
            inquiries=RateLimit(requests=2, per_seconds=600),
        ),
    )
    from ingest.app.http import create_app

    app = create_app(runtime)
    async with (
        api_client(app, ip="203.0.113.9") as busy,
        api_client(app, ip="203.0.113.10") as calm,
    ):
        answers = [
            (await busy.post("/api/feedback", data=feedback_fields())).status_code for _ in range(4)
        ]
        assert answers == [201, 201, 201, 429]
        limited = await busy.post("/api/complaints", data=complaint_fields())
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 600
        assert limited.json()["error"]["code"] == "rate_limited"
        assert (await calm.post("/api/feedback", data=feedback_fields())).status_code == 201
        inquiries = [
            (
                await busy.get(
                    "/api/complaints/TS202611-000001/progress", params={"contact": "13812345678"}
                )
            ).status_code
            for _ in range(3)
        ]
        assert inquiries == [404, 404, 429]


async def test_the_same_form_sent_twice_makes_one_ticket_and_answers_200_with_the_same_number(
    stack: Stack,
) -> None:
    data = complaint_fields()
    async with api_client(stack.rt) as client:
        first = await client.post("/api/complaints", data=data)
        again = await client.post("/api/complaints", data=data)
        stranger = await client.post(
            "/api/complaints", data={**data, "contact": "someone.else@example.cn"}
        )
    assert (first.status_code, again.status_code, stranger.status_code) == (201, 200, 200)
    number = first.json()["number"]
    assert again.json()["number"] == number and again.json()["new"] is False
    assert (
        again.json()["progress_url"]
        and again.json()["progress_url"] != first.json()["progress_url"]
    )
    assert stranger.json()["number"] == number
    assert stranger.json()["progress_url"] is None, "a key alone does not open the progress"
    assert await stack.drain() == 1
    await asyncio.sleep(0.5)
    assert await stack.ticket_count() == 1
    ticket = await ticket_of(stack, number)
    assert ticket["channel"] == "web" and ticket["source_key"] == data["idempotency_key"]


async def test_a_double_click_sending_the_form_twice_at_once_makes_one_ticket(
    stack: Stack,
) -> None:
    data = complaint_fields()
    async with api_client(stack.rt) as one, api_client(stack.rt) as two:
        answers = await asyncio.gather(
            one.post(
                "/api/complaints",
                data=data,
                files=[("evidence", ("a.png", fixture("leak.png"), "image/png"))],
            ),
            two.post(
                "/api/complaints",
                data=data,
                files=[("evidence", ("a.png", fixture("leak.png"), "image/png"))],
            ),
        )
    assert sorted(a.status_code for a in answers) == [200, 201]
    assert answers[0].json()["number"] == answers[1].json()["number"]
    assert await stack.drain() == 1
    await asyncio.sleep(0.5)
    assert await stack.ticket_count() == 1


async def test_every_echoed_value_is_escaped_on_the_page(embedded_stack: Stack) -> None:
    attack = '"><script>alert("x")</script><img src=x onerror=alert(1)>'
    async with api_client(embedded_stack.rt) as client:
        page = await client.post(
            "/api/complaints?lang=zh",
            data=complaint_fields(name=attack, contact=attack, details=attack[:9], category=attack),
            files=[("evidence", (attack + ".jpg", fixture("page.html"), "image/jpeg"))],
            headers={"Accept": "text/html"},
        )
    assert page.status_code == 422
    html = page.text
    assert "<script" not in html and "<img" not in html
    assert "&#34;&gt;&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # The file name is echoed in its message, made safe and escaped.
    assert "“script__img src=x onerror=alert(1)_.jpg”" in html
