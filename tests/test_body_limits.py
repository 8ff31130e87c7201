"""JSON bodies are read only once the caller is known, and only up to the configured limit:
an unauthenticated body is never read, a body over ``http.max_json_body_bytes`` is cut off
while it streams, and a Content-Length over the limit is refused before any body byte."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from channels.runtime import Runtime
from tests.http_wire import Connection, edge
from tests.stack import Stack
from tests.support_http import AGENT_TOKENS, STAFF, agent_env, api_client, bearer
from tests.test_hotline_api import call

pytestmark = pytest.mark.usefixtures("agent_tokens")

MB = 1024 * 1024
TEN_GB = 10 * 1024 * MB
AGENT = bearer(AGENT_TOKENS["1001"])
JSON = {"Content-Type": "application/json"}
EVENTS = "/api/tickets/TS202611-000001/events"


class CountingBody:
    """A request body of ``chunks`` chunks made on demand, counting how many were pulled."""

    def __init__(self, chunks: int, size: int = MB) -> None:
        self.chunks = chunks
        self.chunk = b" " * size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.chunk


def with_limit(runtime: Runtime, max_json_body_bytes: int) -> Runtime:
    http = runtime.settings.http.model_copy(update={"max_json_body_bytes": max_json_body_bytes})
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"http": http}))


@pytest.fixture
async def api(embedded_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(embedded_stack.rt) as opened:
        yield opened


@pytest.mark.parametrize("path", ["/api/calls", EVENTS])
@pytest.mark.parametrize(
    ("token", "code"),
    [({}, "unauthenticated"), ({"Authorization": "Bearer not-a-token-at-all"}, "invalid_token")],
)
async def test_an_unauthenticated_200_mb_body_is_refused_with_401_without_being_read(
    api: httpx.AsyncClient, path: str, token: dict[str, str], code: str
) -> None:
    body = CountingBody(200)
    answer = await api.post(path, content=body, headers=JSON | token)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.headers["www-authenticate"] == "Bearer"
    assert body.pulled == 0, "the body was read before the token was checked"


@pytest.mark.parametrize(("path", "token"), [("/api/calls", AGENT), (EVENTS, STAFF)])
async def test_an_authenticated_body_over_the_limit_is_cut_off_with_413_while_it_streams(
    embedded_stack: Stack, api: httpx.AsyncClient, path: str, token: dict[str, str]
) -> None:
    limit = embedded_stack.settings.http.max_json_body_bytes
    chunk = 64 * 1024
    body = CountingBody(limit // chunk + 100, chunk)  # no Content-Length: chunked
    answer = await api.post(path, content=body, headers=JSON | token)
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error == {
        "code": "body_too_large",
        "message": f"the body is larger than {limit} bytes",
        "fields": {},
    }
    assert body.pulled == limit // chunk + 1, "reading stopped at the chunk crossing the limit"


@pytest.mark.parametrize(("path", "token"), [("/api/calls", AGENT), (EVENTS, STAFF)])
async def test_a_declared_ten_gigabyte_body_is_413_before_any_byte_is_read(
    api: httpx.AsyncClient, path: str, token: dict[str, str]
) -> None:
    body = CountingBody(16)
    answer = await api.post(
        path, content=body, headers=JSON | token | {"Content-Length": str(TEN_GB)}
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"
    assert body.pulled == 0


async def test_the_limit_is_http_max_json_body_bytes_and_a_body_within_it_is_filed(
    embedded_stack: Stack,
) -> None:
    record = call()
    body = json.dumps(record).encode()
    longer = json.dumps(record | {"summary": record["summary"] + "!"}).encode()
    async with api_client(with_limit(embedded_stack.rt, len(body))) as small:
        filed = await small.post("/api/calls", content=body, headers=JSON | AGENT)
        assert filed.status_code == 201, filed.text
        over = await small.post("/api/calls", content=longer, headers=JSON | AGENT)
        assert over.status_code == 413 and over.json()["error"]["code"] == "body_too_large"


async def test_the_running_server_answers_before_the_body_is_sent(
    embedded_stack: Stack,
) -> None:
    """Headers only, no body byte: the answer must come without waiting for the body."""
    cases = [
        ("/api/calls", {}, str(200 * MB), 401),
        (EVENTS, {}, str(200 * MB), 401),
        ("/api/calls", AGENT, str(TEN_GB), 413),
        (EVENTS, STAFF, str(TEN_GB), 413),
        ("/api/referrals/gov12345", {}, str(TEN_GB), 413),
    ]
    env = agent_env() | {"SHOULI_REFERRAL_GOV12345_SECRET": "gov12345-dev-secret-for-tests-only"}
    async with edge(embedded_stack, **env) as (port, process):
        for path, token, length, status in cases:
            connection = await Connection.open(port)
            try:
                started = time.monotonic()
                await connection.send_head("POST", path, JSON | token | {"Content-Length": length})
                answer = await connection.answer(timeout=10)
                assert (path, answer.status) == (path, status), answer.body
                assert time.monotonic() - started < 5
                expected = "body_too_large" if status == 413 else "unauthenticated"
                assert answer.json()["error"]["code"] == expected
            finally:
                await connection.close()
        # Still serving.
        connection = await Connection.open(port)
        try:
            assert (await connection.request("GET", "/healthz")).status == 200
        finally:
            await connection.close()
        assert process.poll() is None


async def test_the_api_description_still_documents_both_json_bodies(
    api: httpx.AsyncClient,
) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path, model in (
        ("/api/calls", "CallRecord"),
        ("/api/tickets/{number}/events", "StaffEvent"),
    ):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"] == {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
            "required": True,
        }
        assert "413" in operation["responses"]
        assert spec["components"]["schemas"][model]["type"] == "object"
    assert "call_id" in spec["components"]["schemas"]["CallRecord"]["properties"]
    assert set(spec["components"]["schemas"]["StaffEvent"]["properties"]) == {"kind", "detail"}


async def test_the_shapes_of_a_bad_body_are_what_they_were(api: httpx.AsyncClient) -> None:
    """Reading the body ourselves must not change what a sender of a wrong body is told."""
    cases = {
        b"{not json": {"1": "JSON decode error"},
        b"": {"body": "Field required"},
        b"[1, 2]": {"body": "Input should be a valid dictionary or object to extract fields from"},
    }
    for body, fields in cases.items():
        answer = await api.post(EVENTS, content=body, headers=JSON | STAFF)
        assert answer.status_code == 422
        assert answer.json()["error"] == {
            "code": "invalid_request",
            "message": "some fields are invalid",
            "fields": fields,
        }
    # Not declared as JSON: refused as before, the body is not taken for an object.
    untyped = await api.post(EVENTS, content=b'{"kind": "note"}', headers=STAFF)
    assert untyped.status_code == 422
    assert untyped.json()["error"]["fields"] == {
        "body": "Input should be a valid dictionary or object to extract fields from"
    }
    wrong = await api.post(EVENTS, json={"kind": "", "colour": 1}, headers=STAFF)
    assert wrong.status_code == 422
    assert set(wrong.json()["error"]["fields"]) == {"kind"}, "extra keys are ignored as before"
