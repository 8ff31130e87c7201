"""POST /api/letters: letters, visits and faxes (书信/来访/传真) registered by staff with their
scans; same pipeline, the registering desk as first contact."""

# ruff: noqa: F811  (pytest fixtures are imported from tests/test_referral_support.py)

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.stack import Stack, events, notes, ticket_of
from tests.support_http import STAFF
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    client,
    embedded_client,
    referral_secrets,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A tiny but real PDF and PNG, as a scanner would send them.
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a5e00000000049454e44ae426082"
)
# Two days ago at 09:10 Beijing time (the letter arrived in the morning post).
RECEIVED = (datetime.now(SHANGHAI) - timedelta(days=2)).replace(
    hour=9, minute=10, second=0, microsecond=0
)
LETTER = {
    "kind": "letter",
    "registration_no": "XF-2026-1124-017",
    "received_at": RECEIVED.isoformat(),
    "complainant_name": "刘大爷",
    "phone": "0755-8123 4567",
    "address": "示例市和平里3号楼",
    "body": "和平里3号楼自来水发黄已有一周，多次反映未果，特来信请求尽快检测水质。",
}


async def test_a_letter_with_its_scans_becomes_a_letter_ticket_of_the_registering_desk(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/api/letters",
        data=LETTER,
        files=[
            ("scans", ("letter-p1.pdf", PDF, "application/pdf")),
            ("scans", ("envelope.png", PNG, "image/png")),
        ],
        headers=STAFF,
    )
    assert response.status_code == 201, response.text
    number = response.json()["number"]
    assert await stack.drain() == 1
    ticket = await ticket_of(stack, number)
    assert ticket["channel"] == "letter"
    assert ticket["source_key"] == "letter:XF-2026-1124-017"
    assert ticket["first_contact"] == {"kind": "desk", "id": "dev-officer", "department": None}
    assert ticket["received_at"] == RECEIVED.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert ticket["complainant"]["name"] == "刘大爷"
    assert ticket["complainant"]["phone"] == "+8675581234567"
    assert ticket["category"] == "water_quality"
    assert [a["filename"] for a in ticket["attachments"]] == ["letter-p1.pdf", "envelope.png"]
    for attachment, data in zip(ticket["attachments"], (PDF, PNG), strict=True):
        assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
        assert attachment["size"] == len(data)
        assert await stack.rt.blobs.get(attachment["sha256"]) == data
    assert "scans: 2" in notes(ticket)
    (received,) = events(ticket, "received")
    assert received["detail"]["attachments"] == 2


async def test_the_same_registration_number_again_answers_the_same_number(
    embedded_client: httpx.AsyncClient,
) -> None:
    first = await embedded_client.post("/api/letters", data=LETTER, headers=STAFF)
    again = await embedded_client.post("/api/letters", data=LETTER, headers=STAFF)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


async def test_a_visit_forwarded_by_a_regulator_is_a_referral_with_its_deadline(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    visit = {
        "kind": "visit",
        "desk": "reception-1",
        "body": "来访人反映小区水压低，已向市消协投诉，消协转来督办函。",
        "complainant_name": "周女士",
        "phone": "13600001111",
        "referral_source": "consumer-association",
        "referral_reference": "XH-2026-0331",
        "referral_deadline": "2026-11-25T17:00:00+08:00",
    }
    response = await embedded_client.post("/api/letters", data=visit, headers=STAFF)
    assert response.status_code == 201, response.text
    assert await embedded_stack.drain() == 1
    ticket = await ticket_of(embedded_stack, response.json()["number"])
    assert ticket["first_contact"]["id"] == "reception-1"
    assert ticket["referral"] == {
        "source": "consumer-association",
        "reference": "XH-2026-0331",
        "deadline": "2026-11-25T09:00:00Z",
    }
    assert ticket["severity"] == "major"  # 消协 involved


async def test_a_letter_needs_a_staff_token_a_body_and_accepted_scans(
    embedded_client: httpx.AsyncClient,
) -> None:
    anonymous = await embedded_client.post("/api/letters", data=LETTER)
    assert anonymous.status_code == 401
    empty = await embedded_client.post("/api/letters", data={"kind": "fax"}, headers=STAFF)
    assert empty.status_code == 422 and "body" in empty.json()["error"]["fields"]
    exe = await embedded_client.post(
        "/api/letters",
        data=LETTER,
        files=[("scans", ("virus.exe", b"MZ\x90\x00", "application/octet-stream"))],
        headers=STAFF,
    )
    assert exe.status_code == 422
    assert "scans.0" in exe.json()["error"]["fields"]
    half = {k: v for k, v in LETTER.items() if k != "registration_no"}
    lonely = await embedded_client.post(
        "/api/letters", data=half | {"referral_source": "12315"}, headers=STAFF
    )
    assert lonely.status_code == 422
    assert "referral_reference" in lonely.json()["error"]["fields"]


async def test_a_scan_over_the_limit_is_413(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    limit = embedded_stack.settings.referrals.letters.max_scan_bytes
    big = PDF + b"0" * limit
    response = await embedded_client.post(
        "/api/letters",
        data=LETTER,
        files=[("scans", ("big.pdf", big, "application/pdf"))],
        headers=STAFF,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "scan_too_large"
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0


async def test_a_confidential_letter_keeps_phone_numbers_out_of_its_text(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    letter = LETTER | {
        "registration_no": "XF-2026-1124-018",
        "confidential": "true",
        "body": "举报抄表员索要好处费，我的电话13812345678，请为我保密。",
    }
    response = await embedded_client.post("/api/letters", data=letter, headers=STAFF)
    assert response.status_code == 201, response.text
    assert await embedded_stack.drain() == 1
    ticket = await ticket_of(embedded_stack, response.json()["number"])
    assert "13812345678" not in ticket["body"] and "138****5678" in ticket["body"]
    assert "XF-2026-1124-018" in ticket["body"]
    assert any(n.startswith("confidential_complainant") for n in notes(ticket))
    assert ticket["department"] == "discipline"
