"""Helpers of the referral tests: secrets, signed requests, shipped fixtures, and a real local
HTTP receiver for replies (a tiny asyncio server on 127.0.0.1, no mocks)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from channels.referral.settings import ReferralSettings, ReplyRoute, WebhookReply
from channels.referral.signature import signed_headers
from channels.runtime import Runtime
from store.referral_models import ReferralOutbox
from tests.stack import Stack
from tests.support_http import api_client, post_events
from workers.referrals import ReferralsWorker

FIXTURES = Path(__file__).parent / "fixtures" / "referrals"
SECRETS = {
    "SHOULI_REFERRAL_GOV12345_SECRET": "gov12345-dev-secret-for-tests-only",
    "SHOULI_REFERRAL_REGULATOR_SECRET": "regulator-dev-secret-for-tests-only",
    "SHOULI_REFERRAL_GOV12345_REPLY_SECRET": "gov12345-reply-secret-for-tests",
    "SHOULI_REFERRAL_REGULATOR_REPLY_SECRET": "regulator-reply-secret-for-tests",
}
GOV = SECRETS["SHOULI_REFERRAL_GOV12345_SECRET"]
REGULATOR = SECRETS["SHOULI_REFERRAL_REGULATOR_SECRET"]


@pytest.fixture(autouse=True)
def referral_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped config reads every referral secret from these variables."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def order(**changes: Any) -> dict[str, Any]:
    """The shipped 12345 work order with fields changed (None removes a field)."""
    data = copy.deepcopy(fixture("gov12345-order.json"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def encode(payload: dict[str, Any] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, ensure_ascii=False).encode()


def signed(
    payload: dict[str, Any] | bytes, secret: str = GOV, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    body = encode(payload)
    return body, signed_headers(secret, int(at if at is not None else time.time()), body) | {
        "Content-Type": "application/json"
    }


async def post_signed(
    client: httpx.AsyncClient,
    payload: dict[str, Any] | bytes,
    *,
    source: str = "gov12345",
    secret: str = GOV,
    at: float | None = None,
) -> httpx.Response:
    body, headers = signed(payload, secret, at)
    return await client.post(f"/api/referrals/{source}", content=body, headers=headers)


def runtime_with(runtime: Runtime, **referral_changes: Any) -> Runtime:
    """The same store and queue with other ``referrals`` settings (frozen models: a copy)."""
    referrals: ReferralSettings = runtime.settings.referrals.model_copy(update=referral_changes)
    settings = runtime.settings.model_copy(update={"referrals": referrals})
    return dataclasses.replace(runtime, settings=settings)


def source_changes(runtime: Runtime, key: str, **changes: Any) -> Any:
    """``referrals.sources`` with the source ``key`` changed."""
    return tuple(
        s.model_copy(update=changes) if s.key == key else s
        for s in runtime.settings.referrals.sources
    )


def reply_to(url: str, secret: str = "receiver-secret-for-tests") -> ReplyRoute:
    return ReplyRoute(webhook=WebhookReply(url=url, secret=secret))


@dataclasses.dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP server on 127.0.0.1 standing in for an authority's reply endpoint: answers
    ``fail_first`` requests with ``fail_status``, then 200 (``fail_first=None``: never 200)."""

    def __init__(self, fail_first: int | None = 0, fail_status: int = 503) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[Received] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/feedback"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(headers, body))
            failing = self.fail_first is None or len(self.requests) <= self.fail_first
            status = self.fail_status if failing else 200
            answer = b'{"ok": false}' if failing else b'{"ok": true}'
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(stack.rt) as opened:
        yield opened


@pytest.fixture
async def embedded_client(embedded_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(embedded_stack.rt) as opened:
        yield opened


async def handled_referral(stack: Stack, runtime: Runtime) -> str:
    """The regulator's shipped order placed, made a ticket by the router, and handled by
    staff: the moment its reply is owed."""
    async with api_client(runtime) as client:
        placed = await post_signed(
            client, fixture("generic-order.json"), source="housing-regulator", secret=REGULATOR
        )
        assert placed.status_code == 201, placed.text
        number: str = placed.json()["number"]
        assert await stack.drain() == 1
        await post_events(
            client,
            number,
            [("handle", {"result": "已更换小区二次供水水箱，水质检测合格", "result_code": "01"})],
        )
    return number


async def outbox(stack: Stack) -> list[ReferralOutbox]:
    async with stack.rt.database.sessions() as session:
        return list((await session.execute(select(ReferralOutbox))).scalars())


async def sweep_until(
    worker: ReferralsWorker, stack: Stack, status: str, count: int = 1, timeout: float = 30.0
) -> None:
    """Sweep the outbox until ``count`` of its rows are ``status`` (sent, dead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await worker.sweep()
        if sum(row.status == status for row in await outbox(stack)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {count} outbox row(s) {status} in time")


def referrals_worker(stack: Stack, runtime: Runtime | None = None) -> ReferralsWorker:
    """The referrals worker on this stack (its replay queue is one of QueueNames.all(), which
    the stack removes afterwards)."""
    return ReferralsWorker(runtime or stack.rt, stack.settings.worker)
