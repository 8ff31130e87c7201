"""The one in-process HTTP client of the tests, and the tokens the shipped config reads.

``api_client`` speaks to the real app through httpx's ASGI transport (no socket): each client
comes from an address of its own (the web form rate-limits per address) unless ``ip`` says
otherwise, and carries a bearer ``token`` when given one. The shipped ``config.yaml`` reads
the agents' tokens from ``SHOULI_AGENT_<id>_TOKEN``: the ``agent_tokens`` fixture (registered
for every module by ``conftest.py``) sets them to ``AGENT_TOKENS``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from channels.runtime import Runtime
from ingest.app.http import create_app
from tests.stack import Stack

# The shipped config's own address (http.host 0.0.0.0, port 8000, no public_url): the origin
# the web form's CSRF check accepts and the start of the progress links the app writes.
BASE_URL = "http://127.0.0.1:8000"
AGENT_TOKENS = {"1001": "agent-1001-token-abcdefgh", "1002": "agent-1002-token-ijklmnop"}
# The development staff token of the shipped config (auth.staff).
STAFF_TOKEN = "dev-staff-token-change-me"
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def agent_env() -> dict[str, str]:
    """The variables the shipped config reads the agents' tokens from (for processes too)."""
    return {f"SHOULI_AGENT_{agent}_TOKEN": token for agent, token in AGENT_TOKENS.items()}


@pytest.fixture
def agent_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Agents 1001 and 1002 can authenticate (the app reads the variables per request)."""
    for name, value in agent_env().items():
        monkeypatch.setenv(name, value)
    yield AGENT_TOKENS


@pytest.fixture
async def agent_api(stack: Stack, agent_tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The API as agent 1001's system calls it, on the stack in both deployments."""
    async with api_client(stack.rt, token=agent_tokens["1001"]) as client:
        yield client


@pytest.fixture
async def embedded_agent_api(
    embedded_stack: Stack, agent_tokens: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(embedded_stack.rt, token=agent_tokens["1001"]) as client:
        yield client


def random_ip() -> str:
    # Not ``random``: hypothesis seeds it per example, and one address would be rate-limited.
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def api_client(
    runtime_or_app: Runtime | ASGIApp,
    *,
    ip: str | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    base_url: str = BASE_URL,
    raise_app_exceptions: bool = True,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An HTTP client on the real app: ``create_app(runtime)``, or an app already built
    (building one loads the word segmenter's dictionary, seconds each)."""
    app = create_app(runtime_or_app) if isinstance(runtime_or_app, Runtime) else runtime_or_app
    sent = dict(headers or {})
    if token is not None:
        sent |= bearer(token)
    transport = httpx.ASGITransport(
        app=app, client=(ip or random_ip(), 40000), raise_app_exceptions=raise_app_exceptions
    )
    return httpx.AsyncClient(transport=transport, base_url=base_url, headers=sent, **kwargs)


async def post_events(
    client: httpx.AsyncClient, number: str, steps: list[tuple[str, dict[str, Any]]]
) -> None:
    """Staff events on a ticket, in order, each answered 201."""
    for kind, detail in steps:
        response = await client.post(
            f"/api/tickets/{number}/events", json={"kind": kind, "detail": detail}, headers=STAFF
        )
        assert response.status_code == 201, response.text


async def close_ticket(client: httpx.AsyncClient, number: str, result: str) -> None:
    """Handle, feedback, a satisfied callback and close: the ticket's whole way to closed."""
    await post_events(
        client,
        number,
        [
            ("handle", {"result": result}),
            ("feedback", {"channel": "phone"}),
            ("callback", {"satisfaction": "satisfied"}),
            ("close", {}),
        ],
    )


async def first_ticket(stack: Stack, client: httpx.AsyncClient, path: str, **request: Any) -> str:
    """One submission made into a ticket by the router (a reserved number alone is no ticket);
    the router is stopped again, so what follows meets the edge alone."""
    response = await client.post(path, **request)
    assert response.status_code == 201, response.text
    assert await stack.drain(stop=True) == 1
    return str(response.json()["number"])
