"""Deeply nested JSON is refused with 422 ``json_too_deep`` before ``json.loads`` recurses into
it, on every endpoint that takes a JSON body, and the server stays healthy on the same
keep-alive connection."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from channels.referral.payload import PayloadError, parse_payload
from channels.referral.signature import signed_headers
from ingest.bodies import JsonTooDeep, check_json_depth
from tests.http_wire import Connection, edge
from tests.stack import Stack
from tests.support_http import AGENT_TOKENS, STAFF, api_client, bearer
from tests.test_referral_support import (  # noqa: F401  (fixture)
    GOV,
    REGULATOR,
    SECRETS,
    order,
    referral_secrets,
    signed,
)

pytestmark = pytest.mark.usefixtures("agent_tokens")
DEEP = b"[" * 100_000 + b"]" * 100_000
AGENT = bearer(AGENT_TOKENS["1001"])


def nested(depth: int) -> bytes:
    """An object ``depth`` levels deep: {"a": {"a": ... 1 ...}}."""
    return b'{"a": ' * (depth - 1) + b'{"a": 1' + b"}" * depth


@pytest.fixture
async def api(embedded_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(embedded_stack.rt) as client:
        yield client


def assert_too_deep(status: int, body: dict[str, Any]) -> None:
    assert status == 422, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == "json_too_deep"
    assert "64" in body["error"]["message"], "the message names the limit"


def test_the_pre_scan_counts_brackets_outside_strings_only() -> None:
    check_json_depth(nested(64), 64)
    check_json_depth(b"[" * 64 + b"]" * 64, 64)
    with pytest.raises(JsonTooDeep):
        check_json_depth(nested(65), 64)
    with pytest.raises(JsonTooDeep):
        check_json_depth("[" * 65, 64)  # refused before the missing closers matter
    # Brackets inside strings, escaped quotes among them, are text, not nesting.
    text = '{"a": "' + "[{" * 500 + '\\" [[[[ \\\\", "b": ["]]]]", "[[[["]}'
    check_json_depth(text, 2)
    with pytest.raises(JsonTooDeep):
        check_json_depth(text, 1)


def test_the_pre_scan_of_a_flat_megabyte_is_cheap() -> None:
    body = b'{"items": [' + b", ".join([b'{"k": "[v]", "n": [1, 2]}'] * 40_000) + b"]}"
    assert len(body) > 1_000_000
    started = time.perf_counter()
    check_json_depth(body, 64)
    assert time.perf_counter() - started < 0.5


def test_a_deep_drop_folder_or_mailed_order_is_a_payload_error() -> None:
    """Drop folders and mail share the webhook's parser: a refused document, not a crash."""
    with pytest.raises(PayloadError) as raised:
        parse_payload(DEEP, "json", max_depth=64)
    assert raised.value.code == "json_too_deep"
    assert parse_payload(nested(3), "json", max_depth=64) == {"a": {"a": {"a": 1}}}
    # The same for XML orders, whose walk into nested elements recursed as well.
    with pytest.raises(PayloadError) as raised:
        parse_payload(b"<a>" * 100_000 + b"</a>" * 100_000, "xml", max_depth=64)
    assert raised.value.code == "xml_too_deep"
    assert parse_payload(b"<o>" + b"<a>" * 63 + b"x" + b"</a>" * 63 + b"</o>", "xml")


async def test_a_deep_signed_referral_is_422_and_the_same_connection_serves_the_next_request(
    embedded_stack: Stack,
) -> None:
    async with edge(embedded_stack, **SECRETS) as (port, process):
        connection = await Connection.open(port)
        try:
            headers = signed_headers(GOV, int(time.time()), DEEP) | {
                "Content-Type": "application/json"
            }
            deep = await connection.request("POST", "/api/referrals/gov12345", DEEP, headers)
            assert_too_deep(deep.status, deep.json())
            assert deep.headers.get("connection", "").lower() != "close"

            body, headers = signed(order())
            placed = await connection.request("POST", "/api/referrals/gov12345", body, headers)
            assert placed.status == 201, placed.body
            health = await connection.request("GET", "/healthz")
            assert health.status == 200 and health.json() == {"status": "ok"}
        finally:
            await connection.close()
        assert process.poll() is None


async def test_every_json_endpoint_refuses_deep_bodies(api: httpx.AsyncClient) -> None:
    json_type = {"Content-Type": "application/json"}
    agent = AGENT | json_type
    for body in (DEEP, nested(65)):
        calls = await api.post("/api/calls", content=body, headers=agent)
        assert_too_deep(calls.status_code, calls.json())
        events = await api.post(
            "/api/tickets/TS202611-000001/events", content=body, headers=STAFF | json_type
        )
        assert_too_deep(events.status_code, events.json())
        referral = await api.post(
            "/api/referrals/housing-regulator",
            content=body,
            headers=signed_headers(REGULATOR, int(time.time()), body) | json_type,
        )
        assert_too_deep(referral.status_code, referral.json())
    # Just within the limit is an ordinary body again (here: the wrong fields, 422 as before).
    shallow = await api.post("/api/calls", content=nested(64), headers=agent)
    assert shallow.status_code == 422 and shallow.json()["error"]["code"] == "invalid_request"


async def test_the_depth_limit_comes_from_the_http_configuration(
    embedded_stack: Stack,
) -> None:
    settings = embedded_stack.rt.settings
    http = settings.http.model_copy(update={"max_json_depth": 3})
    runtime = dataclasses.replace(
        embedded_stack.rt, settings=settings.model_copy(update={"http": http})
    )
    async with api_client(runtime) as client:
        answer = await client.post(
            "/api/calls",
            content=b'{"call_id": {"a": {"b": {"c": 1}}}}',
            headers=AGENT | {"Content-Type": "application/json"},
        )
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "json_too_deep"
    assert "3" in answer.json()["error"]["message"]
