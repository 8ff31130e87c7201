"""Repeat complaints (重复投诉): while open, an urge on the open ticket and no new one; after
closure, a dissatisfied caller's new ticket linked to the old. Real store, real router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from channels.hotline.settings import RepeatSettings
from ingest.draft import Channel
from ingest.http import create_app
from ingest.settings import load_settings
from router.repeats import (
    Probe,
    RepeatFinder,
    RepeatPolicy,
    TextSimilarity,
    apply_repeat_rule,
)
from router.segment import Segmenter
from store.tickets import NewTicket
from tests.stack import CONFIG, Stack, make_draft
from tests.test_hotline_api import TOKENS, call, notes, ticket_of
from tests.test_hotline_import import by_source_key as ticket_numbers

STAFF = {"Authorization": "Bearer dev-staff-token-change-me"}


@pytest.fixture(autouse=True)
def agent_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOULI_AGENT_1001_TOKEN", TOKENS["1001"])
    monkeypatch.setenv("SHOULI_AGENT_1002_TOKEN", TOKENS["1002"])


def _client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(stack.rt)),
        base_url="http://shouli.test",
        headers={"Authorization": f"Bearer {TOKENS['1001']}"},
    )


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack) as opened:
        yield opened


@pytest.fixture
async def embedded_client(embedded_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(embedded_stack) as opened:
        yield opened


async def _first_ticket(stack: Stack, client: httpx.AsyncClient, **fields: Any) -> str:
    response = await client.post("/api/calls", json=call(**fields))
    assert response.status_code == 201, response.text
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    await stack.stop_routers()
    return str(response.json()["number"])


async def _close(client: httpx.AsyncClient, number: str) -> None:
    for kind, detail in [
        ("handle", {"result": "已恢复供水"}),
        ("feedback", {"channel": "phone"}),
        ("callback", {"satisfaction": "satisfied"}),
        ("close", {}),
    ]:
        response = await client.post(
            f"/api/tickets/{number}/events", json={"kind": kind, "detail": detail}, headers=STAFF
        )
        assert response.status_code == 201, response.text


def _urges(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in ticket["events"] if e["kind"] == "urge"]


async def test_a_repeat_call_while_the_ticket_is_open_urges_it_and_makes_no_new_ticket(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    repeat = call(summary="又打来了，还是停水，问什么时候能来水", account_number=None)
    response = await client.post("/api/calls", json=repeat)
    assert response.status_code == 200
    assert response.json() == {"number": number, "repeat_of_open": True}

    ticket = await ticket_of(stack, number)
    [urge] = _urges(ticket)
    assert urge["actor"] == "agent:1001"
    assert urge["detail"]["repeat_call"]["call_id"] == repeat["call_id"]
    assert urge["detail"]["notify_department"] == "supply_dispatch"
    assert "same category supply_outage" in urge["detail"]["matched"]
    assert ticket["status"] == "dispatched"
    stack.start_router()
    await asyncio.sleep(0.5)
    assert await stack.ticket_count() == 1, "no second ticket, not even later"


async def test_the_same_repeat_call_sent_again_and_at_once_urges_only_once(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_client)
    repeat = call(summary="停水的事还没解决")
    answers = await asyncio.gather(
        *(embedded_client.post("/api/calls", json=repeat) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == {"number": number, "repeat_of_open": True} for a in answers)
    again = await embedded_client.post("/api/calls", json=repeat)
    assert again.json() == {"number": number, "repeat_of_open": True}
    assert len(_urges(await ticket_of(embedded_stack, number))) == 1


async def test_the_same_caller_about_another_matter_gets_a_new_ticket(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_client, account_number=None)
    other = await embedded_client.post(
        "/api/calls",
        json=call(
            category="billing",
            summary="本月水费账单多收两百元",
            request="核实读数并退还多收的水费",
            account_number=None,
        ),
    )
    assert other.status_code == 201
    assert other.json()["number"] != number
    assert _urges(await ticket_of(embedded_stack, number)) == []


async def test_similar_words_are_the_same_matter_even_under_another_category(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(
        embedded_stack,
        embedded_client,
        category="billing",
        summary="水表读数与账单不符",
        request=None,
        account_number=None,
    )
    repeat = await embedded_client.post(
        "/api/calls",
        json=call(
            category="other",
            summary="上个月账单金额不对，水表读数明显有误",
            request=None,
            account_number=None,
        ),
    )
    assert repeat.json() == {"number": number, "repeat_of_open": True}
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"].startswith("similar text")


async def test_the_same_account_number_from_another_phone_is_the_same_complainant(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_client, account_number="31000123")
    repeat = await embedded_client.post(
        "/api/calls",
        json=call(caller_number="0755-2222-3333", account_number="３１０００１２３"),
    )
    assert repeat.json() == {"number": number, "repeat_of_open": True}
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"].endswith("same account")
    # A different account and a different phone: another complainant.
    stranger = await embedded_client.post(
        "/api/calls",
        json=call(caller_number="0755-2222-4444", account_number="31000999"),
    )
    assert stranger.status_code == 201

    # Account matching can be switched off (hotline.repeats.by_account) where it is too slow.
    settings = embedded_stack.settings
    policy = RepeatPolicy.from_settings(settings)
    assert policy.by_account
    finder = RepeatFinder(
        replace(policy, by_account=False),
        TextSimilarity(Segmenter(k for c in settings.categories for k in c.keywords)),
    )
    probe = Probe(at=datetime.now(UTC), text="停水", category="supply_outage", account="31000123")
    found = await embedded_stack.rt.database.write(lambda conn: finder.find(conn, probe))
    assert found.open is None


async def test_a_shared_fallback_category_alone_is_not_the_same_matter(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    await _first_ticket(
        embedded_stack,
        embedded_client,
        category="other",
        summary="营业厅门口的台阶破损",
        request=None,
        account_number=None,
    )
    second = await embedded_client.post(
        "/api/calls",
        json=call(
            category="other", summary="想咨询公司招聘信息", request=None, account_number=None
        ),
    )
    assert second.status_code == 201


async def test_an_open_ticket_older_than_the_window_is_not_repeated(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    old = datetime.now(UTC) - timedelta(days=45)  # the window is 30 days
    await _first_ticket(embedded_stack, embedded_client, started_at=old.isoformat(), ended_at=None)
    again = await embedded_client.post("/api/calls", json=call())
    assert again.status_code == 201


async def test_after_closure_a_dissatisfied_caller_gets_a_new_ticket_linked_to_the_old_one(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, client)
    await _close(client, number)
    response = await client.post(
        "/api/calls", json=call(summary="说是修好了，今天又停水了", dissatisfied=True)
    )
    assert response.status_code == 201
    new_number = response.json()["number"]
    assert new_number != number and response.json()["repeat_of"] == number
    stack.start_router()
    assert await stack.wait_for_tickets(2) == 2
    ticket = await ticket_of(stack, new_number)
    assert ticket["links"]["repeat_of"] == number
    assert ticket["status"] == "dispatched"
    assert any(n.startswith("repeat_after_closure:") and number in n for n in notes(ticket))
    assert _urges(await ticket_of(stack, number)) == [], "a closed ticket is not urged"


async def test_after_closure_a_caller_who_is_not_unhappy_gets_an_unlinked_ticket(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_client)
    await _close(embedded_client, number)
    response = await embedded_client.post("/api/calls", json=call(summary="又停水了"))
    assert response.status_code == 201 and "repeat_of" not in response.json()
    embedded_stack.start_router()
    assert await embedded_stack.wait_for_tickets(2) == 2
    ticket = await ticket_of(embedded_stack, response.json()["number"])
    assert ticket["links"]["repeat_of"] is None
    assert f"similar_closed_ticket: {number}" in notes(ticket)


def _routed(draft: Any, category: str) -> NewTicket:
    return NewTicket(
        draft=draft,
        number="",
        category=category,
        severity="general",
        status="dispatched",
        valid=True,
        invalid_reason=None,
        department="supply_dispatch",
        due_at=None,
        events=(),
    )


async def test_the_router_rule_merges_email_and_web_repeats_and_links_after_closure(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    """The router worker's use: the same rule over its own transaction, by e-mail address."""
    first = make_draft(
        "web-1",
        channel=Channel.WEB,
        body="小区水压不足，高层用不上水",
        complainant={"name": "赵女士", "email": "zhao@example.cn"},
    )
    await embedded_stack.rt.handoff.submit(first)
    embedded_stack.start_router()
    assert await embedded_stack.wait_for_tickets(1) == 1
    await embedded_stack.stop_routers()
    [number] = (await ticket_numbers(embedded_stack)).values()
    finder = RepeatFinder.from_settings(embedded_stack.settings)
    write = embedded_stack.rt.database.write
    now = datetime.now(UTC)

    def rule(draft: Any) -> Any:
        return write(
            lambda conn: apply_repeat_rule(conn, finder, _routed(draft, "water_pressure"), now=now)
        )

    by_mail = make_draft(
        "<repeat@example.cn>",
        channel=Channel.EMAIL,
        subject="还是没水压",
        body="高层水压还是不足，已经一周了",
        complainant={"email": "Zhao@Example.CN"},
    )
    merged, _ = await rule(by_mail)
    assert merged == number
    redelivered, _ = await rule(by_mail)
    assert redelivered == number, "a redelivered draft is not merged twice"
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["repeat_contact"]["source_key"] == "<repeat@example.cn>"
    assert urge["detail"]["matched"].endswith("same email")

    answered = make_draft(
        "web-2",
        channel=Channel.WEB,
        number="TS202611-000099",
        complainant={"email": "zhao@example.cn"},
    )
    assert (await rule(answered))[0] is None, "the edge decided, the router does not"
    stranger = make_draft(
        "<x@example.cn>", channel=Channel.EMAIL, complainant={"email": "x@example.cn"}
    )
    assert (await rule(stranger))[0] is None

    await _close(embedded_client, number)
    later = make_draft(
        "<later@example.cn>",
        channel=Channel.EMAIL,
        body="水压不足的问题又出现了",
        complainant={"email": "zhao@example.cn"},
    )
    merged, linked = await rule(later)
    assert merged is None
    assert linked.draft.repeat_of == number
    assert linked.events[-1].kind == "repeat_of"
    assert linked.events[-1].detail["repeat_of"] == number


def test_text_similarity_compares_words_not_characters() -> None:
    similarity = TextSimilarity(Segmenter(["水表", "账单", "停水"]))
    assert similarity.score("水表读数与账单不符", "上个月账单金额不对，水表读数明显有误") >= 70
    assert similarity.score("光明小区从昨天起停水", "光明小区还是停水，昨天就打过电话") >= 70
    assert similarity.score("楼下路面冒水很久", "整栋楼突然停水") < 50
    # Sharing only single characters (水, 的, 了) is no evidence of one matter.
    assert similarity.score("水费太贵了", "水压太低了") < 50
    assert similarity.score("", "水表读数与账单不符") == 0


def test_the_repeat_window_is_elapsed_time_not_working_time() -> None:
    settings = load_settings(CONFIG, environ={})
    assert RepeatPolicy.from_settings(settings).window == timedelta(days=30)
    assert RepeatSettings(window="12 hours").window_delta == timedelta(hours=12)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not working time"):
        RepeatSettings(window="3 working days")  # type: ignore[arg-type]
