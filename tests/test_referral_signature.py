"""POST /api/referrals/{source}: signatures, timestamps, replays and body size, against the
real store and queue (the replay guard is a table, so both deployments are checked)."""

# ruff: noqa: F811  (pytest fixtures are imported from tests/test_referral_support.py)

from __future__ import annotations

import hmac
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from channels.referral.signature import SignatureRejected, sign, verify
from store.models import IntakeNumber
from store.referral_models import ReferralSignature
from tests.stack import Stack
from tests.support_http import api_client
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    GOV,
    REGULATOR,
    client,
    embedded_client,
    encode,
    order,
    post_signed,
    referral_secrets,
    runtime_with,
    signed,
    source_changes,
)


async def _reservations(stack: Stack) -> int:
    async with stack.rt.database.sessions() as session:
        return int(
            (await session.execute(select(func.count()).select_from(IntakeNumber))).scalar_one()
        )


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_a_correctly_signed_work_order_is_accepted_with_its_number(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    response = await post_signed(client, order())
    assert response.status_code == 201, response.text
    assert response.json() == {"number": response.json()["number"]}
    assert response.json()["number"].startswith("TS")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "timestamp_missing"),
        ({"X-Shouli-Timestamp": "yesterday"}, "timestamp_malformed"),
        ({"X-Shouli-Timestamp": "{now}"}, "signature_missing"),
        ({"X-Shouli-Timestamp": "{now}", "X-Shouli-Signature": "md5=abc"}, "signature_malformed"),
        (
            {"X-Shouli-Timestamp": "{now}", "X-Shouli-Signature": "sha256=" + "0" * 64},
            "signature_mismatch",
        ),
    ],
)
async def test_a_request_without_a_valid_signature_is_refused_with_its_reason(
    embedded_stack: Stack,
    embedded_client: httpx.AsyncClient,
    headers: dict[str, str],
    code: str,
) -> None:
    now = str(int(time.time()))
    sent = {k: v.replace("{now}", now) for k, v in headers.items()}
    response = await embedded_client.post(
        "/api/referrals/gov12345", content=encode(order()), headers=sent
    )
    assert response.status_code == 401
    assert _error(response)["code"] == code
    assert await _reservations(embedded_stack) == 0, "nothing may be stored for a refused request"


