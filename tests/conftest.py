"""Fixtures shared by the suites: a whole stack per test, in both deployment modes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

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


@pytest.fixture(autouse=True, scope="session")
def _loggers_never_cached() -> Iterator[None]:
    """A test that runs a command in-process (``check-config`` through click's runner) calls
    ``configure_logging``, whose loggers are cached on first use (a production speed-up): a
    later test's ``capture_logs`` would then miss every logger first used in between. In the
    tests nothing is cached, so every test can see the lines it asserts on."""
    configure = structlog.configure

    def uncached(*args: Any, **kwargs: Any) -> None:
        configure(*args, **{**kwargs, "cache_logger_on_first_use": False})

    structlog.configure = uncached  # type: ignore[assignment]
    yield
    structlog.configure = configure


@pytest.fixture(autouse=True)
def _structlog_defaults_after_each_test() -> Iterator[None]:
    """``configure_logging`` in one test (an in-process command) is not another test's."""
    yield
    structlog.reset_defaults()


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
