"""The notification outbox end to end: acknowledgements (受理回执) to complainants and urge
(催办) notices to departments, sent by the ``notify`` worker through a real local SMTP server
(aiosmtpd on a loopback port) in both deployment modes. Tickets are made by the real router."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from sqlalchemy import func, insert, select
from sqlmodel import col
from structlog.testing import capture_logs

from channels.email.notices import queue_acknowledgements
from channels.email.settings import OutboundSmtp, OutboundTls, OutboxSettings
from channels.runtime import Runtime
from channels.web.i18n import format_when
from ingest.draft import Channel, MailThread, TicketDraft
from ingest.queues import QueueNames
from store.db import Database
from store.models import DeadLetter, Event, Ticket
from store.notification_models import Notification
from store.settings import DatabaseSettings
from store.tickets import NewTicket, find_ticket, ticket_json
from tests.stack import ZHANG, Stack, make_draft
from tests.support_http import STAFF, api_client
from tests.test_web_support import complaint_fields
from workers.notify import NotifyWorker

SENDER = "noreply@water.example.cn"
FAST = OutboxSettings(
    poll_interval_seconds=0.05,
    batch_size=50,
    max_attempts=4,
    retry_base_seconds=0.05,
    retry_max_seconds=0.2,
    lease_seconds=60,
)
ZONE = ZoneInfo("Asia/Shanghai")


# --- a real SMTP server -------------------------------------------------------------------


@dataclass
class Envelope:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


@dataclass
class Sink:
    """An SMTP server that keeps what it accepts; ``fail_first`` DATA commands get 451, and
    with ``refuse`` every DATA gets 550 (quoting the address, as real servers do)."""

    fail_first: int = 0
    refuse: bool = False
    received: list[Envelope] = field(default_factory=list)
    data_commands: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.refuse:
            return f"550 5.1.1 <{envelope.rcpt_tos[0]}>: Recipient address rejected"
        if self.data_commands <= self.fail_first:
            return "451 4.3.0 Temporary local problem, try again later"
        self.received.append(
            Envelope(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 2.0.0 Ok: queued"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def smtp_sink(sink: Sink) -> AsyncIterator[OutboundSmtp]:
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    await asyncio.to_thread(controller.start)
    try:
        yield OutboundSmtp(
            host="127.0.0.1",
            port=controller.port,
            tls=OutboundTls.NONE,
            from_address=SENDER,
            from_name="示例市水务集团客服中心",
            timeout_seconds=10,
        )
    finally:
        await asyncio.to_thread(controller.stop)


# --- the stack ----------------------------------------------------------------------------


def with_email(runtime: Runtime, **changes: Any) -> Runtime:
    """The same store and queue with ``email`` settings changed (frozen models: a copy)."""
    settings = runtime.settings
    changed = settings.email.model_copy(update={"outbox": FAST, **changes})
    return dataclasses.replace(runtime, settings=settings.model_copy(update={"email": changed}))


def notify_worker(stack: Stack, runtime: Runtime) -> NotifyWorker:
    return NotifyWorker(runtime, stack.settings.worker)


def email_draft(
    address: str | None = "Zhang.San@Example.CN", *, channel: Channel = Channel.EMAIL, **fields: Any
) -> TicketDraft:
    source_key = f"<{uuid.uuid4().hex}@mail.example.cn>"
    # No phone: drafts sharing one are the same person, and the router merges repeats.
    complainant = {"name": "张三", "email": address}
    data: dict[str, Any] = {"complainant": complainant, "channel": channel}
    if channel is Channel.EMAIL:
        data["mail"] = MailThread(sender=(address or "").lower() or None, message_id=source_key)
    return make_draft(source_key, **(data | fields))


async def make_tickets(stack: Stack, *drafts: TicketDraft) -> list[str]:
    """Through the queue and the real router; the tickets' numbers in the drafts' order."""
    before = await stack.ticket_count()
    await stack.rt.handoff.submit_many(list(drafts))
    stack.start_router()
    assert await stack.wait_for_tickets(before + len(drafts)) == before + len(drafts)
    async with stack.rt.database.sessions() as session:
        result = await session.execute(select(col(Ticket.source_key), col(Ticket.number)))
        found = {key: number for key, number in result.all()}
    return [found[d.source_key] for d in drafts]


async def rows(stack: Stack) -> list[Notification]:
    async with stack.rt.database.sessions() as session:
        result = await session.execute(select(Notification).order_by(col(Notification.id)))
        return list(result.scalars())


async def ticket_of(stack: Stack, number: str) -> dict[str, Any]:
    async with stack.rt.database.sessions() as session:
        ticket = await find_ticket(session, number)
        assert ticket is not None
        return await ticket_json(session, ticket)


def events(ticket: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in ticket["events"] if e["kind"] == kind]


async def sweep_until(
    workers: list[NotifyWorker], done: Callable[[], Awaitable[bool]], timeout: float = 30.0
) -> None:
    """Sweep (all ``workers`` at once) until ``done``; no timing assertions, just a bound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.gather(*(w.sweep() for w in workers))
        if await done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not get there in time")


