"""Reply back (issue 6, item 6): a handled referral's reply goes to the source's signed webhook
through the outbox, with retries and backoff, a dead letter after N failures, and every
attempt an event; sign-for (签收) confirmations too. Against real local HTTP receivers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select

from channels.referral.settings import ReplySettings
from channels.referral.signature import verify
from channels.runtime import Runtime
from ingest.queues import QueueNames
from store.models import DeadLetter
from tests.stack import Stack, events, ticket_of
from tests.support_http import STAFF, api_client
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    REGULATOR,
    Receiver,
    fixture,
    handled_referral,
    order,
    outbox,
    post_signed,
    referral_secrets,
    referrals_worker,
    reply_to,
    runtime_with,
    source_changes,
    sweep_until,
)

FAST = ReplySettings(
    max_attempts=4, retry_base_seconds=0.05, retry_max_seconds=0.2, timeout_seconds=5
)
RECEIVER_SECRET = "receiver-secret-for-tests"


def _runtime(stack: Stack, url: str, source: str = "housing-regulator", **changes: Any) -> Runtime:
    return runtime_with(
        stack.rt,
        replies=FAST,
        sources=source_changes(stack.rt, source, reply=reply_to(url, RECEIVER_SECRET), **changes),
    )


async def test_a_reply_reaches_a_receiver_that_fails_twice_on_the_third_attempt(
    stack: Stack,
) -> None:
    async with Receiver(fail_first=2) as receiver:
        runtime = _runtime(stack, receiver.url)
        number = await handled_referral(stack, runtime)
        worker = referrals_worker(stack, runtime)

        try:
            await sweep_until(worker, stack, "sent")
        finally:
            await worker.close()
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        # Each attempt is signed afresh with the reply secret, same scheme as inbound.
        verify(
            secrets=[RECEIVER_SECRET],
            timestamp=request.headers["x-shouli-timestamp"],
            signature=request.headers["x-shouli-signature"],
            body=request.body,
            now=time.time(),
            max_age_seconds=300,
        )
    reply = json.loads(receiver.requests[-1].body)
    assert reply["type"] == "reply" and reply["number"] == number
    assert reply["reference"] == "HR-2026-11-0457"
    assert reply["result"] == "已更换小区二次供水水箱，水质检测合格"
    assert reply["result_code"] == "01"
    assert reply["handler"] == "dev-officer"
    assert reply["department"] == "water_quality_centre"
    assert datetime.fromisoformat(reply["handled_at"]).tzinfo is not None
    assert {r.headers["x-shouli-delivery"] for r in receiver.requests} == {
        receiver.requests[0].headers["x-shouli-delivery"]
    }
    ticket = await ticket_of(stack, number)
    attempts = events(ticket, "reply_attempt")
    assert [a["detail"]["delivered"] for a in attempts] == [False, False, True]
    assert [a["detail"]["status"] for a in attempts] == [503, 503, 200]
    assert all(a["detail"]["next_attempt_at"] for a in attempts[:2])
    assert len(events(ticket, "reply_delivered")) == 1
    (row,) = await outbox(stack)
    assert (row.kind, row.status, row.attempts) == ("reply", "sent", 3)


async def test_a_reply_never_accepted_becomes_a_dead_letter_and_can_be_replayed(
    stack: Stack,
) -> None:
    async with Receiver(fail_first=None, fail_status=500) as receiver:
        runtime = _runtime(stack, receiver.url)
        number = await handled_referral(stack, runtime)
        worker = referrals_worker(stack, runtime)

        try:
            await sweep_until(worker, stack, "dead")
            await asyncio.sleep(0.3)
            await worker.sweep()
            assert len(receiver.requests) == FAST.max_attempts, "no attempt after the last one"
            ticket = await ticket_of(stack, number)
            assert len(events(ticket, "reply_attempt")) == FAST.max_attempts
            (gave_up,) = events(ticket, "reply_dead_lettered")
            assert gave_up["detail"]["attempts"] == FAST.max_attempts
            assert "HTTP 500" in gave_up["detail"]["reason"]
            async with stack.rt.database.sessions() as session:
                (letter,) = (await session.execute(select(DeadLetter))).scalars().all()
            assert letter.queue == QueueNames(stack.settings.broker.prefix).referral_replies
            assert letter.id == gave_up["detail"]["dead_letter_id"]

            # The operator's tools: listed with its reason, replayed once the receiver works.
            code, out, err = await stack.shouli("dead-letters", "list")
            assert code == 0, err
            assert "referral-replies" in out and "HTTP 500" in out
            receiver.fail_first = len(receiver.requests)  # it accepts from now on
            code, out, err = await stack.shouli("dead-letters", "replay", str(letter.id))
            assert code == 0, err

            await sweep_until(worker, stack, "sent")
        finally:
            await worker.close()
    ticket = await ticket_of(stack, number)
    assert len(events(ticket, "reply_replayed")) == 1
    assert len(events(ticket, "reply_delivered")) == 1


async def test_a_reply_refused_with_a_4xx_is_dead_at_once(embedded_stack: Stack) -> None:
    async with Receiver(fail_first=None, fail_status=401) as receiver:
        runtime = _runtime(embedded_stack, receiver.url)
        await handled_referral(embedded_stack, runtime)
        worker = referrals_worker(embedded_stack, runtime)

        try:
            await sweep_until(worker, embedded_stack, "dead")
        finally:
            await worker.close()
    assert len(receiver.requests) == 1


async def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    from ingest.backoff import backoff_seconds

    settings = ReplySettings(retry_base_seconds=30, retry_max_seconds=3600)
    assert [backoff_seconds(n, settings, rand=lambda: 1.0) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff_seconds(20, settings, rand=lambda: 1.0) == 3600
    assert backoff_seconds(1, settings, rand=lambda: 0.0) == 15


async def test_a_sign_for_confirmation_goes_back_when_the_ticket_is_registered(
    embedded_stack: Stack,
) -> None:
    async with Receiver() as receiver:
        runtime = _runtime(embedded_stack, receiver.url, source="gov12345")
        async with api_client(runtime) as client:
            placed = await post_signed(client, order())
        number = placed.json()["number"]
        assert await embedded_stack.drain() == 1
        worker = referrals_worker(embedded_stack, runtime)

        try:
            await sweep_until(worker, embedded_stack, "sent")
        finally:
            await worker.close()
    (request,) = receiver.requests
    confirmation = json.loads(request.body)
    # The 12345 mapping's own names for the reply's fields.
    assert confirmation["回复类型"] == "sign_for"
    assert confirmation["工单编号"] == "SZ12345-20261124-000871"
    assert confirmation["受理编号"] == number
    assert confirmation["签收人"] == "liaison-12345"
    assert len(confirmation["签收时间"]) == len("2026-11-24 09:31:00")
    ticket = await ticket_of(embedded_stack, number)
    (signed_for,) = events(ticket, "signed_for")
    assert signed_for["detail"]["desk"] == "liaison-12345"
    (registered,) = events(ticket, "referral_registered")
    assert registered["detail"]["clocks"]["sign_for_due"].startswith("2026-11-24T03:30:00")
    assert registered["detail"]["confidential"] is False


async def test_a_returned_order_handled_again_sends_a_second_reply(
    embedded_stack: Stack,
) -> None:
    async with Receiver() as receiver:
        runtime = _runtime(embedded_stack, receiver.url)
        number = await handled_referral(embedded_stack, runtime)
        worker = referrals_worker(embedded_stack, runtime)

        try:
            await sweep_until(worker, embedded_stack, "sent")
            async with api_client(runtime) as client:
                returned = {
                    "order_id": "HR-2026-11-0457",
                    "type": "returned",
                    "reason": "未附检测报告",
                }
                back = await post_signed(
                    client, returned, source="housing-regulator", secret=REGULATOR
                )
                assert back.json() == {"number": number, "update": "returned"}
                again = await client.post(
                    f"/api/tickets/{number}/events",
                    json={"kind": "handle", "detail": {"result": "已补充水质检测报告"}},
                    headers=STAFF,
                )
                assert again.status_code == 201, again.text
            await sweep_until(worker, embedded_stack, "sent", count=2)
        finally:
            await worker.close()
    assert [json.loads(r.body)["result"] for r in receiver.requests] == [
        "已更换小区二次供水水箱，水质检测合格",
        "已补充水质检测报告",
    ]


async def test_a_withdrawal_cancels_replies_not_yet_sent(embedded_stack: Stack) -> None:
    async with Receiver(fail_first=None) as receiver:
        runtime = _runtime(embedded_stack, receiver.url)
        runtime = runtime_with(
            runtime, replies=FAST.model_copy(update={"retry_base_seconds": 60.0})
        )
        number = await handled_referral(embedded_stack, runtime)
        worker = referrals_worker(embedded_stack, runtime)
        try:
            await worker.sweep()  # one failed attempt; the next one is a minute away
            async with api_client(runtime) as client:
                withdrawal = {"order_id": "HR-2026-11-0457", "type": "withdrawal", "reason": "撤诉"}
                await post_signed(client, withdrawal, source="housing-regulator", secret=REGULATOR)
        finally:
            await worker.close()
    (row,) = await outbox(embedded_stack)
    assert row.status == "cancelled"
    (withdrawn,) = events(await ticket_of(embedded_stack, number), "referral_withdrawn")
    assert withdrawn["detail"]["replies_cancelled"] == 1
