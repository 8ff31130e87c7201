"""Any text through any channel: every success answer becomes exactly one ticket.

PostgreSQL refuses NUL and nothing can encode a lone surrogate as UTF-8, so a complaint
carrying either used to get 201 and then be refused by the store (distributed mode): a
success answer with no ticket. Drafts are now made storable once, with an intake note.
The property is checked through the real endpoints in both deployments, with text drawn by
hypothesis from the awkward corners of Unicode.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import smtplib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from channels.email.intake import MailIntake
from channels.email.settings import SmtpSettings
from channels.email.smtp import start_smtp
from ingest.app.http import create_app
from ingest.draft import Channel, FirstContact, FirstContactKind, TicketDraft
from ingest.storable import storable
from store.models import Ticket
from store.tickets import find_ticket, ticket_json
from tests.stack import Stack
from tests.support_http import AGENT_TOKENS, STAFF, api_client, bearer
from tests.test_referral_support import GOV, SECRETS, order, signed
from tests.test_web_support import complaint_fields, feedback_fields, free_port

MAILBOX = "complaints@water.example.cn"

# The corners: NUL and other C0 controls, DEL, lone surrogates of both halves, bidi marks,
# zero-width and BOM characters, emoji (astral plane), CRLF, and ordinary Chinese.
_CORNERS = st.sampled_from(
    [
        "\x00",
        "\x01",
        "\x1b",
        "\x7f",
        "\ud800",
        "\udfff",
        "\u202e",
        "\u200f",
        "\u200b",
        "\ufeff",
        "😀",
        "\r\n",
        "\t",
        "停水",
        "",
    ]
)
_PIECES = st.one_of(_CORNERS, st.text(max_size=12), st.characters(codec=None).map(str))
AWKWARD = st.one_of(
    st.lists(_PIECES, max_size=20).map("".join),
    st.just("水" * 100_000),
    st.just("\x00" * 50),
    st.just(""),
)


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch, agent_tokens: dict[str, str]) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_storable_text_keeps_tab_newline_and_cr_and_drops_other_controls() -> None:
    assert storable("a\x00b\tc\nd\re\x1bf\x7f") == "ab\tc\nd\ref\x7f"
    assert storable("x\ud800y\udfffz") == "x\ufffdy\ufffdz"
    assert storable("漢字 😀 \u202e") == "漢字 😀 \u202e"


def test_a_draft_is_made_storable_once_with_a_note_that_names_fields_never_text() -> None:
    draft = TicketDraft.model_validate(
        {
            "channel": Channel.API,
            "source_key": "key\x00one",
            "received_at": datetime.now(UTC),
            "subject": "停\x00水",
            "body": "secret\ud800words",
            "complainant": {"name": "张\x01三"},
            "first_contact": FirstContact(kind=FirstContactKind.DESK, id="desk\x00"),
        }
    )
    assert (draft.source_key, draft.subject, draft.body) == ("keyone", "停水", "secret\ufffdwords")
    assert (draft.complainant.name, draft.first_contact.id) == ("张三", "desk")
    (note,) = draft.notes
    for name in ("subject", "body", "complainant.name", "first_contact.id", "source_key"):
        assert name in note
    assert "secret" not in note and "停" not in note
    # The queue carries the cleaned draft: reading it back changes nothing more.
    assert TicketDraft.from_bytes(draft.to_bytes()) == draft


class Answers:
    """What each endpoint told its sender, and what must therefore exist."""

    def __init__(self) -> None:
        self.numbers: set[str] = set()
        self.mail_keys: set[str] = set()
        self.refused: dict[int, int] = {}
        self.why: list[str] = []

    def refuse(self, status: int, why: str = "") -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        self.why.append(f"{status} {why[:300]}")


async def _ticket_exists(stack: Stack, number: str) -> bool:
    async with stack.rt.database.sessions() as session:
        return await find_ticket(session, number) is not None


async def _mail_ticket_count(stack: Stack, key: str) -> int:
    async with stack.rt.database.sessions() as session:
        return int(
            (
                await session.execute(
                    select(func.count())
                    .select_from(Ticket)
                    .where(Ticket.channel == "email", Ticket.source_key == key)  # type: ignore[arg-type]
                )
            ).scalar_one()
        )


def _run_property(
    loop: asyncio.AbstractEventLoop,
    strategy: st.SearchStrategy[Any],
    send: Callable[[Any], Awaitable[None]],
    examples: int,
) -> None:
    """Hypothesis drives a synchronous test; each example is sent on the stack's loop."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def prop(value: Any) -> None:
        asyncio.run_coroutine_threadsafe(send(value), loop).result(timeout=120)

    prop()


