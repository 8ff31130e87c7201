"""The email reply route (issue 6, item 6 "or email"): a handled referral's reply, and the 签收
confirmation, go to the source's ``reply.email`` through ``email.outbound``, by the same
outbox (attempt events, backoff, dead letters). Against a real local SMTP sink (aiosmtpd)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from channels.email.settings import OutboundSmtp, OutboundTls
from channels.referral.settings import ReplyRoute, ReplySettings
from channels.runtime import Runtime
from ingest.queues import QueueNames
from store.models import DeadLetter
from tests.stack import Stack, events, ticket_of
from tests.support_http import STAFF, api_client
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    REGULATOR,
    fixture,
    handled_referral,
    order,
    outbox,
    post_signed,
    referral_secrets,
    referrals_worker,
    runtime_with,
    source_changes,
    sweep_until,
)

FAST = ReplySettings(
    max_attempts=4, retry_base_seconds=0.05, retry_max_seconds=0.2, timeout_seconds=5
)
REPLY_TO = "feedback@regulator.example.gov.cn"
FROM = "noreply@water.example.cn"


class Sink:
    """An SMTP server standing in for the authority's mail system: answers DATA with
    ``fail_reply`` for the first ``fail_first`` mails (None: always), then 250."""

    def __init__(self, fail_first: int | None = 0, fail_reply: str = "451 4.3.0 Try later"):
        self.fail_first = fail_first
        self.fail_reply = fail_reply
        self.attempts: list[bytes] = []
        self.accepted: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.attempts.append(content)
        if self.fail_first is None or len(self.attempts) <= self.fail_first:
            return self.fail_reply
        self.accepted.append((list(envelope.rcpt_tos), content))
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sink_on(sink: Sink) -> Iterator[int]:
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _runtime(stack: Stack, port: int, source: str = "housing-regulator") -> Runtime:
    outbound = OutboundSmtp(
        host="127.0.0.1",
        port=port,
        tls=OutboundTls.NONE,
        from_address=FROM,
        from_name="示例市水务集团",
        timeout_seconds=10,
    )
    runtime = runtime_with(
        stack.rt,
        replies=FAST,
        sources=source_changes(stack.rt, source, reply=ReplyRoute(email=REPLY_TO)),
    )
    email = runtime.settings.email.model_copy(update={"outbound": outbound})
    settings = runtime.settings.model_copy(update={"email": email})
    return dataclasses.replace(runtime, settings=settings)


def _parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _json_attachment(message: EmailMessage) -> dict[str, Any]:
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/json"]
    data: dict[str, Any] = json.loads(part.get_payload(decode=True))
    return data


async def test_a_reply_and_a_sign_for_confirmation_go_back_by_mail(stack: Stack) -> None:
    sink = Sink()
    with sink_on(sink) as port:
        runtime = _runtime(stack, port, source="gov12345")
        async with api_client(runtime) as client:
            placed = await post_signed(client, order())
            assert placed.status_code == 201, placed.text
            number = placed.json()["number"]
            assert await stack.drain() == 1
            worker = referrals_worker(stack, runtime)
            try:
                await sweep_until(worker, stack, "sent")  # the 签收 confirmation
                handled = await client.post(
                    f"/api/tickets/{number}/events",
                    json={
                        "kind": "handle",
                        "detail": {"result": "已恢复供水", "result_code": "01"},
                    },
                    headers=STAFF,
                )
                assert handled.status_code == 201, handled.text
                await sweep_until(worker, stack, "sent", count=2)
            finally:
                await worker.close()
    assert [rcpt for rcpt, _ in sink.accepted] == [[REPLY_TO], [REPLY_TO]]
    confirmation, reply = (_parsed(raw) for _, raw in sink.accepted)
    for message in (confirmation, reply):
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["From"].addresses[0].addr_spec == FROM
        assert message["Message-ID"].endswith("@water.example.cn>")
        assert "SZ12345-20261124-000871" in message["Subject"] and number in message["Subject"]
    assert "签收确认" in confirmation["Subject"] and "办理结果" in reply["Subject"]
    # The 12345 mapping's own reply names, as on the webhook.
    signed_for = _json_attachment(confirmation)
    assert signed_for["回复类型"] == "sign_for" and signed_for["签收人"] == "liaison-12345"
    answer = _json_attachment(reply)
    assert answer["回复类型"] == "reply" and answer["受理编号"] == number
    assert answer["工单编号"] == "SZ12345-20261124-000871"
    assert answer["答复内容"] == "已恢复供水" and answer["办理结果"] == "01"
    text = reply.get_body(preferencelist=("plain",))
    assert text is not None
    content = text.get_content()
    assert "答复内容：已恢复供水" in content and f"受理编号：{number}" in content
    ticket = await ticket_of(stack, number)
    assert len(events(ticket, "reply_delivered")) == 2


async def test_a_mail_reply_refused_with_451_twice_is_sent_on_the_third_attempt(
    stack: Stack,
) -> None:
    sink = Sink(fail_first=2)
    with sink_on(sink) as port:
        runtime = _runtime(stack, port)
        number = await handled_referral(stack, runtime)
        worker = referrals_worker(stack, runtime)
        try:
            await sweep_until(worker, stack, "sent")
        finally:
            await worker.close()
    assert len(sink.attempts) == 3 and len(sink.accepted) == 1
    ids = {_parsed(raw)["Message-ID"] for raw in sink.attempts}
    assert len(ids) == 1, "every retry carries the same Message-ID"
    reply = _json_attachment(_parsed(sink.accepted[0][1]))
    assert reply["type"] == "reply" and reply["number"] == number
    assert reply["reference"] == "HR-2026-11-0457"
    ticket = await ticket_of(stack, number)
    attempts = events(ticket, "reply_attempt")
    assert [a["detail"]["delivered"] for a in attempts] == [False, False, True]
    assert [a["detail"]["status"] for a in attempts] == [451, 451, 250]
    assert all(a["detail"]["next_attempt_at"] for a in attempts[:2])
    (row,) = await outbox(stack)
    assert (row.status, row.attempts) == ("sent", 3)


async def test_a_mail_reply_refused_with_550_is_a_dead_letter_at_once(stack: Stack) -> None:
    sink = Sink(fail_first=None, fail_reply="550 5.7.1 Not accepted here")
    with sink_on(sink) as port:
        runtime = _runtime(stack, port)
        number = await handled_referral(stack, runtime)
        worker = referrals_worker(stack, runtime)
        try:
            await sweep_until(worker, stack, "dead")
            await asyncio.sleep(0.3)
            await worker.sweep()
        finally:
            await worker.close()
    assert len(sink.attempts) == 1, "a 5xx is not retried"
    ticket = await ticket_of(stack, number)
    (attempt,) = events(ticket, "reply_attempt")
    assert attempt["detail"]["status"] == 550
    (gave_up,) = events(ticket, "reply_dead_lettered")
    assert "refused by the receiver" in gave_up["detail"]["reason"]
    assert "550" in gave_up["detail"]["reason"]
    async with stack.rt.database.sessions() as session:
        (letter,) = (await session.execute(select(DeadLetter))).scalars().all()
    assert letter.queue == QueueNames(stack.settings.broker.prefix).referral_replies


async def test_a_mail_server_that_is_down_is_retried_not_dead(embedded_stack: Stack) -> None:
    port = _free_port()  # nothing listens here
    runtime = _runtime(embedded_stack, port)
    runtime = runtime_with(runtime, replies=FAST.model_copy(update={"max_attempts": 2}))
    number = await handled_referral(embedded_stack, runtime)
    worker = referrals_worker(embedded_stack, runtime)
    try:
        await sweep_until(worker, embedded_stack, "dead")
    finally:
        await worker.close()
    ticket = await ticket_of(embedded_stack, number)
    attempts = events(ticket, "reply_attempt")
    assert len(attempts) == 2, "a connection error is retried until max_attempts"
    assert all(a["detail"]["status"] is None for a in attempts)
    (gave_up,) = events(ticket, "reply_dead_lettered")
    assert "2 attempts failed" in gave_up["detail"]["reason"]
