"""The SMTP listener: exact reply codes, 250 only after a durable hand-off, one ticket per mail."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.email.intake import MailIntake
from channels.email.settings import SmtpSettings
from channels.email.smtp import start_smtp
from store.blobs import BlobStore
from store.models import Attachment, InboundItem, Ticket
from tests.stack import Stack
from tests.support import SHARED, need_shared

MAILBOX = "complaints@water.example.cn"
BILLING = "billing@water.example.cn"
CORPUS = SHARED / "corpus" / "email"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def listener(
    stack: Stack, blobs: BlobStore | None = None, **smtp: object
) -> AsyncIterator[int]:
    port = _free_port()
    config = SmtpSettings(port=port, **smtp)  # type: ignore[arg-type]
    rt = stack.rt
    intake = MailIntake(stack.settings.email, blobs or rt.blobs, rt.handoff, rt.metrics)
    server = await start_smtp(stack.settings, intake, config)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def _complaint(subject: str = "水费异常+张三", message_id: str = "<m1@example.cn>") -> bytes:
    message = EmailMessage()
    message["From"] = "Zhang San <zhangsan@example.cn>"
    message["To"] = MAILBOX
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("本月水费比上月高出三倍，水表读数有误，请核查。联系电话13812345678。")
    message.add_attachment(
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        maintype="image",
        subtype="png",
        filename="水表照片.png",
    )
    return message.as_bytes()


def _transcript(port: int, raw: bytes, recipients: list[str]) -> list[tuple[int, bytes]]:
    """One SMTP session; the reply to every command in order (EHLO, MAIL, RCPT..., DATA)."""
    replies: list[tuple[int, bytes]] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        replies.append(client.ehlo("sender.example.cn"))
        replies.append(client.mail("zhangsan@example.cn"))
        accepted = 0
        for recipient in recipients:
            reply = client.rcpt(recipient)
            replies.append(reply)
            accepted += reply[0] == 250
        if accepted:
            replies.append(client.data(raw))
    return replies


async def send(
    port: int, raw: bytes, recipients: list[str] | None = None
) -> list[tuple[int, bytes]]:
    return await asyncio.to_thread(_transcript, port, raw, recipients or [MAILBOX])


async def test_a_complaint_mail_gets_250_after_hand_off_and_becomes_one_ticket(
    stack: Stack,
) -> None:
    async with listener(stack) as port:
        replies = await send(port, _complaint())
    assert replies[-1] == (250, b"2.0.0 Complaint received")
    assert await stack.drain() == 1
    async with stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
        attachment = (await session.execute(select(Attachment))).scalar_one()
    assert (ticket.channel, ticket.source_key) == ("email", "<m1@example.cn>")
    assert ticket.subject == "水费异常"
    assert (
        ticket.first_contact_kind == "mailbox" and ticket.first_contact_id == "mailbox-complaints"
    )
    assert ticket.category == "billing"
    assert attachment.filename == "水表照片.png" and attachment.content_type == "image/png"
    assert stack.rt.blobs.exists(attachment.sha256)
    assert ticket.raw_sha256 and stack.rt.blobs.exists(ticket.raw_sha256)
    code, out, _ = await stack.shouli("tickets", "show", ticket.number, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["complainant"]["name"] == "张三"
    assert shown["complainant"]["email"] == "zhangsan@example.cn"
    assert shown["complainant"]["phone"] == "+8613812345678"


async def test_unknown_recipients_are_refused_with_550_and_no_relaying(
    embedded_stack: Stack,
) -> None:
    async with listener(embedded_stack) as port:
        replies = await send(
            port, _complaint(), ["someone@elsewhere.example", "ceo@water.example.cn"]
        )
    assert replies[2] == (550, b"5.1.1 Not a complaint mailbox here; relaying denied")
    assert replies[3][0] == 550
    assert len(replies) == 4, "no DATA without an accepted recipient"
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0


async def test_size_is_announced_and_an_oversize_mail_gets_552(embedded_stack: Stack) -> None:
    async with listener(embedded_stack, max_message_bytes=20_000) as port:
        replies = await send(port, _complaint() + b"\r\n".join([b"x" * 70] * 500))
    ehlo_code, ehlo_text = replies[0]
    assert ehlo_code == 250 and b"SIZE 20000" in ehlo_text
    assert replies[-1][0] == 552
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0


async def test_too_many_recipients_get_452(embedded_stack: Stack) -> None:
    async with listener(embedded_stack, max_recipients=1) as port:
        replies = await send(port, _complaint(), [MAILBOX, BILLING])
    assert replies[2][0] == 250
    assert replies[3] == (452, b"4.5.3 Too many recipients")


async def test_a_store_that_cannot_write_gives_451_and_queues_nothing(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "blobs-is-a-file"
    not_a_directory.write_text("occupied")
    async with listener(embedded_stack, blobs=BlobStore(not_a_directory)) as port:
        replies = await send(port, _complaint())
    assert replies[-1] == (
        451,
        b"4.3.0 Complaint could not be stored right now; please try again later",
    )
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0


@pytest.mark.slow
async def test_a_broker_that_is_down_gives_451_and_the_retry_is_accepted(
    distributed_stack: Stack,
) -> None:
    from tests.support_rabbit import rabbitmqctl, start_app

    stack = distributed_stack
    async with listener(stack) as port:
        await rabbitmqctl("stop_app")
        try:
            replies = await send(port, _complaint(message_id="<down@example.cn>"))
        finally:
            await start_app()
        assert replies[-1][0] == 451
        # The sending server retries later, as 451 asks it to.
        for _ in range(60):
            replies = await send(port, _complaint(message_id="<down@example.cn>"))
            if replies[-1][0] == 250:
                break
            await asyncio.sleep(1)
    assert replies[-1] == (250, b"2.0.0 Complaint received")
    assert await stack.drain() == 1


async def test_the_same_mail_delivered_twice_and_to_two_mailboxes_makes_one_ticket(
    stack: Stack,
) -> None:
    raw = _complaint(message_id="<twice@example.cn>")
    async with listener(stack) as port:
        first = await send(port, raw, [MAILBOX, BILLING])
        second = await send(port, raw, [BILLING])
    assert first[-1][0] == second[-1][0] == 250
    assert await stack.drain() == 1, "one ticket, not even a second one later"
    async with stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
    assert ticket.first_contact_id == "mailbox-complaints", "the first listed mailbox owns it"


async def test_an_auto_reply_is_accepted_but_never_becomes_a_ticket(embedded_stack: Stack) -> None:
    message = EmailMessage()
    message["From"] = "someone@example.cn"
    message["To"] = MAILBOX
    message["Subject"] = "自动回复: 我正在休假"
    message["Auto-Submitted"] = "auto-replied"
    message["Message-ID"] = "<auto@example.cn>"
    message.set_content("我正在休假，回来后回复您。")
    embedded_stack.start_router()
    async with listener(embedded_stack) as port:
        replies = await send(port, message.as_bytes())
    assert replies[-1][0] == 250
    # Queued so the router can record it (on the ticket it answers, if any), never ticketed.
    assert await embedded_stack.wait_until(_inbound_recorded(embedded_stack, "<auto@example.cn>"))
    assert await embedded_stack.ticket_count() == 0


def _inbound_recorded(stack: Stack, source_key: str) -> Callable[[], Awaitable[bool]]:
    async def recorded() -> bool:
        async with stack.rt.database.sessions() as session:
            found = await session.execute(
                select(InboundItem.id).where(InboundItem.source_key == source_key)
            )
            return found.first() is not None

    return recorded


async def test_one_session_past_the_connection_limit_is_told_421(embedded_stack: Stack) -> None:
    async with listener(embedded_stack, max_connections=1) as port:
        first_reader, first_writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await first_reader.readline()).startswith(b"220 ")
        second_reader, second_writer = await asyncio.open_connection("127.0.0.1", port)
        assert (
            await second_reader.readline() == b"421 4.7.0 Too many connections, try again later\r\n"
        )
        second_writer.close()
        first_writer.close()


async def test_every_corpus_message_goes_through_the_real_listener_without_harm(
    embedded_stack: Stack,
) -> None:
    need_shared(CORPUS)
    files = [
        manifest.parent / entry["file"]
        for manifest in sorted(CORPUS.glob("*/MANIFEST.json"))
        for entry in json.loads(manifest.read_text(encoding="utf-8"))["entries"]
        # One mail-parser entry is an Outlook .msg file, not a mail (corpus/README.md).
        if not entry["file"].lower().endswith(".msg")
    ]
    assert len(files) >= 120, f"corpus not found under {CORPUS}"
    codes: dict[int, int] = {}
    async with listener(embedded_stack) as port:
        for path in files:
            replies = await send(port, path.read_bytes())
            codes[replies[-1][0]] = codes.get(replies[-1][0], 0) + 1
        # The listener still answers normally afterwards.
        assert (await send(port, _complaint(message_id="<after@example.cn>")))[-1][0] == 250
    assert set(codes) == {250}, codes
    queued = await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts)
    assert 0 < queued <= len(files) + 1


async def test_a_mail_nested_too_deep_to_walk_still_becomes_a_ticket_with_its_raw_bytes(
    embedded_stack: Stack,
) -> None:
    # A MIME structure nested past the stdlib parser's recursion limit, from a broken mailer.
    depth = 3000
    raw = (
        b"From: zhangsan@example.cn\r\nTo: complaints@water.example.cn\r\n"
        b"Subject: =?gb2312?B?ss7K/Q==?=\r\nMessage-ID: <deep@example.cn>\r\n"
        + b"".join(
            f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode()
            for i in range(depth)
        )
        + "停水三天了".encode("gb18030")
        + b"\r\n"
    )
    embedded_stack.start_router()
    async with listener(embedded_stack, max_message_bytes=10 * 1024 * 1024) as port:
        replies = await send(port, raw)
    assert replies[-1][0] == 250
    assert await embedded_stack.wait_for_tickets(1) == 1
    async with embedded_stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
    assert ticket.raw_sha256 and await embedded_stack.rt.blobs.get(ticket.raw_sha256) == raw
    assert ticket.source_key == "<deep@example.cn>"
    code, out, _ = await embedded_stack.shouli("tickets", "show", ticket.number, "--json")
    assert code == 0
    notes = [e["detail"] for e in json.loads(out)["events"] if e["kind"] == "intake_note"]
    # Parts at depth 13 to 3000 were not read, and the note says exactly how many.
    skipped = "2988 part(s) over limit"
    assert any(skipped in json.dumps(n, ensure_ascii=False) for n in notes), notes