def _phone() -> str:
    # Not ``random``: hypothesis seeds it per example, and repeated callers would be merged.
    return f"139{secrets.randbelow(10**8):08d}"


class Clients:
    """One app; each request from its own address (the web form rate-limits per address)."""

    def __init__(self, stack: Stack) -> None:
        self.app = create_app(stack.rt)

    def __call__(self) -> httpx.AsyncClient:
        return api_client(self.app)


@pytest.fixture
def clients(stack: Stack) -> Clients:
    return Clients(stack)


def _valid(prefix: str, awkward: str) -> str:
    """Awkward text inside a field that is otherwise long enough to be accepted."""
    return f"{prefix}{awkward}{prefix}"


def _json_bytes(payload: dict[str, Any]) -> bytes:
    # ensure_ascii writes lone surrogates as \\ud800 escapes, as a careless client would.
    return json.dumps(payload, ensure_ascii=True).encode()


async def _send_call(clients: Clients, answers: Answers, texts: tuple[str, ...]) -> None:
    summary, name, address, call_suffix = texts
    started = datetime.now(UTC) - timedelta(minutes=5)
    record = {
        "call_id": f"CALL-{uuid.uuid4().hex[:10]}{call_suffix[:20]}",
        "caller_number": _phone(),
        "agent_id": "1001",
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(seconds=200)).isoformat(),
        "summary": _valid("小区停水两天了", summary[:15000]),
        "complainant_name": name[:50],
        "complainant_address": _valid("光明小区", address[:200]),
        "outcome": "dispatch",
    }
    async with clients() as client:
        response = await client.post(
            "/api/calls",
            content=_json_bytes(record),
            headers=bearer(AGENT_TOKENS["1001"]) | {"Content-Type": "application/json"},
        )
    _record(answers, response)


async def _send_web(clients: Clients, answers: Answers, texts: tuple[str, ...]) -> None:
    details, name = texts[0], texts[1]
    fields = complaint_fields(
        details=_valid("自来水发黄有异味已经三天", details[:3000]),
        name=_valid("张", name[:20]),
        contact=_phone(),
    )
    await _post_form(clients, answers, "/api/complaints", fields)


async def _send_feedback(clients: Clients, answers: Answers, texts: tuple[str, ...]) -> None:
    fields = feedback_fields(
        content=_valid("营业厅排队一个多小时", texts[0][:3000]),
        suggestions=texts[1][:1000],
    )
    await _post_form(clients, answers, "/api/feedback", fields)


async def _send_letter(clients: Clients, answers: Answers, texts: tuple[str, ...]) -> None:
    received = datetime.now(UTC) - timedelta(days=1)
    fields = {
        "kind": "letter",
        "registration_no": f"XF-{uuid.uuid4().hex[:12]}",
        "received_at": received.isoformat(),
        "complainant_name": _valid("刘", texts[1][:50]),
        "phone": _phone(),
        "address": _valid("和平里", texts[2][:200]),
        "body": _valid("自来水发黄已有一周请尽快检测水质", texts[0][:20000]),
    }
    await _post_form(clients, answers, "/api/letters", fields, STAFF)


async def _post_form(
    clients: Clients,
    answers: Answers,
    path: str,
    fields: dict[str, str],
    headers: dict[str, str] | None = None,
) -> None:
    # Lone surrogates cannot travel as UTF-8: a form sends what a broken client would.
    body = "&".join(f"{k}={_quote(v)}" for k, v in fields.items()).encode("ascii")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with clients() as client:
        response = await client.post(path, content=body, headers=form | (headers or {}))
    _record(answers, response)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value.encode("utf-8", "surrogatepass"), safe="")