async def test_a_body_changed_after_signing_does_not_match_the_signature(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    body, headers = signed(order())
    tampered = body.replace("王女士".encode(), "张先生".encode())
    response = await embedded_client.post(
        "/api/referrals/gov12345", content=tampered, headers=headers
    )
    assert (response.status_code, _error(response)["code"]) == (401, "signature_mismatch")


async def test_another_sources_secret_does_not_sign_for_this_source(
    embedded_client: httpx.AsyncClient,
) -> None:
    response = await post_signed(embedded_client, order(), secret=REGULATOR)
    assert (response.status_code, _error(response)["code"]) == (401, "signature_mismatch")


async def test_a_request_signed_more_than_five_minutes_ago_is_refused_as_expired(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    response = await post_signed(embedded_client, order(), at=time.time() - 301)
    assert response.status_code == 401
    assert _error(response)["code"] == "timestamp_expired"
    assert await _reservations(embedded_stack) == 0
    fresh = await post_signed(embedded_client, order(), at=time.time() - 240)
    assert fresh.status_code == 201, "four minutes old is still within the window"


async def test_a_request_signed_in_the_future_beyond_the_window_is_refused(
    embedded_client: httpx.AsyncClient,
) -> None:
    response = await post_signed(embedded_client, order(), at=time.time() + 400)
    assert (response.status_code, _error(response)["code"]) == (401, "timestamp_in_future")


async def test_the_same_signed_request_sent_again_is_refused_as_a_replay(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    body, headers = signed(order(工单编号="REPLAY-1"))
    first = await client.post("/api/referrals/gov12345", content=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/api/referrals/gov12345", content=body, headers=headers)
    assert again.status_code == 401
    assert _error(again)["code"] == "replayed"
    # Signed afresh, the same order is welcome: it answers the same number (200).
    resent = await post_signed(client, order(工单编号="REPLAY-1"), at=time.time() + 1)
    assert resent.status_code == 200
    assert resent.json() == {"number": first.json()["number"], "duplicate": True}


async def test_a_request_refused_for_its_content_does_not_burn_its_signature(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    """Only accepted requests are remembered: a 404 (update before its order) can be sent
    again once the order is in, without re-signing."""
    urge = {"工单编号": "LATE-1", "操作类型": "催办", "说明": "请尽快处理"}
    body, headers = signed(urge)
    early = await embedded_client.post("/api/referrals/gov12345", content=body, headers=headers)
    assert (early.status_code, _error(early)["code"]) == (404, "unknown_order")
    assert (await post_signed(embedded_client, order(工单编号="LATE-1"))).status_code == 201
    later = await embedded_client.post("/api/referrals/gov12345", content=body, headers=headers)
    assert later.status_code == 200, later.text
    assert later.json()["update"] == "urge"


def test_signatures_are_compared_with_hmac_compare_digest_against_every_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body = b'{"x": 1}'
    now = time.time()
    good = sign("second-secret-0123456789", int(now), body)
    verified = verify(
        secrets=["first-secret-0123456789", "second-secret-0123456789"],
        timestamp=str(int(now)),
        signature=good,
        body=body,
        now=now,
        max_age_seconds=300,
    )
    assert verified.digest == good.removeprefix("sha256=")
    # Both secrets compared (no early exit), each against the presented MAC.
    assert len(calls) == 2 and all(b == good.removeprefix("sha256=").encode() for _, b in calls)
    calls.clear()
    with pytest.raises(SignatureRejected) as refused:
        verify(
            secrets=["first-secret-0123456789"],
            timestamp=str(int(now)),
            signature="sha256=" + "f" * 64,
            body=body,
            now=now,
            max_age_seconds=300,
        )
    assert refused.value.code == "signature_mismatch" and len(calls) == 1


def test_an_upper_case_hex_signature_is_the_same_signature() -> None:
    body = b"{}"
    now = int(time.time())
    value = sign("a-secret-0123456789abc", now, body)
    upper = "sha256=" + value.removeprefix("sha256=").upper()
    verified = verify(
        secrets=["a-secret-0123456789abc"],
        timestamp=str(now),
        signature=upper,
        body=body,
        now=now,
        max_age_seconds=300,
    )
    # The replay guard keys on the lower-case form, so the upper-case copy is a replay too.
    assert verified.digest == value.removeprefix("sha256=")


async def test_a_rotated_out_secret_is_accepted_while_it_is_configured(
    embedded_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOULI_REFERRAL_GOV12345_OLD_SECRET", "old-gov-secret-0123456789")
    runtime = runtime_with(
        embedded_stack.rt,
        sources=source_changes(
            embedded_stack.rt, "gov12345", previous_secret_env="SHOULI_REFERRAL_GOV12345_OLD_SECRET"
        ),
    )
    async with api_client(runtime) as rotated:
        old = await post_signed(
            rotated, order(工单编号="ROT-1"), secret="old-gov-secret-0123456789"
        )
        new = await post_signed(rotated, order(工单编号="ROT-2"), secret=GOV)
    assert (old.status_code, new.status_code) == (201, 201)
    async with api_client(embedded_stack.rt) as plain:
        gone = await post_signed(plain, order(工单编号="ROT-3"), secret="old-gov-secret-0123456789")
    assert gone.status_code == 401


async def test_a_body_over_the_sources_limit_is_refused_with_413_before_anything_is_stored(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    limit = embedded_stack.settings.referrals.source("housing-regulator")
    assert limit is not None
    big = {"order_id": "BIG-1", "description": "水" * (limit.max_body_bytes // 3 + 10)}
    response = await post_signed(embedded_client, big, source="housing-regulator", secret=REGULATOR)
    assert response.status_code == 413
    assert _error(response)["code"] == "body_too_large"
    # Streamed without a Content-Length, the limit holds as well.
    body, headers = signed(big, REGULATOR)

    async def chunks() -> Any:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    streamed = await embedded_client.post(
        "/api/referrals/housing-regulator", content=chunks(), headers=headers
    )
    assert streamed.status_code == 413
    async with embedded_stack.rt.database.sessions() as session:
        seen = (await session.execute(select(func.count()).select_from(ReferralSignature))).scalar()
    assert seen == 0 and await _reservations(embedded_stack) == 0


async def test_an_unknown_source_is_404_and_a_source_without_its_secret_is_503(
    embedded_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = await post_signed(embedded_client, order(), source="nobody")
    assert (unknown.status_code, _error(unknown)["code"]) == (404, "unknown_source")
    monkeypatch.delenv("SHOULI_REFERRAL_GOV12345_SECRET")
    missing = await post_signed(embedded_client, order())
    assert missing.status_code == 503
    assert _error(missing)["code"] == "source_not_configured"
    assert missing.headers["Retry-After"]
