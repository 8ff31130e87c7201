"""SMS to complainants: the acknowledgement when the ticket is made and the result when staff
feed it back by SMS, queued in the one notification outbox and sent by the ``notify`` worker
to a real local HTTP receiver (a generic signed gateway, and Alibaba Cloud's SendSms shape),
in both deployment modes. Tickets are made by the real router."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlmodel import col

from channels.email.settings import OutboxSettings
from channels.runtime import Runtime
from channels.sms.notices import queue_sms_acknowledgements
from channels.sms.providers import aliyun_signature
from channels.sms.settings import AliyunSettings, GatewaySettings, QuietHours, SmsSettings
from ingest.draft import Channel, TicketDraft
from store.models import DeadLetter, Ticket
from store.notification_models import Notification
from store.notification_outbox import NOTIFICATIONS
from store.outbox import claim_due
from store.tickets import NewTicket
from tests.stack import Stack, make_draft, ticket_of
from tests.support_http import api_client, post_events
from workers.notify import NotifyWorker

SECRET = "gateway-shared-secret-0123456789"
ALIYUN_SECRET = "aliyun-access-key-secret"
MOBILE = "+8613912345678"
ZONE = ZoneInfo("Asia/Shanghai")
FAST = OutboxSettings(
    poll_interval_seconds=0.05,
    batch_size=50,
    max_attempts=4,
    retry_base_seconds=0.05,
    retry_max_seconds=0.2,
    lease_seconds=60,
)


# --- a real HTTP receiver -----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next of ``answers`` (the last one repeats)."""

    answers: list[tuple[int, bytes]]
    received: list[Received] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(path, headers, body))
                status, answer = self.answers[min(len(self.received), len(self.answers)) - 1]
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/sms"
    finally:
        server.close()
        await server.wait_closed()


OK = (200, b'{"ok": true}')
BUSY = (503, b'{"error": "busy"}')
REFUSED = (400, b'{"error": "bad number"}')


# --- the stack ----------------------------------------------------------------------------


def with_sms(stack: Stack, sms: SmsSettings) -> Runtime:
    """The router and the notify worker both read ``sms`` (frozen models: a copy)."""
    email = stack.settings.email.model_copy(update={"outbox": FAST})
    stack.settings = stack.settings.model_copy(update={"sms": sms, "email": email})
    return dataclasses.replace(stack.rt, settings=stack.settings)


def gateway(url: str, **changes: Any) -> SmsSettings:
    fields: dict[str, Any] = {
        "provider": "gateway",
        "gateway": GatewaySettings(url=url, secret=SECRET),
        "quiet_hours": None,
    }
    return SmsSettings.model_validate(fields | changes)


def call_draft(phone: str | None = MOBILE, **complainant: Any) -> TicketDraft:
    person = {"name": "李四", "phone": phone} | complainant
    return make_draft(channel=Channel.PHONE, complainant=person)


async def make_tickets(stack: Stack, *drafts: TicketDraft) -> list[str]:
    before = await stack.ticket_count()
    await stack.rt.handoff.submit_many(list(drafts))
    stack.start_router()  # a router of its own: it reads the sms settings of this moment
    assert await stack.wait_for_tickets(before + len(drafts)) == before + len(drafts)
    await stack.stop_routers()
    numbers = []
    for draft in drafts:
        async with stack.rt.database.sessions() as session:
            found = await session.execute(
                select(col(Ticket.number)).where(col(Ticket.source_key) == draft.source_key)
            )
            numbers.append(found.scalar_one())
    return numbers


async def rows(stack: Stack) -> list[Notification]:
    async with stack.rt.database.sessions() as session:
        result = await session.execute(select(Notification).order_by(col(Notification.id)))
        return list(result.scalars())