async def _send_referral(clients: Clients, answers: Answers, texts: tuple[str, ...]) -> None:
    content, title, name = texts[0], texts[1], texts[2]
    payload = order(
        **{
            "工单编号": f"SZ12345-{uuid.uuid4().hex[:12]}",
            "业务流水号": f"LS{uuid.uuid4().hex[:12]}",
            "诉求内容": _valid("光明小区停水没有通知", content),
            "诉求地址": _valid("光明小区", title[:200]),
            "诉求人": name[:50] or "王女士",
            "来电号码": _phone(),
        }
    )
    body, headers = signed(_json_bytes(payload), GOV)
    async with clients() as client:
        response = await client.post("/api/referrals/gov12345", content=body, headers=headers)
    _record(answers, response)


def _record(answers: Answers, response: httpx.Response) -> None:
    if response.status_code in (200, 201):
        number = response.json()["number"]
        assert number, response.text
        answers.numbers.add(number)
    else:
        assert response.status_code < 500, response.text
        answers.refuse(response.status_code, response.text)


def _mail(subject: str, body: str, message_id: str) -> bytes:
    head = (
        f"From: Zhang San <zhang{uuid.uuid4().hex[:6]}@example.cn>\r\n"
        f"To: {MAILBOX}\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
    ).encode()
    # Raw 8-bit header and body, surrogates passed through as the bytes a broken mailer sends.
    subject_bytes = subject.replace("\r", " ").replace("\n", " ")[:900]
    body_text = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    body_text = "\r\n".join(
        ("." + line) if line.startswith(".") else line for line in body_text.split("\r\n")
    )
    return (
        head
        + b"Subject: "
        + subject_bytes.encode("utf-8", "surrogatepass")
        + b"\r\n\r\n"
        + body_text.encode("utf-8", "surrogatepass")
        + b"\r\n"
    )


def _smtp_send(port: int, raw: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("sender.example.cn")
        smtp.mail("sender@example.cn")
        smtp.rcpt(MAILBOX)
        code, _ = smtp.data(raw)
    return code


@pytest.mark.slow
async def test_any_text_through_any_channel_every_success_answer_is_exactly_one_ticket(
    stack: Stack, clients: Clients
) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers()
    texts = st.tuples(AWKWARD, AWKWARD, AWKWARD, AWKWARD)
    stack.start_router()

    async def call(value: tuple[str, ...]) -> None:
        await _send_call(clients, answers, value)

    async def web(value: tuple[str, ...]) -> None:
        await _send_web(clients, answers, value)

    async def referral(value: tuple[str, ...]) -> None:
        await _send_referral(clients, answers, value)

    async def feedback(value: tuple[str, ...]) -> None:
        await _send_feedback(clients, answers, value)

    async def letter(value: tuple[str, ...]) -> None:
        await _send_letter(clients, answers, value)

    for send in (call, web, referral, feedback, letter):
        await asyncio.to_thread(_run_property, loop, texts, send, 25)

    port = free_port()
    rt = stack.rt
    intake = MailIntake(stack.settings.email, rt.blobs, rt.handoff, rt.metrics)
    server = await start_smtp(stack.settings, intake, SmtpSettings(port=port))

    async def mail(value: tuple[str, ...]) -> None:
        key = f"<{uuid.uuid4().hex}@sender.example.cn>"
        code = await asyncio.to_thread(_smtp_send, port, _mail(value[0], value[1], key))
        if code == 250:
            answers.mail_keys.add(key)
        else:
            assert code < 500 or code == 552, code
            answers.refuse(code)

    try:
        await asyncio.to_thread(_run_property, loop, texts, mail, 25)
    finally:
        server.close()
        await server.wait_closed()

    # Most examples are acceptable complaints: the property is about them, not refusals.
    assert len(answers.numbers) >= 100, (answers.refused, answers.why)
    assert len(answers.mail_keys) >= 15, answers.refused
    expected = len(answers.numbers) + len(answers.mail_keys)

    async def all_there() -> bool:
        for number in answers.numbers:
            if not await _ticket_exists(stack, number):
                return False
        return all([await _mail_ticket_count(stack, k) == 1 for k in answers.mail_keys])

    assert await stack.wait_until(all_there, timeout=120), "a success answer has no ticket"
    # Nothing doubled: no more tickets than success answers (mail placed as follow-ups of a
    # sender's earlier ticket is not possible here: every mail has its own sender).
    assert await stack.ticket_count() == expected
    async with stack.rt.database.sessions() as session:
        sample = await find_ticket(session, sorted(answers.numbers)[0])
        assert sample is not None
        shown = await ticket_json(session, sample)
    assert "\x00" not in json.dumps(shown, ensure_ascii=False)
