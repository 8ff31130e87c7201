"""Helpers for the web channel's tests (no tests here): fixtures, forms, clients, and a real
``shouli serve`` process for the tests that need a socket or a browser."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select

from channels.runtime import Runtime
from ingest.app.http import create_app
from ingest.app.settings import Settings
from store.models import IntakeNumber
from tests.stack import Stack, open_stack
from tests.support_http import BASE_URL

FIXTURES = Path(__file__).parent / "fixtures" / "web"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "web"
ZONE = ZoneInfo("Asia/Shanghai")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def local_input(value: datetime) -> str:
    """As a browser's datetime-local input sends it: local time, no offset."""
    return value.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")


def complaint_fields(**fields: str | None) -> dict[str, str]:
    data: dict[str, str | None] = {
        "name": "张三",
        "contact": "13812345678",
        "incident_at": local_input(datetime.now(UTC) - timedelta(days=1)),
        "category": "water_quality",
        "details": "光明小区5栋自来水发黄，有明显异味，已经持续三天，请尽快派人检测。",
        "idempotency_key": uuid.uuid4().hex,
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def feedback_fields(**fields: str | None) -> dict[str, str]:
    data: dict[str, str | None] = {
        "overall": "dissatisfied",
        "aspect_attitude": "very_dissatisfied",
        "aspect_efficiency": "neutral",
        "content": "营业厅窗口排队一个多小时，工作人员态度冷淡。",
        "suggestions": "高峰时段多开窗口，增加网上缴费指引。",
        "idempotency_key": uuid.uuid4().hex,
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def with_web(stack: Stack, **web: Any) -> Runtime:
    """The stack's runtime with some ``web:`` settings changed (sizes in bytes)."""
    settings: Settings = stack.settings
    changed = settings.model_copy(update={"web": settings.web.model_copy(update=web)})
    return dataclasses.replace(stack.rt, settings=changed)


@asynccontextmanager
async def shared_app(tmp_path: Path) -> AsyncIterator[tuple[Stack, FastAPI]]:
    """One embedded stack and app for a whole module (building an app loads the word
    segmenter's dictionary, seconds each): for tests that do not depend on each other."""
    async with open_stack("embedded", tmp_path) as stack:
        yield stack, create_app(stack.rt)


def shared_app_fixture(name: str, *, router: bool = False) -> Any:
    """The module's ``shared`` fixture: :func:`shared_app` for the whole module (a router
    running too, with ``router``), in the module's event loop."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def shared(
        tmp_path_factory: pytest.TempPathFactory,
    ) -> AsyncIterator[tuple[Stack, FastAPI]]:
        async with shared_app(tmp_path_factory.mktemp(name)) as (stack, app):
            if router:
                stack.start_router()
            yield stack, app

    return shared


BROWSER_HEADERS = {"Accept": "text/html,application/xhtml+xml", "Origin": BASE_URL}


async def open_form(web: httpx.AsyncClient, which: str = "complaint") -> dict[str, str]:
    """GET / as a browser does (the CSRF cookie lands in the client's jar) and return the
    hidden fields of one of the forms."""
    page = await web.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    action = {"complaint": "/api/complaints", "feedback": "/api/feedback"}[which]
    form = page.text.split(f'action="{action}', 1)[1].split("</form>", 1)[0]
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form))
    assert {"csrf_token", "idempotency_key", "lang"} <= set(hidden), hidden
    return hidden


async def reserved_numbers(stack: Stack) -> int:
    async with stack.rt.database.sessions() as session:
        return int(
            (await session.execute(select(func.count()).select_from(IntakeNumber))).scalar_one()
        )


async def nothing_filed(stack: Stack) -> bool:
    return (
        await reserved_numbers(stack) == 0
        and await stack.rt.queue.depth(stack.rt.names.drafts) == 0
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(stack: Stack, **env: str) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real ``shouli serve`` (HTTP, router and every other role) on free ports."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {"SHOULI_HTTP__PORT": str(port), "SHOULI_ORGANISATION__PUBLIC_URL": url, **env}
    if "email" in Settings.model_fields:
        # The SMTP listener's fixed default port would clash with other test processes.
        extra["SHOULI_EMAIL__SMTP__PORT"] = str(free_port())
    log = stack.tmp_path / f"serve-{port}.log"
    process = _start(stack, extra, log)
    try:
        await _wait_ready(f"{url}/readyz", process, log)
        yield url, process
    finally:
        await asyncio.to_thread(_stop, process)


def _start(stack: Stack, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            stack.shouli_command("serve"),
            env=stack.process_env() | env,
            cwd=stack.tmp_path,
            stdout=out,
            stderr=out,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                raise AssertionError("serve exited: " + text[-2000:])
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("serve never became ready")
