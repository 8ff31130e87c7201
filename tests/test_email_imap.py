"""IMAP polling against a real dovecot: processed only after hand-off, never \\Seen-based,
failures visible, no duplicates after a crash, outages retried, logged once and shown."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Sequence
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from channels.email.imap import HandoffUnavailable, ImapPoller
from channels.email.imap_session import ImapSession
from channels.email.intake import MailIntake, MailOutcome
from channels.email.settings import EmailSettings, ImapMailbox, ImapTls, Mailbox
from store.blobs import BlobStore
from store.imap_models import HighWaterMark, ImapStateRepository
from store.models import Ticket
from tests.imap_server import Dovecot, free_port, running_dovecot
from tests.stack import Stack
from tests.test_email_smtp import listener, send
from workers.imap import ImapWorker
from workers.registry import build_worker

MAILBOX = "complaints@water.example.cn"
BILLING = "billing@water.example.cn"
USERS = {"alice": "alice-Secret-9", "bob": "bob-Secret-7"}
ENV = {"IMAP_ALICE": USERS["alice"], "IMAP_BOB": USERS["bob"], "IMAP_WRONG": "not-it-x1"}


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot(USERS) as server:
        yield server


def box(server: Dovecot, **fields: Any) -> ImapMailbox:
    values: dict[str, Any] = {
        "name": "alice",
        "address": MAILBOX,
        "host": server.host,
        "port": server.port,
        "tls": ImapTls.NONE,
        "user": "alice",
        "password_env": "IMAP_ALICE",
        "poll_interval": 0.05,
        "backoff_max_seconds": 0.2,
        "timeout_seconds": 5,
        **fields,
    }
    return ImapMailbox(**values)


def poller(stack: Stack, mailbox: ImapMailbox, blobs: BlobStore | None = None) -> ImapPoller:
    rt = stack.rt
    intake = MailIntake(stack.settings.email, blobs or rt.blobs, rt.handoff, rt.metrics)
    return ImapPoller(mailbox, intake, ImapStateRepository(rt.database), rt.metrics, environ=ENV)


def complaint(n: int, *, message_id: bool = True, subject: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"Li Si {n} <lisi{n}@example.cn>"
    message["To"] = MAILBOX
    message["Subject"] = subject or f"路灯损坏{n}+李四"
    if message_id:
        message["Message-ID"] = f"<imap-{n}@example.cn>"
    message.set_content(f"小区门口的路灯已经坏了一周（编号 {n}），晚上很不安全，请尽快维修。")
    # CRLF, as on the wire: smtplib sends bytes as given, and a bare-LF mail would reach the
    # listener with one more line end than the IMAP copy (see the note in the report).
    return message.as_bytes(policy=policy.SMTP)


async def ticket_keys(stack: Stack) -> list[str]:
    async with stack.rt.database.sessions() as session:
        return sorted((await session.execute(select(Ticket.source_key))).scalars())


async def test_mail_appended_to_the_inbox_becomes_tickets_and_is_flagged_processed_not_seen(
    stack: Stack, dovecot: Dovecot
) -> None:
    uids = [dovecot.append("alice", complaint(n)) for n in range(3)]
    imap = poller(stack, box(dovecot))
    result = await imap.poll_once()
    await imap.close()
    assert (result.processed, result.failed, result.more) == (3, 0, False)
    flags = dovecot.flags("alice")
    assert all("$ShouliProcessed" in flags[uid] for uid in uids), flags
    assert all("\\Seen" not in flags[uid] for uid in uids), "polling must not mark mail read"
    stack.start_router()
    assert await stack.wait_for_tickets(3) == 3
    assert await ticket_keys(stack) == [f"<imap-{n}@example.cn>" for n in range(3)]
    async with stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket).limit(1))).scalar_one()
    assert ticket.channel == "email" and ticket.first_contact_id == "mailbox-complaints"
    mark = await ImapStateRepository(stack.rt.database).load("alice", "INBOX")
    assert mark == HighWaterMark(dovecot.uidvalidity("alice"), max(uids))


async def test_a_mail_someone_already_read_is_still_processed(
    embedded_stack: Stack, dovecot: Dovecot
) -> None:
    uid = dovecot.append("alice", complaint(1), flags=["\\Seen"])
    imap = poller(embedded_stack, box(dovecot))
    assert (await imap.poll_once()).processed == 1
    await imap.close()
    assert "$ShouliProcessed" in dovecot.flags("alice")[uid]
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 1


async def test_processed_mail_is_moved_to_the_processed_folder_when_one_is_configured(
    embedded_stack: Stack, dovecot: Dovecot
) -> None:
    dovecot.append("alice", complaint(1))
    imap = poller(embedded_stack, box(dovecot, processed_folder="Processed"))
    assert (await imap.poll_once()).processed == 1
    assert (await imap.poll_once()).processed == 0, "a moved mail is not taken twice"
    await imap.close()
    assert dovecot.flags("alice") == {}
    moved = dovecot.flags("alice", "Processed")
    assert len(moved) == 1 and "$ShouliProcessed" in next(iter(moved.values()))


async def test_a_mail_whose_hand_off_fails_stays_unprocessed_and_is_taken_on_the_next_poll(
    embedded_stack: Stack, dovecot: Dovecot, tmp_path: Path
) -> None:
    uid = dovecot.append("alice", complaint(1))
    not_a_directory = tmp_path / "blobs-is-a-file"
    not_a_directory.write_text("occupied")
    broken = poller(embedded_stack, box(dovecot), blobs=BlobStore(not_a_directory))
    with pytest.raises(HandoffUnavailable):
        await broken.poll_once()
    await broken.close()
    assert dovecot.flags("alice")[uid] == set(), "not flagged before a durable hand-off"
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0
    mark = await ImapStateRepository(embedded_stack.rt.database).load("alice", "INBOX")
    assert mark is not None and mark.last_uid == 0

    healthy = poller(embedded_stack, box(dovecot))
    assert (await healthy.poll_once()).processed == 1
    await healthy.close()
    assert "$ShouliProcessed" in dovecot.flags("alice")[uid]
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 1


class _RefusingIntake:
    """Refuses mail whose subject has a marker, as a non-transient error would."""

    def __init__(self, inner: MailIntake) -> None:
        self.inner = inner
        self.calls = 0

    async def receive(self, raw: bytes, recipients: Sequence[str]) -> MailOutcome:
        self.calls += 1
        if b"UNTAKEABLE" in raw:
            raise ValueError("this mail can never become a draft")
        return await self.inner.receive(raw, recipients)


async def test_a_mail_that_can_never_be_taken_is_marked_failed_visibly_and_the_rest_flow(
    embedded_stack: Stack, dovecot: Dovecot
) -> None:
    bad = dovecot.append("alice", complaint(1, subject="UNTAKEABLE"))
    good = dovecot.append("alice", complaint(2))
    rt = embedded_stack.rt
    intake = _RefusingIntake(
        MailIntake(embedded_stack.settings.email, rt.blobs, rt.handoff, rt.metrics)
    )
    mailbox = box(dovecot, failed_folder="Failed")
    imap = ImapPoller(mailbox, intake, ImapStateRepository(rt.database), rt.metrics, environ=ENV)
    result = await imap.poll_once()
    assert (result.processed, result.failed) == (1, 1)
    assert (await imap.poll_once()).failed == 0, "a failed mail is not retried in a loop"
    await imap.close()
    assert intake.calls == 2
    assert "$ShouliProcessed" in dovecot.flags("alice")[good]
    failed = dovecot.flags("alice", "Failed")
    assert len(failed) == 1 and "$ShouliFailed" in next(iter(failed.values()))
    assert bad not in dovecot.flags("alice")
    failures = rt.metrics.registry.get_sample_value(
        "shouli_imap_messages_total", {"mailbox": "alice", "outcome": "failed"}
    )
    assert failures == 1


class Crash(BaseException):
    """The process dying between the hand-off and the STORE of the processed flag."""


async def test_a_crash_between_hand_off_and_flagging_makes_no_duplicate_ticket(
    stack: Stack, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Message-ID: the idempotency key is then the content hash.
    uid = dovecot.append("alice", complaint(7, message_id=False))
    real = ImapSession.mark_processed

    def crash(self: ImapSession, uids: Sequence[int]) -> None:
        if uids:
            raise Crash
        real(self, uids)

    monkeypatch.setattr(ImapSession, "mark_processed", crash)
    first = poller(stack, box(dovecot))
    with pytest.raises(Crash):
        await first.poll_once()
    assert dovecot.flags("alice")[uid] == set()
    monkeypatch.setattr(ImapSession, "mark_processed", real)

    restarted = poller(stack, box(dovecot))
    assert (await restarted.poll_once()).processed == 1, "handed off again after the restart"
    await restarted.close()
    await first.close()
    assert "$ShouliProcessed" in dovecot.flags("alice")[uid]
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    await asyncio.sleep(1.0)
    assert await stack.ticket_count() == 1


@pytest.mark.parametrize("with_message_id", [True, False], ids=["message-id", "content-hash"])
async def test_the_same_mail_over_smtp_and_imap_makes_one_ticket(
    stack: Stack, dovecot: Dovecot, with_message_id: bool
) -> None:
    raw = complaint(9, message_id=with_message_id)
    async with listener(stack) as port:
        assert (await send(port, raw))[-1][0] == 250
    dovecot.append("alice", raw)
    imap = poller(stack, box(dovecot))
    assert (await imap.poll_once()).processed == 1
    await imap.close()
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    await asyncio.sleep(1.0)
    assert await stack.ticket_count() == 1


async def test_a_new_uidvalidity_resets_the_high_water_mark(
    embedded_stack: Stack, dovecot: Dovecot
) -> None:
    dovecot.command("alice", "create", "Complaints")
    for n in range(3):
        dovecot.append("alice", complaint(n), folder="Complaints")
    mailbox = box(dovecot, folder="Complaints")
    imap = poller(embedded_stack, mailbox)
    assert (await imap.poll_once()).processed == 3
    await imap.close()
    old = dovecot.uidvalidity("alice", "Complaints")

    # The folder is deleted and recreated (a migration, a restore): UIDs start again at 1.
    dovecot.command("alice", "delete", "Complaints")
    dovecot.command("alice", "create", "Complaints")
    uid = dovecot.append("alice", complaint(10), folder="Complaints")
    new = dovecot.uidvalidity("alice", "Complaints")
    assert uid == 1 and new != old

    with capture_logs() as logs:
        again = poller(embedded_stack, mailbox)
        assert (await again.poll_once()).processed == 1, "UID 1 is new under the new UIDVALIDITY"
        await again.close()
    assert any(e["event"] == "imap_uidvalidity_changed" for e in logs)
    mark = await ImapStateRepository(embedded_stack.rt.database).load("alice", "Complaints")
    assert mark == HighWaterMark(new, 1)


async def test_a_server_down_or_a_wrong_password_is_logged_once_shown_down_and_others_work(
    embedded_stack: Stack, dovecot: Dovecot
) -> None:
    dovecot.append("alice", complaint(1))
    boxes = (
        box(dovecot),
        box(dovecot, name="wrong-password", user="bob", password_env="IMAP_WRONG", address=BILLING),
        box(dovecot, name="down", port=free_port(), address=BILLING),
    )
    rt = embedded_stack.rt
    email = embedded_stack.settings.email.model_copy(update={"imap": boxes})
    settings = embedded_stack.settings.model_copy(update={"email": email})
    worker = ImapWorker(dataclasses.replace(rt, settings=settings), environ=ENV)
    stopping = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(worker.run(stopping))
        failing = {p.box.name: p for p in worker.pollers if p.box.name != "alice"}
        assert await embedded_stack.wait_until(
            lambda: all(p.health.failures >= 4 for p in failing.values()), timeout=20
        )
        assert await embedded_stack.wait_until(
            lambda: rt.queue.depth(rt.names.drafts), timeout=10
        ), "the healthy mailbox kept working"
        health = worker.health()
        stopping.set()
        await asyncio.wait_for(task, 10)

    down_logs = [e for e in logs if e["event"] == "imap_mailbox_unavailable"]
    assert sorted((e["mailbox"], e["reason"]) for e in down_logs) == [
        ("down", "unreachable"),
        ("wrong-password", "login_rejected"),
    ], "once per outage, not once per poll"
    assert health["ready"] is False
    mailboxes = health["mailboxes"]
    assert isinstance(mailboxes, dict)
    assert mailboxes["alice"]["up"] is True and mailboxes["down"]["up"] is False
    sample = rt.metrics.registry.get_sample_value
    assert sample("shouli_imap_up", {"mailbox": "wrong-password"}) == 0
    assert sample("shouli_imap_up", {"mailbox": "down"}) == 0
    assert sample("shouli_imap_up", {"mailbox": "alice"}) == 1
    everything = repr(logs) + repr(health) + rt.metrics.render().decode()
    assert all(password not in everything for password in ENV.values())


async def test_a_mailbox_that_comes_back_is_logged_available_again(
    embedded_stack: Stack, dovecot: Dovecot
) -> None:
    dovecot.users["bob"] = "changed-password-1"
    dovecot.write_passwords()
    imap = poller(embedded_stack, box(dovecot, name="bob", user="bob", password_env="IMAP_BOB"))
    stopping = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(imap.run(stopping))
        assert await embedded_stack.wait_until(lambda: imap.health.failures >= 2, timeout=10)
        dovecot.users["bob"] = USERS["bob"]
        dovecot.write_passwords()
        assert await embedded_stack.wait_until(lambda: imap.health.up is True, timeout=10)
        stopping.set()
        await asyncio.wait_for(task, 10)
    events = [e["event"] for e in logs if e.get("mailbox") == "bob"]
    assert events == ["imap_mailbox_unavailable", "imap_mailbox_available_again"]


def test_an_imap_mailbox_must_be_one_of_the_complaint_mailboxes() -> None:
    settings = EmailSettings(
        mailboxes=(Mailbox(address=MAILBOX, desk="mailbox-complaints"),),
        imap=(
            ImapMailbox(name="a", address=MAILBOX, host="h", user="u", password_env="P"),
            ImapMailbox(name="a", address="x@elsewhere.cn", host="h", user="u", password_env="P"),
        ),
    )
    problems = dict(settings.imap_problems())
    assert set(problems) == {"email.imap.1.address", "email.imap.1.name"}
    assert "not one of email.mailboxes" in problems["email.imap.1.address"]


async def test_the_imap_worker_is_known_to_the_registry(embedded_stack: Stack) -> None:
    worker = build_worker("imap", embedded_stack.rt, embedded_stack.settings)
    assert worker.name == "imap" and isinstance(worker, ImapWorker)