async def sweep_until(
    workers: list[NotifyWorker], done: Callable[[], Awaitable[bool]], timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.gather(*(w.sweep() for w in workers))
        if await done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not get there in time")


def settled(stack: Stack, count: int, status: str = "sent") -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await rows(stack)
        return len(found) == count and all(r.status == status for r in found)

    return check


def kinds(ticket: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in ticket["events"] if e["kind"] == kind]


def verify_gateway_signature(request: Received) -> dict[str, Any]:
    stamp = request.headers["x-shouli-timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["x-shouli-signature"] == f"sha256={expected.hexdigest()}"
    body: dict[str, Any] = json.loads(request.body)
    return body


# --- acknowledgement ----------------------------------------------------------------------


async def test_a_caller_with_a_mobile_gets_one_signed_sms_after_two_refusals(stack: Stack) -> None:
    receiver = Receiver([BUSY, BUSY, OK])
    async with receiving(receiver) as url:
        runtime = with_sms(stack, gateway(url))
        (number,) = await make_tickets(stack, call_draft())
        worker = NotifyWorker(runtime, stack.settings.worker)
        try:
            await sweep_until([worker], settled(stack, 1))
        finally:
            await worker.close()

    (row,) = await rows(stack)
    assert (row.kind, row.recipient, row.attempts) == ("sms_ack", MOBILE, 3)
    assert len(receiver.received) == 3
    bodies = [verify_gateway_signature(r) for r in receiver.received]
    assert {b["id"] for b in bodies} == {row.message_id}, "every attempt is the same message"
    sent = bodies[-1]
    assert sent["to"] == MOBILE and sent["kind"] == "ack"
    assert number in sent["text"] and "已受理" in sent["text"]
    assert "示例市水务集团" in sent["text"]
    assert "/progress/" in sent["text"], "a progress link"
    assert sent["params"]["number"] == number

    ticket = await ticket_of(stack, number)
    assert len(kinds(ticket, "notification_attempt_failed")) == 2
    (done,) = kinds(ticket, "notification_sent")
    assert done["detail"]["notification"] == "sms_ack"
    assert "13912345678" not in json.dumps(ticket["events"]), "no number in events"


async def test_a_receiver_that_never_accepts_ends_in_a_dead_letter(stack: Stack) -> None:
    refused, busy = Receiver([REFUSED]), Receiver([BUSY])
    async with receiving(refused) as refusing_url, receiving(busy) as busy_url:
        runtime = with_sms(stack, gateway(refusing_url))
        (first,) = await make_tickets(stack, call_draft())
        worker = NotifyWorker(runtime, stack.settings.worker)
        try:
            await sweep_until([worker], settled(stack, 1, "dead"))
        finally:
            await worker.close()
        # A gateway that is always busy: retried up to max_attempts, then dead.
        runtime = with_sms(stack, gateway(busy_url))
        (second,) = await make_tickets(stack, call_draft("+8613712345678"))
        worker = NotifyWorker(runtime, stack.settings.worker)
        try:
            await sweep_until([worker], settled(stack, 2, "dead"))
        finally:
            await worker.close()

    by_number = {r.number: r for r in await rows(stack)}
    assert by_number[first].attempts == 1, "a permanent refusal is not retried"
    assert len(refused.received) == 1
    assert by_number[second].attempts == FAST.max_attempts
    assert len(busy.received) == FAST.max_attempts
    async with stack.rt.database.sessions() as session:
        letters = list((await session.execute(select(DeadLetter))).scalars())
    assert len(letters) == 2
    assert all("sms_ack" in (letter.reason or "") for letter in letters)
    assert not any(MOBILE in json.dumps(letter.body, default=str) for letter in letters)


async def test_no_sms_for_a_landline_an_anonymous_caller_an_opted_out_number_or_when_off(
    stack: Stack,
) -> None:
    receiver = Receiver([OK])
    async with receiving(receiver) as url:
        with_sms(stack, gateway(url, opt_out=("+8613612345678",)))
        await make_tickets(
            stack,
            call_draft("+862584123456"),  # a Nanjing landline
            call_draft("+8613512345678", anonymous=True),
            call_draft("+8613612345678"),
            call_draft(None),
        )
        assert await rows(stack) == []
        with_sms(stack, SmsSettings())  # no provider: SMS is off
        await make_tickets(stack, call_draft("+8613412345678"))
    assert await rows(stack) == []


# --- the result ---------------------------------------------------------------------------


async def test_feedback_by_sms_sends_the_result_once_however_often_it_is_swept(
    stack: Stack,
) -> None:
    receiver = Receiver([OK])
    async with receiving(receiver) as url:
        runtime = with_sms(stack, gateway(url))
        (number,) = await make_tickets(stack, call_draft())
        workers = [NotifyWorker(runtime, stack.settings.worker) for _ in range(2)]
        try:
            await sweep_until(workers, settled(stack, 1))
            async with api_client(runtime) as client:
                await post_events(
                    client,
                    number,
                    [
                        ("handle", {"result": "已更换破损水表"}),
                        ("feedback", {"channel": "sms"}),
                    ],
                )
            await sweep_until(workers, settled(stack, 2))
            for _ in range(3):  # replays of the sweep and a competing worker: still one
                await asyncio.gather(*(w.sweep() for w in workers))
        finally:
            for worker in workers:
                await worker.close()

    assert [r.kind for r in await rows(stack)] == ["sms_ack", "sms_result"]
    bodies = [verify_gateway_signature(r) for r in receiver.received]
    assert [b["kind"] for b in bodies].count("ack") == 1, "two workers, one acknowledgement"
    results = [b for b in bodies if b["kind"] == "result"]
    assert len(results) == 1
    assert "已更换破损水表" in results[0]["text"] and number in results[0]["text"]
    assert "96116" in results[0]["text"], "where to turn if they disagree"


# --- quiet hours --------------------------------------------------------------------------


def test_quiet_hours_hold_a_message_until_they_end() -> None:
    quiet = QuietHours()  # 21:00 to 08:00
    late = datetime(2026, 12, 1, 22, 30, tzinfo=ZONE)
    early = datetime(2026, 12, 2, 7, 59, tzinfo=ZONE)
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=ZONE)
    assert quiet.release(late.astimezone(UTC), ZONE) == datetime(2026, 12, 2, 8, 0, tzinfo=ZONE)
    assert quiet.release(early.astimezone(UTC), ZONE) == datetime(2026, 12, 2, 8, 0, tzinfo=ZONE)
    assert quiet.release(noon.astimezone(UTC), ZONE) == noon
    lunch = QuietHours(start=datetime(1, 1, 1, 12).time(), end=datetime(1, 1, 1, 14).time())
    assert lunch.release(noon, ZONE) == datetime(2026, 12, 2, 14, 0, tzinfo=ZONE)


async def test_an_sms_queued_at_night_is_claimed_only_in_the_morning(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    (number,) = await make_tickets(stack, call_draft())  # SMS off: no row yet
    assert await rows(stack) == []
    made = NewTicket(
        draft=call_draft(),
        number=number,
        category="water_quality",
        severity="general",
        status="dispatched",
        valid=True,
        invalid_reason=None,
        department=None,
        due_at=None,
        events=(),
    )
    sms = gateway("http://127.0.0.1:9/sms", quiet_hours=QuietHours())
    night = datetime(2026, 12, 1, 23, 0, tzinfo=ZONE).astimezone(UTC)
    queued = await stack.rt.database.write(
        lambda conn: queue_sms_acknowledgements(conn, [made], sms, ZONE, night)
    )
    assert queued == 1
    lease = timedelta(minutes=2)

    def claim(at: datetime) -> Callable[[Any], list[Any]]:
        return lambda conn: claim_due(conn, NOTIFICATIONS, at, lease=lease, limit=10)

    assert await stack.rt.database.write(claim(night + timedelta(minutes=5))) == []
    morning = datetime(2026, 12, 2, 8, 1, tzinfo=ZONE).astimezone(UTC)
    (due,) = await stack.rt.database.write(claim(morning))
    assert due.recipient == MOBILE and due.kind == "sms_ack"


# --- Alibaba Cloud ------------------------------------------------------------------------


def aliyun(url: str) -> SmsSettings:
    return SmsSettings(
        provider="aliyun",  # type: ignore[arg-type]
        aliyun=AliyunSettings(
            endpoint=url,
            access_key_id="LTAI-test-key",
            access_key_secret=ALIYUN_SECRET,
            sign_name="示例水务",
            templates={"ack": "SMS_100001", "result": "SMS_100002"},
        ),
        quiet_hours=None,
    )


def answer(code: str) -> tuple[int, bytes]:
    body = {"Code": code, "Message": code, "RequestId": uuid.uuid4().hex, "BizId": "9^0"}
    return 200, json.dumps(body).encode()


async def test_the_aliyun_request_is_signed_and_shaped_as_send_sms_wants(stack: Stack) -> None:
    receiver = Receiver([answer("isv.BUSINESS_LIMIT_CONTROL"), answer("OK")])
    async with receiving(receiver) as url:
        runtime = with_sms(stack, aliyun(url))
        (number,) = await make_tickets(stack, call_draft())
        worker = NotifyWorker(runtime, stack.settings.worker)
        try:
            await sweep_until([worker], settled(stack, 1))
        finally:
            await worker.close()

    assert len(receiver.received) == 2, "throttling is retried"
    request = receiver.received[-1]
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    params = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    signature = params.pop("Signature")
    assert signature == aliyun_signature(params, ALIYUN_SECRET)
    assert params["Action"] == "SendSms" and params["Version"] == "2017-05-25"
    assert params["PhoneNumbers"] == "13912345678", "mainland numbers without +86"
    assert params["SignName"] == "示例水务" and params["TemplateCode"] == "SMS_100001"
    assert json.loads(params["TemplateParam"])["number"] == number
    assert params["SignatureMethod"] == "HMAC-SHA1" and params["SignatureVersion"] == "1.0"
    assert params["Timestamp"].endswith("Z")
    nonces = {dict(parse_qsl(r.body.decode()))["SignatureNonce"] for r in receiver.received}
    assert len(nonces) == 2, "a fresh nonce per request"


async def test_an_illegal_number_at_aliyun_is_a_dead_letter_at_once(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    receiver = Receiver([answer("isv.MOBILE_NUMBER_ILLEGAL")])
    async with receiving(receiver) as url:
        runtime = with_sms(stack, aliyun(url))
        await make_tickets(stack, call_draft())
        worker = NotifyWorker(runtime, stack.settings.worker)
        try:
            await sweep_until([worker], settled(stack, 1, "dead"))
        finally:
            await worker.close()
    (row,) = await rows(stack)
    assert row.attempts == 1 and "isv.MOBILE_NUMBER_ILLEGAL" in (row.last_error or "")


def test_the_signature_is_alibaba_clouds_rpc_v1() -> None:
    """Against the HMAC computed here from the documented recipe, written out step by step."""
    params = {"Action": "SendSms", "TemplateParam": '{"a": "b c*~"}', "AccessKeyId": "k"}
    pairs = sorted(params.items())

    def enc(value: str) -> str:
        return quote(value, safe="~")

    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs)
    to_sign = "POST&%2F&" + enc(canonical)
    expected = base64.b64encode(
        hmac.new(b"secret&", to_sign.encode(), hashlib.sha1).digest()
    ).decode()
    assert aliyun_signature(params, "secret") == expected
    assert aliyun_signature({**params, "AccessKeyId": "j"}, "secret") != expected


@pytest.fixture(autouse=True)
def _no_real_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the local receivers are ever reached."""
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
