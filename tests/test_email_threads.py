"""Threading, noise and storms (issue 3, items 5 and 6), through the real SMTP listener.

A reply from the complainant or staff is an event on its ticket; a stranger quoting the
number gets a ticket of their own, linked for staff; auto-replies and bounces never make
tickets; a sender's storm becomes a few tickets plus counted follow-ups.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, select

from channels.email.settings import StormSettings
from channels.web.progress import find_by_contact, issue_link
from router.calendar import WorkCalendar
from store.models import Attachment, Event, InboundItem, Ticket
from store.notification_models import Notification
from tests.stack import Stack
from tests.test_email_smtp import MAILBOX, listener, send

COMPLAINANT = "zhangsan@example.cn"


def _mail(
    subject: str,
    body: str,
    *,
    sender: str = COMPLAINANT,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    attachment: bytes | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = MAILBOX
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.cn>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment, maintype="image", subtype="png", filename="补充.png")
    return message.as_bytes()


def _complaint(message_id: str = "<first@example.cn>") -> bytes:
    return _mail(
        "水压不足+张三", "我家水龙头水压很低，已经一周了，请派人检修。", message_id=message_id
    )


def _configure(stack: Stack, **email: Any) -> None:
    stack.settings = stack.settings.model_copy(
        update={"email": stack.settings.email.model_copy(update=email)}
    )


async def _rows(stack: Stack, statement: Any) -> list[Any]:
    async with stack.rt.database.sessions() as session:
        return list((await session.execute(statement)).all())


async def _inbound(stack: Stack) -> int:
    rows = await _rows(stack, select(func.count()).select_from(InboundItem))
    return int(rows[0][0])


async def _events(stack: Stack, number: str, kind: str) -> list[dict[str, Any]]:
    rows = await _rows(
        stack,
        select(Event.detail)
        .join(Ticket, Ticket.id == Event.ticket_id)  # type: ignore[arg-type]
        .where(Ticket.number == number, Event.kind == kind)
        .order_by(Event.id),  # type: ignore[arg-type]
    )
    return [r[0] for r in rows]


async def _first_ticket(stack: Stack, port: int) -> str:
    assert (await send(port, _complaint()))[-1][0] == 250
    assert await stack.drain() == 1
    rows = await _rows(stack, select(Ticket.number))
    return str(rows[0][0])


async def _settled(stack: Stack, inbound: int) -> None:
    """Let the router place what was sent, then check it recorded ``inbound`` mails (tickets
    or not)."""
    await stack.drain()
    assert await _inbound(stack) == inbound, "router did not place every mail"


async def test_a_reply_from_the_complainant_is_an_event_on_the_ticket_not_a_new_ticket(
    stack: Stack,
) -> None:
    stack.start_router()
    async with listener(stack) as port:
        number = await _first_ticket(stack, port)
        reply = _mail(
            "Re: 水压不足+张三",
            "补充：今天早上完全没水了。",
            message_id="<reply-1@example.cn>",
            in_reply_to="<first@example.cn>",
            attachment=b"\x89PNG\r\n\x1a\n" + b"\x01" * 64,
        )
        assert (await send(port, reply))[-1][0] == 250
        await _settled(stack, 2)
        # The same reply delivered again (a sender's retry) changes nothing.
        assert (await send(port, reply))[-1][0] == 250
        by_subject = _mail(f"关于{number}的补充", "水压还是很低。", message_id="<reply-2@ex.cn>")
        assert (await send(port, by_subject))[-1][0] == 250
        await _settled(stack, 3)
    assert await stack.ticket_count() == 1
    replies = await _events(stack, number, "mail_reply")
    assert [(r["from"], r["by"], r["source_key"]) for r in replies] == [
        ("complainant", "header", "<reply-1@example.cn>"),
        ("complainant", "subject", "<reply-2@ex.cn>"),
    ]
    files = await _rows(stack, select(Attachment.filename))
    assert ("补充.png",) in [tuple(f) for f in files]


async def test_a_staff_reply_threads_and_a_stranger_gets_a_linked_ticket_of_their_own(
    stack: Stack,
) -> None:
    _configure(stack, staff_addresses=("@water.example.cn",))
    stack.start_router()
    async with listener(stack) as port:
        number = await _first_ticket(stack, port)
        staff = _mail(
            f"Re: [{number}] 水压不足",
            "已安排维修人员明日上门。",
            sender="Li Si <lisi@water.example.cn>",
            in_reply_to="<first@example.cn>",
        )
        stranger = _mail(
            f"我也要投诉 {number}",
            "我家也没有水压，请处理，同一个小区。",
            sender="wangwu@example.net",
        )
        assert (await send(port, staff))[-1][0] == 250
        assert (await send(port, stranger))[-1][0] == 250
        await _settled(stack, 3)
    assert await stack.ticket_count() == 2
    assert [r["from"] for r in await _events(stack, number, "mail_reply")] == ["staff"]
    rows = await _rows(stack, select(Ticket.number).where(Ticket.number != number))
    other = str(rows[0][0])
    linked = await _events(stack, other, "linked")
    assert [(e["related"], e["by"]) for e in linked] == [(number, "subject")]
    # Nothing of the stranger's mail lands on the first complainant's ticket.
    assert await _events(stack, number, "linked") == []


async def test_auto_replies_and_bounces_never_make_tickets_and_a_bounced_ack_is_marked(
    stack: Stack,
) -> None:
    stack.start_router()
    async with listener(stack) as port:
        number = await _first_ticket(stack, port)
        # The acknowledgement the router queued with the ticket: its Message-ID is ours.
        acks = await _rows(stack, select(Notification.message_id).where(Notification.kind == "ack"))
        assert len(acks) == 1
        ack_id = str(acks[0][0])
        vacation = _mail(
            "自动回复：水压不足",
            "我正在休假，8月1日返回。",
            in_reply_to=ack_id,
            headers={"Auto-Submitted": "auto-replied"},
        )
        assert (await send(port, vacation))[-1][0] == 250
        assert (await send(port, _bounce(ack_id)))[-1][0] == 250
        unrelated = _mail("Out of office", "Away until Monday.", headers={"X-Autoreply": "yes"})
        assert (await send(port, unrelated))[-1][0] == 250
        await _settled(stack, 4)
    assert await stack.ticket_count() == 1
    assert len(await _events(stack, number, "auto_reply_received")) == 1
    bounced = await _events(stack, number, "notification_bounced")
    assert bounced == [{"notification": "ack", "message_id": ack_id}]
    marks = await _rows(stack, select(Notification.bounced_at))
    assert len(marks) == 1 and marks[0][0] is not None


def _bounce(original_id: str) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    boundary = f"b{uuid.uuid4().hex}"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.cn>\r\n"
        f"To: {MAILBOX}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.example.cn>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "This is the mail system. Your message could not be delivered.\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.cn\r\n\r\n"
        "Final-Recipient: rfc822; zhangsan@example.cn\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: noreply@water.example.cn\r\n"
        f"Message-ID: {original_id}\r\n"
        "Subject: ack\r\n"
        f"--{boundary}--\r\n"
    ).encode()


async def test_a_mail_storm_makes_a_few_tickets_and_counted_follow_ups(stack: Stack) -> None:
    _configure(stack, storm=StormSettings(window_minutes=30, max_tickets=2))
    stack.start_router()
    matters = [
        ("水压不足+张三", "我家水压很低，已经一周了。"),
        ("水费异常+张三", "本月账单金额是上月的三倍，请核查水表读数。"),
        ("服务态度+张三", "营业厅工作人员态度恶劣，拒绝解释。"),
        ("停水通知+张三", "小区停水没有提前通知，影响生活。"),
        ("井盖破损+张三", "路口井盖破损，存在安全隐患。"),
    ]
    async with listener(stack) as port:
        for subject, body in matters:
            assert (await send(port, _mail(subject, body)))[-1][0] == 250
        await _settled(stack, len(matters))
    assert await stack.ticket_count() == 2
    rows = await _rows(stack, select(Ticket.number).order_by(Ticket.id.desc()))  # type: ignore[union-attr]
    newest = str(rows[0][0])
    follow_ups = await _events(stack, newest, "mail_followup")
    assert [f["count"] for f in follow_ups] == [1, 2, 3]


async def test_a_repeat_mail_about_the_same_open_matter_urges_the_ticket(stack: Stack) -> None:
    stack.start_router()
    async with listener(stack) as port:
        number = await _first_ticket(stack, port)
        again = _mail(
            "水压不足+张三",
            "我家水龙头水压很低，已经一周了，还没人来检修。",
            attachment=b"\x89PNG\r\n\x1a\n" + b"\x02" * 64,
        )
        assert (await send(port, again))[-1][0] == 250
        await _settled(stack, 2)
    assert await stack.ticket_count() == 1
    urges = await _events(stack, number, "urge")
    assert len(urges) == 1 and urges[0]["repeat_contact"]["channel"] == "email"
    # The repeat's evidence is filed on the complaint it repeats.
    files = await _rows(stack, select(Attachment.filename, Attachment.sha256))
    assert [f[0] for f in files] == ["补充.png"] and urges[0]["attachments"] == [files[0][1]]


async def test_after_the_acknowledgement_link_the_phone_in_the_mail_still_finds_progress(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    stack.start_router()
    async with listener(stack) as port:
        raw = _mail("水压不足+张三", "水压很低，请检修。联系电话13812345678。")
        assert (await send(port, raw))[-1][0] == 250
        assert await stack.drain() == 1
    number = str((await _rows(stack, select(Ticket.number)))[0][0])
    calendar = WorkCalendar(stack.settings.calendar, stack.settings.organisation.timezone)
    now = datetime.now(UTC)
    # The acknowledgement's link is issued to the address the mail came from.
    token = await stack.rt.database.write(
        lambda conn: issue_link(conn, number=number, contact=COMPLAINANT, now=now)
    )
    assert token

    def lookup(contact: str) -> Callable[[Any], Any]:
        return lambda conn: find_by_contact(conn, number, contact, stack.settings, calendar)

    assert await stack.rt.database.write(lookup("+8613812345678")) is not None
    assert await stack.rt.database.write(lookup(COMPLAINANT)) is not None
    assert await stack.rt.database.write(lookup("+8613900000000")) is None
