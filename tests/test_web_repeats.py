"""Repeat complaints (重复投诉) from the web form: while the complainant's ticket about the same
matter is open, the form answers with that ticket's number and urges it (催办) instead of
filing a second one; after closure, a new ticket linked ``repeat_of`` the closed one. Real
store, real router, the form posted through the ASGI app, both deployments."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from channels.web.repeats import can_repeat
from ingest.draft import Channel
from tests.stack import Stack, events, make_draft, notes, ticket_of
from tests.support_http import api_client, close_ticket, first_ticket
from tests.test_web_support import (
    BROWSER_HEADERS,
    complaint_fields,
    feedback_fields,
    open_form,
    reserved_numbers,
)

# The same matter as complaint_fields()'s details, in other words.
AGAIN = "光明小区5栋的自来水还是发黄，异味明显，已经持续一周了，请派人检测。"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(stack.rt) as opened:
        yield opened


async def _first_ticket(stack: Stack, client: httpx.AsyncClient, **fields: str | None) -> str:
    return await first_ticket(stack, client, "/api/complaints", data=complaint_fields(**fields))


async def _close(client: httpx.AsyncClient, number: str) -> None:
    await close_ticket(client, number, "已更换老化管道，水质检测合格")


def _urges(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return events(ticket, "urge")


async def test_a_repeat_while_open_answers_the_open_number_and_urges_it_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    repeat = complaint_fields(details=AGAIN)
    response = await client.post("/api/complaints", data=repeat)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["number"] == number
    assert body["new"] is False and body["repeat_of_open"] is True
    assert "repeat_of" not in body
    # The open ticket's own deadline, not a new one counted from now.
    opened = await ticket_of(stack, number)
    assert body["handle_by"] == opened["due_at"]
    assert body["progress_url"], "the same contact gets a progress link to the open ticket"
    # No second number reserved; the router urged the open ticket and made no second one.
    assert await reserved_numbers(stack) == 1
    assert await stack.drain() == 1

    [urge] = _urges(await ticket_of(stack, number))
    assert urge["actor"] == "web:web-form"
    assert urge["detail"]["repeat_contact"] == {
        "channel": "web",
        "source_key": repeat["idempotency_key"],
        "received_at": urge["detail"]["repeat_contact"]["received_at"],
    }
    assert urge["detail"]["notify_department"] == opened["department"] is not None
    assert urge["detail"]["matched"] == "same category water_quality; same phone"

    again = await client.post("/api/complaints", data=repeat)
    assert again.status_code == 200
    assert {k: v for k, v in again.json().items() if k != "progress_url"} == {
        k: v for k, v in body.items() if k != "progress_url"
    }
    assert await stack.drain() == 1
    assert len(_urges(await ticket_of(stack, number))) == 1, "sent again: no second urge"
    assert await reserved_numbers(stack) == 1


async def _link_shows_urged(client: httpx.AsyncClient, answer: httpx.Response, number: str) -> None:
    """The progress link of ``answer`` shows the open ticket ``number``, urged."""
    token = answer.json()["progress_url"].rsplit("/", 1)[1]
    progress = await client.get(f"/api/progress/{token}")
    assert progress.status_code == 200
    assert progress.json()["number"] == number
    assert "urged" in [step["step"] for step in progress.json()["timeline"]]


async def test_the_progress_link_of_a_merged_repeat_shows_the_open_ticket(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    merged = await client.post("/api/complaints", data=complaint_fields(details=AGAIN))
    assert await stack.drain() == 1
    await _link_shows_urged(client, merged, number)


async def test_two_complaints_seconds_apart_make_one_ticket_and_both_links_show_it(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """Both answered before the router made either into a ticket, so each got a number of
    its own; the router makes the second the urge of the first, and the second's progress
    link follows the ticket that handles the matter."""
    first = await client.post("/api/complaints", data=complaint_fields())
    second = await client.post("/api/complaints", data=complaint_fields(details=AGAIN))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["number"] != second.json()["number"]
    assert await stack.drain() == 1
    number = first.json()["number"]
    [urge] = _urges(await ticket_of(stack, number))
    assert urge["detail"]["reserved_number"] == second.json()["number"]
    await _link_shows_urged(client, second, number)


async def test_the_same_repeat_sent_several_times_at_once_urges_only_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    repeat = complaint_fields(details=AGAIN)
    answers = await asyncio.gather(*(client.post("/api/complaints", data=repeat) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.json()["number"] for a in answers} == {number}
    assert all(a.json()["repeat_of_open"] is True for a in answers)
    assert await stack.drain() == 1
    assert len(_urges(await ticket_of(stack, number))) == 1
    assert await reserved_numbers(stack) == 1


async def test_similar_words_under_another_category_are_the_same_matter(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as client:
        number = await _first_ticket(embedded_stack, client)
        response = await client.post(
            "/api/complaints", data=complaint_fields(category="other", details=AGAIN)
        )
    assert response.status_code == 200
    assert response.json()["number"] == number
    assert await embedded_stack.drain() == 1
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"].startswith("similar text")


async def test_another_matter_from_the_same_contact_is_a_new_ticket(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    other = await client.post(
        "/api/complaints",
        data=complaint_fields(
            category="billing",
            details="本月水费账单多收了两百元，请核实水表读数并退还多收的水费。",
        ),
    )
    assert other.status_code == 201, other.text
    assert other.json()["number"] != number and other.json()["new"] is True
    assert "repeat_of_open" not in other.json() and "repeat_of" not in other.json()
    assert await stack.drain() == 2
    assert _urges(await ticket_of(stack, number)) == []


async def test_another_contact_about_the_same_matter_is_a_new_ticket(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    neighbour = await client.post(
        "/api/complaints", data=complaint_fields(contact="13987654321", details=AGAIN)
    )
    assert neighbour.status_code == 201
    assert neighbour.json()["number"] != number
    assert await stack.drain() == 2
    assert _urges(await ticket_of(stack, number)) == []


async def test_an_email_contact_is_matched_whatever_its_letter_case(
    embedded_stack: Stack,
) -> None:
    async with api_client(embedded_stack.rt) as client:
        number = await _first_ticket(embedded_stack, client, contact="Zhao.Li@Example.CN")
        again = await client.post(
            "/api/complaints", data=complaint_fields(contact="zhao.li@example.cn", details=AGAIN)
        )
    assert again.status_code == 200
    assert again.json()["number"] == number
    assert await embedded_stack.drain() == 1
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"].endswith("same email")


async def test_after_closure_a_repeat_is_a_new_ticket_linked_to_the_closed_one(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    await _close(client, number)
    response = await client.post("/api/complaints", data=complaint_fields(details=AGAIN))
    assert response.status_code == 201, response.text
    new_number = response.json()["number"]
    assert new_number != number
    assert response.json()["repeat_of"] == number and "repeat_of_open" not in response.json()
    assert await stack.drain() == 2
    ticket = await ticket_of(stack, new_number)
    assert ticket["links"]["repeat_of"] == number
    assert ticket["status"] == "dispatched"
    assert any(n.startswith("repeat_after_closure:") and number in n for n in notes(ticket))
    assert _urges(await ticket_of(stack, number)) == [], "a closed ticket is not urged"


async def test_feedback_and_anonymous_submissions_are_never_merged(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    same_words = complaint_fields()["details"]
    anonymous = await client.post(
        "/api/feedback", data=feedback_fields(contact="13812345678", content=same_words)
    )
    named = await client.post(
        "/api/feedback",
        data=feedback_fields(name="张三", contact="13812345678", content=same_words),
    )
    assert (anonymous.status_code, named.status_code) == (201, 201)
    assert number not in (anonymous.json()["number"], named.json()["number"])
    assert await stack.drain() == 3, "the router merged neither"
    assert _urges(await ticket_of(stack, number)) == []


def test_only_a_named_complainant_with_a_contact_can_repeat() -> None:
    assert can_repeat(make_draft(channel=Channel.WEB))
    assert can_repeat(make_draft(channel=Channel.WEB, complainant={"email": "li@example.cn"}))
    anonymous = {"phone": "+8613812345678", "anonymous": True}
    assert not can_repeat(make_draft(channel=Channel.WEB, complainant=anonymous))
    assert not can_repeat(make_draft(channel=Channel.WEB, complainant={"name": "张三"}))


@pytest.mark.parametrize(
    ("lang", "says"),
    [
        ("zh", ["您的投诉正在处理中", "已在处理中，投诉编号为 {number}", "已催促承办部门"]),
        ("en", ["already being handled under number {number}", "reminded the department"]),
    ],
)
async def test_the_answer_page_of_a_merged_repeat_shows_the_open_number(
    embedded_stack: Stack, lang: str, says: list[str]
) -> None:
    async with api_client(embedded_stack.rt) as browser:
        number = await _first_ticket(embedded_stack, browser)
        hidden = await open_form(browser)
        page = await browser.post(
            "/api/complaints",
            data={**complaint_fields(idempotency_key=None, details=AGAIN), **hidden, "lang": lang},
            headers=BROWSER_HEADERS,
        )
    assert page.status_code == 200, page.text
    shown = re.search(r'id="complaint-number">([A-Z]+\d{6}-\d+)<', page.text)
    assert shown is not None and shown.group(1) == number
    for text in says:
        assert text.format(number=number) in page.text
    assert 'id="progress-link"' in page.text
    assert await embedded_stack.drain() == 1
    assert len(_urges(await ticket_of(embedded_stack, number))) == 1
