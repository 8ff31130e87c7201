"""Mail-borne referrals (issue 6, item 2) through the real SMTP listener: a referral mailbox
takes work orders from a source's allowlisted senders (body or attached JSON, XML, CSV), the
DKIM result is recorded (mails signed here with a key made for the test), and everything
else sent to that mailbox is a normal complaint, flagged. Nothing is lost."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import smtplib
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
import yaml
from sqlalchemy import select

from channels.email.intake import MailIntake
from channels.email.settings import SmtpSettings
from channels.email.smtp import start_smtp
from channels.referral.mail import MailReferrals
from channels.referral.settings import MailFormat, MailReferral
from channels.runtime import Runtime
from ingest.app.settings import load_settings
from ingest.queue import QueueUnavailable
from ingest.sections import ConfigError
from store.models import Ticket
from tests.stack import CONFIG, Stack, events, notes, ticket_of
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    FIXTURES,
    order,
    referral_secrets,
    runtime_with,
    source_changes,
)

REFERRAL_BOX = "12345@water.example.cn"
SENDER = "paidan@12345.example.gov.cn"
DOMAIN = "12345.example.gov.cn"
SELECTOR = "mail2026"
REFERENCE = "SZ12345-20261124-000871"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A fresh RSA key (private PEM, public DKIM record), made with openssl."""
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "private.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(private), "2048"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return private.read_bytes(), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runtime(
    stack: Stack, record: str, *, require_dkim: bool = True, fmt: MailFormat = MailFormat.AUTO
) -> Runtime:
    """The shipped config (gov12345 takes mail from @12345.example.gov.cn) with the test's
    DKIM key given instead of DNS."""
    mail = MailReferral(senders=(f"@{DOMAIN}",), require_dkim=require_dkim, format=fmt)
    return runtime_with(
        stack.rt,
        dkim_keys={f"{SELECTOR}._domainkey.{DOMAIN}": record},
        sources=source_changes(stack.rt, "gov12345", mail=mail),
    )


