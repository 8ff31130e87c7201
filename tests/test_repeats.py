"""Repeat complaints (重复投诉): while open, an urge on the open ticket and no new one; after
closure, a dissatisfied caller's new ticket linked to the old. Real store, real router: the
router worker decides for every channel (calls filed and imported, mail, referrals), the
hotline edge only answers with what it will decide; two intakes at once, in one batch or
in two workers, still make one ticket."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from ingest.app.settings import load_settings
from ingest.draft import Channel, TicketDraft
from ingest.queue import Delivery
from router.calendar import WorkCalendar
from router.repeats import Probe, RepeatFinder, RepeatPolicy, TextSimilarity
from router.rules import Router
from router.segment import Segmenter
from router.settings import RepeatSettings
from tests.stack import CONFIG, Stack, events, make_draft, notes, ticket_of
from tests.support_http import api_client, close_ticket, first_ticket
from tests.test_email_smtp import MAILBOX, listener, send
from tests.test_hotline_api import call
from tests.test_hotline_import import by_source_key as ticket_numbers
from tests.test_hotline_import import import_calls
from tests.test_referral_support import order, post_signed, referral_secrets  # noqa: F401
from tests.test_web_support import complaint_fields
from workers.router_worker import RouterWorker
from workers.settle import Done, Settler

pytestmark = pytest.mark.usefixtures("agent_tokens")


async def _first_ticket(stack: Stack, client: httpx.AsyncClient, **fields: Any) -> str:
    return await first_ticket(stack, client, "/api/calls", json=call(**fields))


async def _close(client: httpx.AsyncClient, number: str) -> None:
    await close_ticket(client, number, "已恢复供水")


def _urges(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return events(ticket, "urge")


async def test_a_repeat_call_while_the_ticket_is_open_urges_it_and_makes_no_new_ticket(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, agent_api)
    repeat = call(summary="又打来了，还是停水，问什么时候能来水", account_number=None)
    response = await agent_api.post("/api/calls", json=repeat)
    assert response.status_code == 200
    assert response.json() == {"number": number, "repeat_of_open": True}
    assert await stack.drain() == 1, "the router urged the open ticket and made no second one"

    ticket = await ticket_of(stack, number)
    [urge] = _urges(ticket)
    assert urge["actor"] == "agent:1001"
    assert urge["detail"]["repeat_call"]["call_id"] == repeat["call_id"]
    assert urge["detail"]["notify_department"] == "supply_dispatch"
    assert "same category supply_outage" in urge["detail"]["matched"]
    assert ticket["status"] == "dispatched"


async def test_the_same_repeat_call_sent_again_and_at_once_urges_only_once(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_agent_api)
    repeat = call(summary="停水的事还没解决")
    answers = await asyncio.gather(
        *(embedded_agent_api.post("/api/calls", json=repeat) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == {"number": number, "repeat_of_open": True} for a in answers)
    assert await embedded_stack.drain() == 1
    again = await embedded_agent_api.post("/api/calls", json=repeat)
    assert again.json() == {"number": number, "repeat_of_open": True}
    assert await embedded_stack.drain() == 1
    assert len(_urges(await ticket_of(embedded_stack, number))) == 1


async def test_the_same_caller_about_another_matter_gets_a_new_ticket(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_agent_api, account_number=None)
    other = await embedded_agent_api.post(
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
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(
        embedded_stack,
        embedded_agent_api,
        category="billing",
        summary="水表读数与账单不符",
        request=None,
        account_number=None,
    )
    repeat = await embedded_agent_api.post(
        "/api/calls",
        json=call(
            category="other",
            summary="上个月账单金额不对，水表读数明显有误",
            request=None,
            account_number=None,
        ),
    )
    assert repeat.json() == {"number": number, "repeat_of_open": True}
    assert await embedded_stack.drain() == 1
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"].startswith("similar text")


async def test_the_same_account_number_from_another_phone_is_the_same_complainant(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_agent_api, account_number="31000123")
    repeat = await embedded_agent_api.post(
        "/api/calls",
        json=call(caller_number="0755-2222-3333", account_number="３１０００１２３"),
    )
    assert repeat.json() == {"number": number, "repeat_of_open": True}
    assert await embedded_stack.drain() == 1
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"].endswith("same account")
    # A different account and a different phone: another complainant.
    stranger = await embedded_agent_api.post(
        "/api/calls",
        json=call(caller_number="0755-2222-4444", account_number="31000999"),
    )
    assert stranger.status_code == 201

    # Account matching can be switched off (repeats.by_account) where it is too slow.
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
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    await _first_ticket(
        embedded_stack,
        embedded_agent_api,
        category="other",
        summary="营业厅门口的台阶破损",
        request=None,
        account_number=None,
    )
    second = await embedded_agent_api.post(
        "/api/calls",
        json=call(
            category="other", summary="想咨询公司招聘信息", request=None, account_number=None
        ),
    )
    assert second.status_code == 201


async def test_an_open_ticket_older_than_the_window_is_not_repeated(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    old = datetime.now(UTC) - timedelta(days=45)  # the window is 30 days
    await _first_ticket(
        embedded_stack, embedded_agent_api, started_at=old.isoformat(), ended_at=None
    )
    again = await embedded_agent_api.post("/api/calls", json=call())
    assert again.status_code == 201


async def test_after_closure_a_dissatisfied_caller_gets_a_new_ticket_linked_to_the_old_one(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(stack, agent_api)
    await _close(agent_api, number)
    response = await agent_api.post(
        "/api/calls", json=call(summary="说是修好了，今天又停水了", dissatisfied=True)
    )
    assert response.status_code == 201
    new_number = response.json()["number"]
    assert new_number != number and response.json()["repeat_of"] == number
    assert await stack.drain() == 2
    ticket = await ticket_of(stack, new_number)
    assert ticket["links"]["repeat_of"] == number
    assert ticket["status"] == "dispatched"
    assert any(n.startswith("repeat_after_closure:") and number in n for n in notes(ticket))
    assert _urges(await ticket_of(stack, number)) == [], "a closed ticket is not urged"


async def test_after_closure_a_caller_who_is_not_unhappy_gets_an_unlinked_ticket(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_agent_api)
    await _close(embedded_agent_api, number)
    response = await embedded_agent_api.post("/api/calls", json=call(summary="又停水了"))
    assert response.status_code == 201 and "repeat_of" not in response.json()
    assert await embedded_stack.drain() == 2
    ticket = await ticket_of(embedded_stack, response.json()["number"])
    assert ticket["links"]["repeat_of"] is None
    assert f"similar_closed_ticket: {number}" in notes(ticket)


def _repeat_mail(sender: str, subject: str, body: str, message_id: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = MAILBOX
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(body)
    return message.as_bytes()


ZHAO = "zhao@example.cn"
AGAIN_BY_MAIL = _repeat_mail(
    "Zhao <Zhao@Example.CN>", "还是没水压", "高层水压还是不足，已经一周了。", "<repeat@example.cn>"
)


async def _web_ticket(stack: Stack, web: httpx.AsyncClient) -> str:
    """Zhao's complaint about water pressure, from the web form (the first contact of a repeat
    may come from any channel: the router looks the complainant up by address)."""
    details = "小区水压不足，高层住户用不上水，已经好几天了，请尽快派人处理。"
    fields = complaint_fields(
        name="赵女士", contact=ZHAO, category="water_pressure", details=details
    )
    return await first_ticket(stack, web, "/api/complaints", data=fields)


async def test_the_router_merges_a_repeat_mail_into_the_open_ticket_of_the_same_address(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    async with api_client(stack.rt) as web:
        number = await _web_ticket(stack, web)
    stack.start_router()
    async with listener(stack) as port:
        assert (await send(port, AGAIN_BY_MAIL))[-1][0] == 250
        assert await stack.drain() == 1, "merged: no ticket of its own"
        # The sender's retry reaches the router again: found merged, not merged twice.
        assert (await send(port, AGAIN_BY_MAIL))[-1][0] == 250
        assert await stack.drain() == 1
        stranger = _repeat_mail(
            "x@example.cn", "还是没水压", "高层水压还是不足，已经一周了。", "<x@example.cn>"
        )
        assert (await send(port, stranger))[-1][0] == 250
        assert await stack.drain() == 2, "the same words from another address: a ticket"
    [urge] = _urges(await ticket_of(stack, number))
    assert urge["actor"] == "mailbox:mailbox-complaints"
    assert urge["detail"]["repeat_contact"]["channel"] == "email"
    assert urge["detail"]["repeat_contact"]["source_key"] == "<repeat@example.cn>"
    assert urge["detail"]["matched"] == "same category water_pressure; same email"
    assert urge["detail"]["notify_department"] == (await ticket_of(stack, number))["department"]
    other = (await ticket_numbers(stack))["<x@example.cn>"]
    assert (await ticket_of(stack, other))["links"]["repeat_of"] is None


async def test_after_closure_the_router_links_a_repeat_mail_to_the_closed_ticket(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    async with api_client(stack.rt) as web:
        number = await _web_ticket(stack, web)
        await close_ticket(web, number, "已更换加压泵，高层水压恢复正常")
    later = _repeat_mail(
        ZHAO, "水压又不足了", "水压不足的问题又出现了，高层又用不上水。", "<later@ex.cn>"
    )
    async with listener(stack) as port:
        assert (await send(port, later))[-1][0] == 250
        assert await stack.drain() == 2
    new_number = (await ticket_numbers(stack))["<later@ex.cn>"]
    ticket = await ticket_of(stack, new_number)
    assert ticket["links"]["repeat_of"] == number
    [linked] = events(ticket, "repeat_of")
    assert linked["actor"] == "router"
    assert linked["detail"]["repeat_of"] == number
    assert linked["detail"]["rule"] == "repeat.after_closure"
    assert linked["detail"]["matched"].endswith("same email")
    assert _urges(await ticket_of(stack, number)) == [], "a closed ticket is not urged"


def _worker(stack: Stack) -> RouterWorker:
    """A router worker of the stack that is not running: the test hands it its batches."""
    settings = stack.settings
    return RouterWorker(
        settings=settings,
        queue=stack.rt.queue,
        database=stack.rt.database,
        router=Router(settings, stack.rt.segmenter),
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
        metrics=stack.rt.metrics,
    )


async def _batch(stack: Stack, drafts: list[TicketDraft]) -> list[Delivery]:
    """Publish ``drafts`` and take them off the queue again, as one router batch."""
    await stack.rt.handoff.submit_many(drafts)
    deliveries: list[Delivery] = []
    while len(deliveries) < len(drafts):
        taken = await stack.rt.queue.receive(stack.rt.names.drafts, len(drafts), timeout=5.0)
        assert taken, "the published drafts did not come back from the queue"
        deliveries.extend(taken)
    return deliveries


async def _route(stack: Stack, worker: RouterWorker, deliveries: list[Delivery]) -> None:
    results = await worker.process(deliveries)
    assert all(isinstance(outcome, Done) for _, outcome in results), results
    await Settler(stack.rt.queue, stack.rt.database, stack.settings.worker).settle(results)


def _zhao(body: str) -> TicketDraft:
    return make_draft(
        channel=Channel.EMAIL,
        complainant={"name": "赵女士", "email": ZHAO},
        subject="水压不足",
        body=body,
    )


FIRST = "小区水压不足，高层住户用不上水，已经好几天了，请尽快派人处理。"
AGAIN = "高层水压还是不足，已经一周了，还是用不上水。"


async def test_two_drafts_of_one_complainant_in_one_batch_make_one_ticket_and_an_urge(
    stack: Stack,
) -> None:
    first, second = _zhao(FIRST), _zhao(AGAIN)
    await _route(stack, _worker(stack), await _batch(stack, [first, second]))
    numbers = await ticket_numbers(stack)
    assert list(numbers) == [first.source_key], "the second draft made no ticket"
    [urge] = _urges(await ticket_of(stack, numbers[first.source_key]))
    assert urge["detail"]["repeat_contact"]["source_key"] == second.source_key
    assert urge["detail"]["matched"] == "same category water_pressure; same email"


async def test_two_router_workers_deciding_about_one_complainant_at_once_make_one_ticket(
    stack: Stack,
) -> None:
    """Each worker has one of the two drafts; whichever commits second sees the first's
    ticket (a lock per complainant on PostgreSQL, the one writer on SQLite)."""
    first, second = _zhao(FIRST), _zhao(AGAIN)
    one, other = await _batch(stack, [first]), await _batch(stack, [second])
    await asyncio.gather(_route(stack, _worker(stack), one), _route(stack, _worker(stack), other))
    numbers = await ticket_numbers(stack)
    assert len(numbers) == 1, numbers
    [(made, number)] = numbers.items()
    [urge] = _urges(await ticket_of(stack, number))
    merged = {first.source_key, second.source_key} - {made}
    assert urge["detail"]["repeat_contact"]["source_key"] in merged


async def test_two_calls_seconds_apart_make_one_ticket_and_the_second_urges_it(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    """Both are answered before the router made either into a ticket, so each is told a
    number of its own; the router's decision still makes the second the urge of the first,
    and the urge names the number the second caller was told."""
    first = await agent_api.post("/api/calls", json=call())
    second = await agent_api.post("/api/calls", json=call(summary="还是停水，问什么时候来水"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert await stack.drain() == 1
    number = first.json()["number"]
    [urge] = _urges(await ticket_of(stack, number))
    assert urge["detail"]["reserved_number"] == second.json()["number"]
    assert list(await ticket_numbers(stack)) == [call_id(first)]
    # The second caller's number leads to the ticket that handles their matter.
    assert (await ticket_of(stack, second.json()["number"]))["number"] == number


def call_id(response: httpx.Response) -> str:
    return str(json.loads(response.request.content)["call_id"])


async def test_a_call_is_a_repeat_by_the_routed_category_when_the_agent_chose_none(
    embedded_stack: Stack, embedded_agent_api: httpx.AsyncClient
) -> None:
    number = await _first_ticket(embedded_stack, embedded_agent_api, account_number=None)
    repeat = call(category=None, summary="楼里断水了", request=None, account_number=None)
    response = await embedded_agent_api.post("/api/calls", json=repeat)
    assert response.json() == {"number": number, "repeat_of_open": True}
    assert await embedded_stack.drain() == 1
    [urge] = _urges(await ticket_of(embedded_stack, number))
    assert urge["detail"]["matched"] == "same category supply_outage; same phone"


async def test_a_referral_about_an_open_matter_is_a_ticket_of_its_own_linked_to_it(
    stack: Stack, agent_api: httpx.AsyncClient
) -> None:
    """The 12345 order is the caller's matter again (same phone, same category), but the
    authority's order keeps its own ticket and clock: linked, not merged."""
    number = await _first_ticket(stack, agent_api, account_number=None)
    placed = await post_signed(agent_api, order())
    assert placed.status_code == 201, placed.text
    assert await stack.drain() == 2
    referral = await ticket_of(stack, placed.json()["number"])
    assert referral["links"]["repeat_of"] == number
    [linked] = events(referral, "repeat_of")
    assert linked["detail"]["rule"] == "repeat.referral_while_open"
    assert _urges(await ticket_of(stack, number)) == []


async def test_an_imported_call_that_repeats_an_open_ticket_urges_it(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    rows = [call(account_number=None), call(summary="又打来了，还是停水", account_number=None)]
    for index, row in enumerate(rows):
        path = stack.tmp_path / f"calls-{index}.jsonl"
        path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        code, summary, _ = await import_calls(stack, path, "--vendor", "api")
        assert (code, summary["imported"]) == (0, 1)
        await stack.drain()
    numbers = await ticket_numbers(stack)
    assert list(numbers) == [rows[0]["call_id"]], "the repeat call makes no ticket"
    [urge] = _urges(await ticket_of(stack, numbers[rows[0]["call_id"]]))
    assert urge["detail"]["repeat_call"]["call_id"] == rows[1]["call_id"]


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