def all_sent(stack: Stack, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await rows(stack)
        return len(found) == count and all(r.status == "sent" for r in found)

    return check


def token_in(text: str, stack: Stack) -> str:
    base = re.escape(stack.settings.organisation.public_url.rstrip("/"))
    found = re.search(base + r"/progress/([A-Za-z0-9_-]{20,})", text)
    assert found, text
    return found.group(1)


# --- acknowledgements ---------------------------------------------------------------------


async def test_an_email_complaint_is_acknowledged_in_its_thread_with_a_working_progress_link(
    stack: Stack,
) -> None:
    draft = email_draft()
    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(stack.rt, outbound=server)
        stack.settings = runtime.settings  # the router, too, knows the sender's domain
        (number,) = await make_tickets(stack, draft)
        worker = notify_worker(stack, runtime)
        await sweep_until([worker], all_sent(stack, 1))

    (row,) = await rows(stack)
    assert (row.kind, row.recipient, row.number, row.attempts) == (
        "ack",
        "zhang.san@example.cn",
        number,
        1,
    )
    (mail,) = sink.received
    assert mail.mail_from == SENDER and mail.rcpt_tos == ["zhang.san@example.cn"]
    message = mail.message
    assert message["Message-ID"] == row.message_id
    assert row.message_id.startswith("<ack.") and row.message_id.endswith("@water.example.cn>")
    assert message["In-Reply-To"] == draft.source_key
    assert message["References"] == draft.source_key
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert f"[{number}]" in message["Subject"] and "您的投诉已受理" in message["Subject"]
    assert "Your complaint has been received" in message["Subject"]
    assert message["From"].addresses[0].display_name == "示例市水务集团客服中心"
    assert message["Reply-To"] == "complaints@water.example.cn"

    ticket = await ticket_of(stack, number)
    due = datetime.fromisoformat(ticket["due_at"].replace("Z", "+00:00"))
    text = mail.text
    assert text.index("您的投诉已受理") < text.index("Your complaint has been received")
    assert text.count(number) >= 2, "the number, in Chinese and in English"
    assert format_when(due, ZONE, "zh") in text and format_when(due, ZONE, "en") in text
    assert "96116" in text and "reply to this mail" in text and "直接回复本邮件" in text
    token = token_in(text, stack)

    async with api_client(stack.rt) as client:
        page = await client.get(f"/progress/{token}")
        api = await client.get(f"/api/progress/{token}")
        # The link and a "number + contact" inquiry agree on the contact.
        inquiry = await client.get(
            f"/api/complaints/{number}/progress", params={"contact": "Zhang.San@example.cn"}
        )
    assert page.status_code == 200 and number in page.text
    assert api.status_code == 200 and api.json()["number"] == number
    assert inquiry.status_code == 200 and inquiry.json()["number"] == number

    (sent,) = events(ticket, "notification_sent")
    assert sent["detail"]["message_id"] == row.message_id
    assert sent["detail"]["notification"] == "ack"
    assert "zhang.san" not in json.dumps(ticket["events"]).lower(), "no address in events"


async def test_a_web_complaint_with_an_email_contact_is_acknowledged(stack: Stack) -> None:
    async with api_client(stack.rt) as client:
        answer = await client.post(
            "/api/complaints", data=complaint_fields(contact="Li.Si@Example.CN")
        )
        assert answer.status_code == 201, answer.text
        number = answer.json()["number"]
        stack.start_router()
        assert await stack.wait_for_tickets(1) == 1
        async with smtp_sink(sink := Sink()) as server:
            worker = notify_worker(stack, with_email(stack.rt, outbound=server))
            await sweep_until([worker], all_sent(stack, 1))
        (mail,) = sink.received
        assert mail.rcpt_tos == ["li.si@example.cn"]
        assert mail.message["In-Reply-To"] is None, "nothing to thread under"
        assert f"[{number}]" in mail.message["Subject"]
        token = token_in(mail.text, stack)
        from_mail = await client.get(f"/api/progress/{token}")
        from_answer = await client.get(answer.json()["progress_url"].split("8000", 1)[1])
        inquiry = await client.get(
            f"/api/complaints/{number}/progress", params={"contact": "li.si@example.cn"}
        )
    assert from_mail.status_code == 200 and from_mail.json()["number"] == number
    assert from_answer.status_code == 200, "the answer page's link still works"
    assert inquiry.status_code == 200


async def test_a_complaint_not_accepted_is_acknowledged_with_the_reason(stack: Stack) -> None:
    """不予受理: recorded under a number, and the complainant is told why (the seeds:
    "otherwise explain the reason")."""
    details = "水费多收了两百元，这件事法院已立案，我想你们也知道一下。"
    fields = complaint_fields(contact="wang.wu@example.cn", category="billing", details=details)
    async with api_client(stack.rt) as client:
        answer = await client.post("/api/complaints", data=fields)
        assert answer.status_code == 201, answer.text
        number = answer.json()["number"]
        stack.start_router()
        assert await stack.wait_for_tickets(1) == 1
        async with smtp_sink(sink := Sink()) as server:
            worker = notify_worker(stack, with_email(stack.rt, outbound=server))
            await sweep_until([worker], all_sent(stack, 1))
    (mail,) = sink.received
    assert mail.message["Subject"].startswith(f"[{number}] 您的投诉已登记，不予受理")
    assert "原因：已由法院或仲裁机构受理或裁决" in mail.text
    assert "Reason: 已由法院或仲裁机构受理或裁决" in mail.text
    assert "已受理" not in mail.text.split("原因")[0]
    async with stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalars().one()
    assert (ticket.status, ticket.department) == ("rejected", "customer_service")


async def test_replays_restarts_and_competing_workers_send_each_acknowledgement_once(
    stack: Stack,
) -> None:
    drafts = [email_draft(f"person{i}@example.cn") for i in range(6)]
    numbers = await make_tickets(stack, *drafts)
    # The same drafts again (a redelivery, a re-sent mail): the router finds the tickets.
    await stack.rt.handoff.submit_many(drafts)
    # And the router's batch replayed: the same tickets handed to the outbox again.
    replayed = [
        NewTicket(d, n, "other", "general", "dispatched", True, None, None, None, ())
        for d, n in zip(drafts, numbers, strict=True)
    ]
    email_settings = stack.settings.email
    again = await stack.rt.database.write(
        lambda conn: queue_acknowledgements(conn, replayed, email_settings, datetime.now(UTC))
    )
    assert again == 0
    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(stack.rt, outbound=server)
        competing = [notify_worker(stack, runtime) for _ in range(3)]
        await sweep_until(competing, all_sent(stack, 6))
        # A worker restarted afterwards finds nothing left to send.
        restarted = notify_worker(stack, runtime)
        await restarted.sweep()
        await restarted.sweep()
    assert await stack.ticket_count() == 6
    assert sorted(m.rcpt_tos[0] for m in sink.received) == sorted(
        f"person{i}@example.cn" for i in range(6)
    )
    assert len({m.message["Message-ID"] for m in sink.received}) == 6
    for number in numbers:
        assert len(events(await ticket_of(stack, number), "notification_sent")) == 1


async def test_no_acknowledgement_for_anonymous_unaddressed_our_own_or_unlisted_channels(
    stack: Stack,
) -> None:
    control = email_draft("someone@example.cn")
    quiet = [
        email_draft("anon@example.cn", complainant={"email": "anon@example.cn", "anonymous": True}),
        email_draft(None),
        email_draft("Complaints@Water.Example.CN"),  # our own mailbox: a mail loop
        email_draft("caller@example.cn", channel=Channel.PHONE),
        email_draft("system@example.cn", channel=Channel.API),
    ]
    await make_tickets(stack, control, *quiet)
    assert [r.recipient for r in await rows(stack)] == ["someone@example.cn"]
    async with smtp_sink(sink := Sink()) as server:
        worker = notify_worker(stack, with_email(stack.rt, outbound=server))
        await sweep_until([worker], all_sent(stack, 1))
        await worker.sweep()
    assert [m.rcpt_tos for m in sink.received] == [["someone@example.cn"]]


async def test_a_router_with_acknowledgements_disabled_queues_none(stack: Stack) -> None:
    settings = stack.settings
    ack = settings.email.acknowledgement.model_copy(update={"enabled": False})
    # The router takes its settings from the stack: this one runs with acknowledgements off.
    stack.settings = settings.model_copy(
        update={"email": settings.email.model_copy(update={"acknowledgement": ack})}
    )
    await make_tickets(stack, email_draft(), email_draft("other@example.cn"))
    assert await rows(stack) == []


async def test_a_temporary_refusal_is_retried_with_backoff_until_accepted(stack: Stack) -> None:
    (number,) = await make_tickets(stack, email_draft())
    async with smtp_sink(sink := Sink(fail_first=2)) as server:
        # The worker's own loop this time, as `shouli worker notify` runs it.
        worker = notify_worker(stack, with_email(stack.rt, outbound=server))
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        try:
            assert await stack.wait_until(all_sent(stack, 1), timeout=30)
        finally:
            stopping.set()
            await running
    (row,) = await rows(stack)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert sink.data_commands == 3 and len(sink.received) == 1
    ticket = await ticket_of(stack, number)
    failed = events(ticket, "notification_attempt_failed")
    assert [f["detail"]["attempt"] for f in failed] == [1, 2]
    assert all("451" in f["detail"]["error"] and f["detail"]["next_attempt_at"] for f in failed)
    (sent,) = events(ticket, "notification_sent")
    assert sent["detail"]["attempt"] == 3
    assert sink.received[0].message["Message-ID"] == row.message_id, "the same mail each time"


async def test_a_permanent_refusal_is_a_dead_letter_that_can_be_replayed(stack: Stack) -> None:
    (number,) = await make_tickets(stack, email_draft())
    async with smtp_sink(sink := Sink(refuse=True)) as server:
        worker = notify_worker(stack, with_email(stack.rt, outbound=server))

        async def dead() -> bool:
            return [r.status for r in await rows(stack)] == ["dead"]

        await sweep_until([worker], dead)
        (row,) = await rows(stack)
        assert row.attempts == 1 and sink.data_commands == 1, "a 5xx is not retried"
        async with stack.rt.database.sessions() as session:
            (letter,) = (await session.execute(select(DeadLetter))).scalars().all()
        assert letter.queue == QueueNames(stack.settings.broker.prefix).notifications
        assert "550" in letter.reason and "zhang.san@" not in letter.reason
        ticket = await ticket_of(stack, number)
        (failed,) = events(ticket, "notification_failed")
        assert failed["detail"]["dead_letter_id"] == letter.id
        assert "550" in failed["detail"]["error"]
        assert "zhang.san@" not in json.dumps(ticket["events"]).lower()

        # The address was fixed: replay it as operators do, and it goes out.
        sink.refuse = False
        code, out, err = await stack.shouli("dead-letters", "replay", str(letter.id))
        assert code == 0, out + err
        await sweep_until([worker], all_sent(stack, 1))
    assert [m.message["Message-ID"] for m in sink.received] == [row.message_id]
    assert len(events(await ticket_of(stack, number), "notification_replayed")) == 1


async def test_without_an_outbound_server_acknowledgements_wait_until_one_is_configured(
    stack: Stack,
) -> None:
    await make_tickets(stack, email_draft())
    unconfigured = notify_worker(stack, with_email(stack.rt, outbound=None))
    for _ in range(3):
        await unconfigured.sweep()
    (row,) = await rows(stack)
    assert (row.status, row.attempts) == ("pending", 0)
    async with smtp_sink(sink := Sink()) as server:
        configured = notify_worker(stack, with_email(stack.rt, outbound=server))
        await sweep_until([configured], all_sent(stack, 1))
    (mail,) = sink.received
    # Queued before a server was known: the Message-ID's domain is our listener's name.
    assert mail.message["Message-ID"] == row.message_id
    assert row.message_id.endswith(f"@{stack.settings.email.smtp.hostname}>")


# --- urge notices -------------------------------------------------------------------------


async def test_an_urge_notifies_the_departments_mailbox_without_personal_data(
    stack: Stack,
) -> None:
    departments = {d.key: d.email for d in stack.settings.departments}
    assert departments["water_quality_centre"] and not departments["billing"]
    water = make_draft(category="water_quality", channel=Channel.API, complainant=ZHANG)
    billing = make_draft(category="billing", channel=Channel.API, body="水费账单金额异常，请核实。")
    numbers = await make_tickets(stack, water, billing)
    async with api_client(stack.rt) as client:
        for number in numbers:
            urged = await client.post(
                f"/api/tickets/{number}/events", json={"kind": "urge"}, headers=STAFF
            )
            assert urged.status_code == 201, urged.text

    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(stack.rt, outbound=server)
        workers = [notify_worker(stack, runtime), notify_worker(stack, runtime)]
        await sweep_until(workers, all_sent(stack, 1))
        await asyncio.gather(*(w.sweep() for w in workers))
    (row,) = await rows(stack)
    assert (row.kind, row.number, row.recipient) == (
        "urge",
        numbers[0],
        departments["water_quality_centre"],
    )
    (mail,) = sink.received
    assert mail.rcpt_tos == ["shuizhi@water.example.cn"]
    message = mail.message
    assert f"[{numbers[0]}]" in message["Subject"] and "催办" in message["Subject"]
    assert message["Auto-Submitted"] == "auto-generated"
    ticket = await ticket_of(stack, numbers[0])
    due = datetime.fromisoformat(ticket["due_at"].replace("Z", "+00:00"))
    text = mail.text
    assert numbers[0] in text and "催办" in text and "urge" in text
    assert format_when(due, ZONE, "zh") in text and format_when(due, ZONE, "en") in text
    raw = mail.raw.decode("utf-8", "replace") + text
    for personal in ("张三", "13812345678", "zhang@example.cn", water.body, water.subject):
        assert personal not in raw, personal


async def test_an_urge_names_the_department_it_is_meant_for(stack: Stack) -> None:
    # A referral's urge or a hotline repeat may name the department to remind.
    (number,) = await make_tickets(stack, make_draft(category="billing", channel=Channel.API))
    async with stack.rt.database.sessions() as session:
        ticket = await find_ticket(session, number)
        assert ticket is not None and ticket.id is not None
        ticket_id = ticket.id
    await stack.rt.database.write(
        lambda conn: conn.execute(
            insert(Event).values(
                ticket_id=ticket_id,
                at=datetime.now(UTC),
                kind="urge",
                actor="referral:gov12345",
                detail={"notify_department": "network_maintenance"},
            )
        )
    )
    async with smtp_sink(sink := Sink()) as server:
        worker = notify_worker(stack, with_email(stack.rt, outbound=server))
        await sweep_until([worker], all_sent(stack, 1))
    assert [m.rcpt_tos for m in sink.received] == [["weixiu@water.example.cn"]]
    async with stack.rt.database.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(Notification))).scalar_one()
    assert count == 1


# --- outages ------------------------------------------------------------------------------


async def test_a_store_outage_is_logged_once_and_the_worker_carries_on_afterwards(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    await make_tickets(stack, email_draft())
    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(stack.rt, outbound=server)
        # Nothing listens on port 1: every statement fails as in a database outage.
        down = Database(DatabaseSettings(url="postgresql+asyncpg://postgres@127.0.0.1:1/none"))
        worker = notify_worker(stack, dataclasses.replace(runtime, database=down))
        try:
            with capture_logs() as logs:
                results = [await worker.sweep(strict=False) for _ in range(3)]
        finally:
            await down.close()
        assert results == [None, None, None], "a failed pass says so (the loop pauses longer)"
        unavailable = [e for e in logs if e["event"] == "notify_dependency_unavailable"]
        assert [e["step"] for e in unavailable] == ["prepare"], "once per outage"
        assert sink.received == []
        # The store is back (the real one): the same worker catches up.
        worker._runtime = runtime
        with capture_logs() as logs:
            await sweep_until([worker], all_sent(stack, 1))
    assert len(sink.received) == 1
    assert [e["event"] for e in logs].count("notify_working_again") == 1
