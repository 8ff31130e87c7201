"""Fixtures shared by the suites: a whole stack per test, in both deployment modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.stack import MODES, Stack, open_stack
from tests.support_http import agent_api, agent_tokens, embedded_agent_api

__all__ = [
    "agent_api",
    "agent_tokens",
    "distributed_stack",
    "embedded_agent_api",
    "embedded_stack",
    "stack",
]


@pytest.fixture(params=MODES)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The same test against embedded (SQLite + embedded queue) and RabbitMQ + PostgreSQL."""
    async with open_stack(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def embedded_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack("embedded", tmp_path) as opened:
        yield opened


@pytest.fixture
async def distributed_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack("distributed", tmp_path) as opened:
        yield opened