@asynccontextmanager
async def listener(runtime: Runtime) -> AsyncIterator[int]:
    """The real SMTP listener, wired as ``shouli serve`` wires it (with mail referrals)."""
    port = _free_port()
    intake = MailIntake(
        runtime.settings.email,
        runtime.blobs,
        runtime.handoff,
        runtime.metrics,
        referrals=MailReferrals(runtime),
    )
    server = await start_smtp(runtime.settings, intake, SmtpSettings(port=port))
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def _send_now(port: int, raw: bytes, sender: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mail.12345.example.gov.cn")
        client.mail(sender)
        code, _ = client.rcpt(REFERRAL_BOX)
        assert code == 250
        return client.data(raw)


async def send(port: int, raw: bytes, sender: str = SENDER) -> tuple[int, bytes]:
    return await asyncio.to_thread(_send_now, port, raw, sender)


def mail(
    body: str,
    *,
    sender: str = SENDER,
    message_id: str = "<order-1@12345.example.gov.cn>",
    subject: str = "12345工单派发",
    attachments: tuple[tuple[bytes, str, str], ...] = (),
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"示例市12345热线 <{sender}>"
    message["To"] = REFERRAL_BOX
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message["Date"] = "Tue, 24 Nov 2026 09:31:00 +0800"
    message.set_content(body, cte="8bit")  # as 12345 systems send it: readable to tamper with
    for data, filename, content_type in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def signed(message: EmailMessage, key: bytes, domain: str = DOMAIN) -> bytes:
    raw = message.as_bytes(policy=policy.SMTP)
    header = dkim.sign(
        raw,
        SELECTOR.encode(),
        domain.encode(),
        key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"message-id", b"date"],
    )
    return bytes(header) + raw


def body_order(**changes: Any) -> str:
    """The shipped 12345 order as ``key：value`` lines, as a 12345 system mails it."""
    fields = order(**changes)
    lines = ["您好，以下工单请及时签收办理：", ""]
    lines += [f"{key}：{value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n\n-- \n示例市12345政务服务便民热线\n"


async def _tickets(stack: Stack) -> list[Ticket]:
    async with stack.rt.database.sessions() as session:
        return list((await session.execute(select(Ticket).order_by(Ticket.id))).scalars())  # type: ignore[arg-type]


async def _one_ticket(stack: Stack) -> dict[str, Any]:
    assert await stack.drain() == 1
    (ticket,) = await _tickets(stack)
    return await ticket_of(stack, ticket.number)


def _mail_note(ticket: dict[str, Any]) -> str:
    found = [n for n in notes(ticket) if n.startswith("referral_mail:")]
    assert len(found) == 1, notes(ticket)
    return found[0]


async def test_an_allowlisted_order_in_the_body_makes_one_referral_ticket_with_its_dkim_pass(
    stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    key, record = dkim_key
    raw = signed(mail(body_order()), key)
    async with listener(_runtime(stack, record)) as port:
        assert await send(port, raw) == (250, b"2.0.0 Complaint received")
        ticket = await _one_ticket(stack)
        # The same mail again (a sender's retry): the same order, no second ticket.
        assert (await send(port, raw))[0] == 250
    assert ticket["channel"] == "referral"
    assert ticket["referral"]["source"] == "gov12345"
    assert ticket["referral"]["reference"] == REFERENCE
    assert ticket["first_contact"]["id"] == "liaison-12345"
    assert "光明小区5栋从昨天上午起停水" in ticket["body"]
    note = _mail_note(ticket)
    assert f"DKIM pass (d={DOMAIN})" in note
    assert f"sender domain {DOMAIN}" in note and "liaison-12345" in note
    assert SENDER not in json.dumps(ticket["events"], ensure_ascii=False), "no address in notes"
    assert await stack.drain(stop=True) == 1, "the sender's retry made no second ticket"


@pytest.mark.parametrize("kind", ["json", "xml", "csv"])
async def test_an_order_attached_as_a_file_is_read_from_the_file(
    stack: Stack, dkim_key: tuple[bytes, str], kind: str
) -> None:
    key, record = dkim_key
    if kind == "json":
        files = [
            (json.dumps(order(), ensure_ascii=False).encode(), "工单.json", "application/json")
        ]
        references = [REFERENCE]
    elif kind == "xml":
        files = [((FIXTURES / "gov12345-order.xml").read_bytes(), "order.xml", "application/xml")]
        references = ["SZ12345-20261124-000902"]
    else:
        rows = [order(), order(工单编号="SZ12345-20261124-000990", 诉求内容="幸福路水管漏水")]
        header = list(rows[0])
        text = ",".join(header) + "\r\n"
        text += "".join(",".join(f'"{row.get(h, "")}"' for h in header) + "\r\n" for row in rows)
        # GB18030 with no declaration, as a Chinese spreadsheet exports it.
        files = [(text.encode("gb18030"), "orders.csv", "text/csv")]
        references = [REFERENCE, "SZ12345-20261124-000990"]
    attachments = tuple((data, name, ctype) for data, name, ctype in files)
    # The body is a covering letter with no order lines: the file is the order.
    raw = signed(mail("请查收附件中的工单。", attachments=attachments), key)
    async with listener(_runtime(stack, record)) as port:
        assert (await send(port, raw))[0] == 250
    assert await stack.drain() == len(references)
    made = await _tickets(stack)
    assert {t.channel for t in made} == {"referral"}
    assert sorted(t.referral_reference or "" for t in made) == sorted(references)
    for row in made:
        assert "DKIM pass" in _mail_note(await ticket_of(stack, row.number))


async def test_a_strangers_mail_to_the_referral_mailbox_is_a_flagged_complaint(
    stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    _, record = dkim_key
    stranger = "wang@example.com"
    raw = mail(body_order(), sender=stranger).as_bytes(policy=policy.SMTP)
    async with listener(_runtime(stack, record)) as port:
        assert (await send(port, raw, stranger))[0] == 250
    ticket = await _one_ticket(stack)
    assert ticket["channel"] == "email" and ticket["referral"] is None
    assert ticket["first_contact"]["id"] == "liaison-12345"
    assert "光明小区5栋" in ticket["body"]
    (flag,) = [n for n in notes(ticket) if n.startswith("referral_mailbox:")]
    assert "not on any source's allowlist" in flag and "example.com" in flag
    assert stranger not in flag


async def test_a_tampered_mail_fails_dkim_and_a_source_requiring_it_makes_it_a_complaint(
    stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    key, record = dkim_key
    raw = signed(mail(body_order()), key)
    tampered = raw.replace("光明小区5栋".encode(), "幸福小区9栋".encode())
    assert tampered != raw
    async with listener(_runtime(stack, record)) as port:
        assert (await send(port, tampered))[0] == 250
    ticket = await _one_ticket(stack)
    assert ticket["channel"] == "email" and ticket["referral"] is None
    (flag,) = [n for n in notes(ticket) if n.startswith("DKIM required")]
    assert flag.startswith(f"DKIM required by source gov12345: fail (d={DOMAIN}")
    assert "body hash mismatch" in flag
    assert "幸福小区9栋" in ticket["body"], "the complaint keeps what was sent"


async def test_without_require_dkim_a_failed_or_missing_signature_is_recorded_not_refused(
    embedded_stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    key, record = dkim_key
    unsigned = mail(body_order()).as_bytes(policy=policy.SMTP)
    other = mail(
        body_order(工单编号="SZ12345-20261124-000999"), message_id="<order-2@12345.example.gov.cn>"
    )
    # Signed by the sender's parent domain: aligned, a pass.
    parent = signed(other, key, domain="example.gov.cn")
    runtime = _runtime(embedded_stack, record, require_dkim=False)
    runtime = runtime_with(
        runtime,
        dkim_keys=runtime.settings.referrals.dkim_keys
        | {f"{SELECTOR}._domainkey.example.gov.cn": record},
    )
    async with listener(runtime) as port:
        assert (await send(port, unsigned))[0] == 250
        assert (await send(port, parent))[0] == 250
    assert await embedded_stack.drain() == 2
    by_reference = {t.referral_reference: t for t in await _tickets(embedded_stack)}
    first = await ticket_of(embedded_stack, by_reference[REFERENCE].number)
    assert "DKIM none (the mail is not signed)" in _mail_note(first)
    second = await ticket_of(embedded_stack, by_reference["SZ12345-20261124-000999"].number)
    assert "DKIM pass (d=example.gov.cn)" in _mail_note(second)


async def test_a_signature_of_another_domain_does_not_vouch_for_the_from_address(
    embedded_stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    key, record = dkim_key
    runtime = _runtime(embedded_stack, record)
    runtime = runtime_with(
        runtime,
        dkim_keys=runtime.settings.referrals.dkim_keys
        | {f"{SELECTOR}._domainkey.evil.example": record},
    )
    raw = signed(mail(body_order()), key, domain="evil.example")
    async with listener(runtime) as port:
        assert (await send(port, raw))[0] == 250
    ticket = await _one_ticket(embedded_stack)
    assert ticket["channel"] == "email"
    (flag,) = [n for n in notes(ticket) if n.startswith("DKIM required")]
    assert "signed by evil.example, not the sender's domain" in flag


async def test_an_urge_by_mail_updates_the_existing_ticket(
    stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    key, record = dkim_key
    urge = "\n".join(
        [
            f"工单编号：{REFERENCE}",
            "操作类型：催办",
            "业务流水号：CB-20261125-1",
            "说明：市民再次来电催办，",
            "要求今天内恢复供水。",
        ]
    )
    async with listener(_runtime(stack, record)) as port:
        assert (await send(port, signed(mail(body_order()), key)))[0] == 250
        ticket = await _one_ticket(stack)
        raw = signed(mail(urge, message_id="<urge-1@12345.example.gov.cn>", subject="催办"), key)
        assert (await send(port, raw))[0] == 250
    ticket = await ticket_of(stack, ticket["number"])
    (urged,) = events(ticket, "urge")
    assert urged["actor"] == "referral:gov12345"
    assert urged["detail"]["reason"] == "市民再次来电催办，\n要求今天内恢复供水。"
    (via,) = urged["detail"]["notes"]
    assert f"DKIM pass (d={DOMAIN})" in via
    assert await stack.drain() == 1, "an update, not a second ticket"


async def test_an_order_the_mapping_refuses_becomes_a_flagged_complaint_and_nothing_is_lost(
    stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    key, record = dkim_key
    bad = json.loads((FIXTURES / "gov12345-malformed.json").read_text(encoding="utf-8"))
    body = "\n".join(f"{k}：{v}" for k, v in bad.items())
    async with listener(_runtime(stack, record)) as port:
        assert (await send(port, signed(mail(body), key)))[0] == 250
    ticket = await _one_ticket(stack)
    assert ticket["channel"] == "email" and ticket["referral"] is None
    assert "水压太低，楼上用不了热水器。" in ticket["body"]
    (flag,) = [n for n in notes(ticket) if n.startswith("referral order(s)")]
    assert "source gov12345 not read" in flag
    for field in ("诉求类型", "办结时限", "是否保密"):
        assert field in flag
    assert "抱怨" not in flag and "不确定" not in flag, "field names, not the sender's values"
    assert "DKIM pass" in _mail_note(ticket)


async def test_a_store_that_fails_during_a_referral_gives_451(
    embedded_stack: Stack, dkim_key: tuple[bytes, str]
) -> None:
    class DownHandoff:
        async def submit(self, draft: object) -> None:
            raise QueueUnavailable("the queue is down (test)")

    key, record = dkim_key
    runtime = dataclasses.replace(_runtime(embedded_stack, record), handoff=DownHandoff())  # type: ignore[arg-type]
    async with listener(runtime) as port:
        code, _ = await send(port, signed(mail(body_order()), key))
    assert code == 451
    # The referral's reservation is kept, but its draft is not queued: a retry hands it off.
    async with listener(_runtime(embedded_stack, record)) as port:
        assert (await send(port, signed(mail(body_order()), key)))[0] == 250
    ticket = await _one_ticket(embedded_stack)
    assert ticket["channel"] == "referral"


def _config(tmp_path: Path, change: Any) -> list[str]:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        return [f"{where}: {message}" for where, message in exc.problems]
    return []


def test_the_config_ties_referral_mailboxes_senders_and_reply_mail_together(
    tmp_path: Path,
) -> None:
    def no_mail_sources(data: dict[str, Any]) -> None:
        for source in data["referrals"]["sources"]:
            source.pop("mail", None)

    (problem,) = _config(tmp_path, no_mail_sources)
    assert problem.startswith("email.mailboxes.3.referral: a referral mailbox needs a source")

    def reply_by_mail(data: dict[str, Any]) -> None:
        data["referrals"]["sources"][0]["reply"] = {"email": "feedback@12345.example.gov.cn"}

    assert _config(tmp_path, reply_by_mail) == [
        "referrals.sources.0.reply.email: replies by email are sent through email.outbound, "
        "which is not set"
    ]

    def with_outbound(data: dict[str, Any]) -> None:
        reply_by_mail(data)
        data["email"]["outbound"] = {"host": "smtp.example.cn", "from_address": "no@x.cn"}

    assert _config(tmp_path, with_outbound) == []

    def bad_sender(data: dict[str, Any]) -> None:
        data["referrals"]["sources"][0]["mail"]["senders"] = ["12345.example.gov.cn"]
        data["referrals"]["dkim_keys"] = {"12345.example.gov.cn": "v=DKIM1; p=abc"}

    problems = _config(tmp_path, bad_sender)
    assert any(p.startswith("referrals.sources.0.mail.senders: ") for p in problems), problems
    assert any(p.startswith("referrals.dkim_keys: ") for p in problems), problems
