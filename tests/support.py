"""Shared test helpers: where the real services and the shared corpora are, and skipping only
when allowed."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

AMQP_URL = os.environ.get("SHOULI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_URL = os.environ.get(
    "SHOULI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("SHOULI_REQUIRE_SERVICES") == "1"
# ../shared beside the checkout, wherever it was cloned; SHOULI_SHARED names it when the
# checkout is a clone elsewhere (.ci/run finds it beside the repository it was cloned from).
SHARED = Path(os.environ.get("SHOULI_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def need_service(name: str, url: str, default_port: int) -> None:
    """Skip with a reason when ``url`` is unreachable, unless CI requires every service."""
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {urlsplit(url).netloc}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and SHOULI_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(f"{message}; set SHOULI_TEST_* or start it")


def need_rabbitmq() -> str:
    need_service("RabbitMQ", AMQP_URL, 5672)
    return AMQP_URL


def need_postgres() -> str:
    need_service("PostgreSQL", DATABASE_URL, 5432)
    return DATABASE_URL


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def need_shared(path: Path) -> Path:
    """``path`` (under ``SHARED``); skip with the reason when it is missing, unless CI requires
    everything (SHOULI_REQUIRE_SERVICES=1): then a missing corpus fails the test."""
    if path.exists():
        return path
    message = f"{path} not found (../shared beside the checkout, or SHOULI_SHARED)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and SHOULI_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)
