"""The log of real processes, driven through every channel: one JSON stream in which
third-party loggers (aiosmtpd, uvicorn, aio-pika, ...) and the HTTP access log are routed
and masked like our own lines, so no phone number, email address or complaint text leaks.

Embedded: one ``shouli serve``. Distributed: ``shouli edge`` and each worker as its own
process on PostgreSQL and RabbitMQ, as production runs them.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import smtplib
import subprocess
import time
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests.stack import Stack, events
from tests.support_http import AGENT_TOKENS, STAFF, agent_env, bearer
from tests.test_hotline_api import call
from tests.test_processes import _free_port, _wait_ready
from tests.test_referral_support import REGULATOR, SECRETS, fixture, signed
from tests.test_web_support import complaint_fields
from workers.registry import WORKERS

pytestmark = pytest.mark.slow

MAILBOX = "complaints@water.example.cn"
MAIL_SENDER = "li.wei.mailer@example.org"
MAIL_PHONE = "13911112222"
MAIL_SENTENCE = "楼道里的水表箱被人撬开，水表玻璃已经碎了一地。"
CALL_PHONE = "137 1234 0001"
CALL_SENTENCE = "翠湖花园7栋地下室积水没过脚踝，水泵房整夜轰响。"
WEB_PHONE = "13812345678"
WEB_SENTENCE = "东门路口的消防栓漏水一整夜，路面已经结了一层冰。"
WEB_EMAIL = "wang.fang.web@example.net"
WEB_EMAIL_SENTENCE = "南苑小区二期的热水管道破裂，楼下车库全被淹了。"
REFERRAL_PHONE = "+86 139 8765 4321"
REFERRAL_EMAIL = "chen.jing.referral@example.cn"
REFERRAL_SENTENCE = "Brown sludge came out of every tap in Lotus Court on Tuesday night."

PHONES = (MAIL_PHONE, CALL_PHONE, WEB_PHONE, REFERRAL_PHONE)
EMAILS = (MAIL_SENDER, MAILBOX, WEB_EMAIL, REFERRAL_EMAIL)
SENTENCES = (MAIL_SENTENCE, CALL_SENTENCE, WEB_SENTENCE, WEB_EMAIL_SENTENCE, REFERRAL_SENTENCE)


def _national(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def _complaint_mail() -> bytes:
    message = EmailMessage()
    message["From"] = f"Li Wei <{MAIL_SENDER}>"
    message["To"] = MAILBOX
    message["Subject"] = "水表箱被撬"
    message["Message-ID"] = "<log-privacy-1@example.org>"
    message.set_content(f"{MAIL_SENTENCE}联系电话{MAIL_PHONE}。")
    return message.as_bytes()


def _send_mail(port: int) -> None:
    # The listener starts with the HTTP server; give it a moment past /readyz.
    deadline = time.monotonic() + 20
    while True:
        try:
            client = smtplib.SMTP("127.0.0.1", port, timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with client:
        client.ehlo("sender.example.org")
        assert client.mail(MAIL_SENDER)[0] == 250
        assert client.rcpt(MAILBOX)[0] == 250
        assert client.data(_complaint_mail())[0] == 250


async def _drive(base: str, smtp_port: int, stack: Stack) -> list[str]:
    """Every channel once, and the progress inquiries; the paths inquired (with a contact)."""
    await asyncio.to_thread(_send_mail, smtp_port)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        hotline = await client.post(
            "/api/calls",
            json=call(caller_number=CALL_PHONE, summary=CALL_SENTENCE),
            headers=bearer(AGENT_TOKENS["1001"]),
        )
        assert hotline.status_code == 201, hotline.text
        by_phone = await client.post(
            "/api/complaints", data=complaint_fields(contact=WEB_PHONE, details=WEB_SENTENCE)
        )
        assert by_phone.status_code == 201, by_phone.text
        by_email = await client.post(
            "/api/complaints",
            data=complaint_fields(contact=WEB_EMAIL, details=WEB_EMAIL_SENTENCE),
        )
        assert by_email.status_code == 201, by_email.text
        order = fixture("generic-order.json") | {
            "order_id": "HR-2026-11-LOG1",
            "description": REFERRAL_SENTENCE,
            "complainant": {
                "name": "Chen Jing",
                "phone": REFERRAL_PHONE,
                "email": REFERRAL_EMAIL,
                "address": "Lotus Court, Example City",
            },
        }
        body, headers = signed(order, REGULATOR)
        referral = await client.post(
            "/api/referrals/housing-regulator", content=body, headers=headers
        )
        assert referral.status_code == 201, referral.text

        # Progress inquiries with the contact in the query string, in several spellings.
        phone_path = f"/api/complaints/{by_phone.json()['number']}/progress"
        email_path = f"/api/complaints/{by_email.json()['number']}/progress"
        for path, contact in (
            (phone_path, WEB_PHONE),
            (phone_path, "+86 138-1234-5678"),
            (email_path, WEB_EMAIL),
        ):
            answer = await client.get(path, params={"contact": contact})
            assert answer.status_code == 200, answer.text
        # The unguessable link is a credential: it must not be readable in the log either.
        link = httpx.URL(by_phone.json()["progress_url"]).path
        assert (await client.get(link)).status_code == 200

        assert await stack.wait_for_tickets(5, timeout=60) == 5
        number = referral.json()["number"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = await client.get(f"/api/tickets/{number}", headers=STAFF)
            if answer.status_code == 200 and events(answer.json(), "referral_registered"):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the referral was never registered")
    return [phone_path, email_path, link]


async def test_every_line_of_a_multi_channel_run_is_masked_json_including_library_lines(
    stack: Stack,
) -> None:
    port, smtp_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    env = (
        stack.process_env()
        | SECRETS
        | agent_env()
        | {
            "SHOULI_HTTP__PORT": str(port),
            "SHOULI_EMAIL__SMTP__PORT": str(smtp_port),
            "SHOULI_ORGANISATION__PUBLIC_URL": base,
            "SHOULI_REFERRALS__POLL_SECONDS": "0.2",
            "SHOULI_LOGGING__FORMAT": "json",
        }
    )
    roles = (
        [["serve"]]
        if stack.mode == "embedded"
        else [["edge"], *(["worker", name] for name in sorted(WORKERS))]
    )
    logs = [stack.tmp_path / f"{'-'.join(role)}.log" for role in roles]
    processes: list[subprocess.Popen[bytes]] = []
    for role, log in zip(roles, logs, strict=True):
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    stack.shouli_command(*role),
                    env=env,
                    cwd=stack.tmp_path,
                    stdout=out,
                    stderr=out,
                )
            )
    try:
        await _wait_ready(f"{base}/readyz", processes[0])
        inquired = await _drive(base, smtp_port, stack)
        await asyncio.sleep(1)  # the notify worker's acknowledgements, logged too
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        codes = [process.wait(30) for process in processes]
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    assert codes == [0] * len(processes), text[-3000:]

    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None

    # Nothing personal, in any spelling a library or a URL could give it.
    compact = re.sub(r"[\s()+-]|%2B|%20", "", text, flags=re.IGNORECASE)
    for phone in PHONES:
        assert _national(phone) not in compact, f"{phone!r} reached the log"
    lowered = text.lower()
    for address in EMAILS:
        for spelling in (address, address.replace("@", "%40")):
            assert spelling.lower() not in lowered, f"{spelling!r} reached the log"
    for sentence in SENTENCES:
        for spelling in (sentence, json.dumps(sentence)[1:-1], repr(sentence.encode())[2:-1]):
            assert spelling not in text, f"{sentence!r} reached the log"
    token = inquired[2].rsplit("/", 1)[1]
    assert token not in text, "the progress link's token reached the log"

    # Routed, not silenced: aiosmtpd's envelope lines and uvicorn's are there, masked.
    smtp_lines = [r for r in records if r.get("logger") == "mail.log"]
    assert any("sender: l***@example.org" in r["event"] for r in smtp_lines), smtp_lines
    assert any("recip: c***@water.example.cn" in r["event"] for r in smtp_lines), smtp_lines
    assert any(str(r.get("logger", "")).startswith("uvicorn") for r in records)
    assert all(r.get("level") and r.get("timestamp") for r in records), "one shape for all"

    # One access line per request, the query masked; uvicorn's own access log is not written.
    access = [r for r in records if r.get("event") == "http_request"]
    assert not [r for r in records if r.get("logger") == "uvicorn.access"]
    phone_inquiries = [r for r in access if r["path"] == inquired[0]]
    assert len(phone_inquiries) == 2, "one line per request, not two"
    assert all("****" in r["query"]["contact"] for r in phone_inquiries), phone_inquiries
    (email_inquiry,) = [r for r in access if r["path"] == inquired[1]]
    assert email_inquiry["query"]["contact"] == "w***@example.net"
    (call_line,) = [r for r in access if r["path"] == "/api/calls"]
    assert call_line["method"] == "POST" and call_line["status"] == 201
    assert isinstance(call_line["duration_ms"], int | float)
    assert [r["status"] for r in access if r["path"] == "/progress/***"] == [200]
    assert not any("client" in r for r in access), "no client address in the access log"
