"""The channel and worker registries: a duplicate or an unknown name stops start-up with the
names, before the store and the queue are opened; the SMTP listener is a registered channel,
started and closed by the process like the HTTP routers."""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import pytest

import channels.registry as channel_registry
import workers.registry as worker_registry
from channels.runtime import Runtime
from ingest.app.http import create_app
from ingest.app.serve import run_roles
from ingest.app.settings import Settings, load_settings
from tests.stack import CONFIG, Stack

MAILBOX = "complaints@water.example.cn"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(stack: Stack, **env: str) -> Settings:
    return load_settings(CONFIG, environ=stack.env | {"SHOULI_HTTP__PORT": str(_free_port())} | env)


@pytest.fixture
def nothing_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up must fail before connecting to the store and the queue."""

    async def refuse(*args: Any, **kwargs: Any) -> Runtime:
        raise AssertionError("the store and the queue were opened")

    monkeypatch.setattr("ingest.app.serve.open_runtime", refuse)


@asynccontextmanager
async def serving(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[], None]]:
    """``run_roles`` as ``shouli edge`` runs it, in this process; yields what SIGTERM would do.

    The signal handlers are captured, not installed: a real signal could reach pytest itself.
    """
    loop = asyncio.get_running_loop()
    handlers: dict[int, Callable[[], object]] = {}
    monkeypatch.setattr(
        loop, "add_signal_handler", lambda signum, cb: handlers.update({signum: cb})
    )
    monkeypatch.setattr(loop, "remove_signal_handler", lambda signum: handlers.pop(signum, None))
    task = asyncio.create_task(run_roles(settings, http=True, workers=[]))

    def stop() -> None:
        for handler in list(handlers.values()):
            handler()

    try:
        yield stop
    finally:
        stop()
        assert await asyncio.wait_for(task, 60) == 0


async def _until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


# -- duplicates and unknown names ---------------------------------------------------------------


async def test_a_duplicate_channel_name_stops_start_up_with_its_name(
    embedded_stack: Stack, monkeypatch: pytest.MonkeyPatch, nothing_opened: None
) -> None:
    web = next(c for c in channel_registry.CHANNELS if c.name == "web")
    monkeypatch.setattr(channel_registry, "CHANNELS", (*channel_registry.CHANNELS, web))
    expected = "duplicate channel name 'web'"
    with pytest.raises(channel_registry.DuplicateName, match=expected):
        create_app(embedded_stack.rt)
    with pytest.raises(channel_registry.DuplicateName, match=expected):
        await run_roles(embedded_stack.settings, http=True, workers=[])


def test_an_unknown_channel_name_lists_the_known_ones() -> None:
    with pytest.raises(channel_registry.UnknownName) as raised:
        channel_registry.channels()["fax"]
    assert str(raised.value) == (
        "unknown channel 'fax'; known channels: email, hotline, referrals, web"
    )


async def test_an_unknown_worker_stops_start_up_with_the_known_ones(nothing_opened: None) -> None:
    settings = load_settings(CONFIG, environ={})
    with pytest.raises(worker_registry.UnknownWorker) as raised:
        await run_roles(settings, http=False, workers=["router", "imap-poller"])
    assert str(raised.value) == (
        "unknown worker 'imap-poller'; known workers: imap, notify, referrals, router, sla"
    )


async def test_a_worker_registered_twice_stops_start_up_with_its_name(
    monkeypatch: pytest.MonkeyPatch, nothing_opened: None
) -> None:
    registered = worker_registry.REGISTERED
    monkeypatch.setattr(worker_registry, "REGISTERED", (*registered, registered[0]))
    name = registered[0][0]
    settings = load_settings(CONFIG, environ={})
    with pytest.raises(worker_registry.DuplicateName, match=f"duplicate worker name '{name}'"):
        await run_roles(settings, http=False, workers=["sla"])


# -- the SMTP listener as a registered channel ---------------------------------------------------


def _mail() -> bytes:
    message = EmailMessage()
    message["From"] = "Zhang San <zhangsan@example.cn>"
    message["To"] = MAILBOX
    message["Subject"] = "水费异常"
    message["Message-ID"] = "<registry-1@example.cn>"
    message.set_content("本月水费比上月高出三倍，水表读数有误，请核查。")
    return message.as_bytes()


def _send(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("sender.example.cn")
        assert client.mail("zhangsan@example.cn")[0] == 250
        assert client.rcpt(MAILBOX)[0] == 250
        return int(client.data(_mail())[0])


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_the_smtp_listener_is_the_email_channel_of_the_registry() -> None:
    email = channel_registry.channels()["email"]
    assert email.listener is not None and email.http is None


async def test_the_edge_accepts_a_mail_on_the_smtp_port_the_registry_opened(
    embedded_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    started: list[object] = []
    real = channel_registry.start_listeners

    async def spy(runtime: Runtime) -> list[channel_registry.Listener]:
        listeners = await real(runtime)
        started.extend(listeners)
        return listeners

    monkeypatch.setattr("ingest.app.serve.start_listeners", spy)
    settings = _settings(embedded_stack, SHOULI_EMAIL__SMTP__PORT=str(port))
    async with serving(settings, monkeypatch):
        await _until(lambda: bool(started) and _connects(port))
        assert await asyncio.to_thread(_send, port) == 250
    assert len(started) == 1
    rt = embedded_stack.rt
    assert await rt.queue.depth(rt.names.drafts) == 1
    assert not _connects(port), "the listener is closed when the process stops"


async def test_listeners_start_with_the_http_server_and_close_before_the_store_and_queue(
    embedded_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    class FakeListener:
        def close(self) -> None:
            events.append("closed")

        async def wait_closed(self) -> None:
            # A DATA in progress finishes its hand-off here, so the store and queue are open.
            await asyncio.sleep(0.1)
            events.append("wait_closed")

    async def start(runtime: Runtime) -> FakeListener:
        events.append("started")
        return FakeListener()

    async def start_nothing(runtime: Runtime) -> None:
        events.append("off")

    monkeypatch.setattr("tests.test_registries.start_fake", start, raising=False)
    monkeypatch.setattr("tests.test_registries.start_off", start_nothing, raising=False)
    monkeypatch.setattr(
        channel_registry,
        "CHANNELS",
        (
            *(c for c in channel_registry.CHANNELS if c.name != "email"),
            channel_registry.Channel("fake", listener="tests.test_registries:start_fake"),
            channel_registry.Channel("off", listener="tests.test_registries:start_off"),
        ),
    )
    real_close = Runtime.close

    async def close(self: Runtime) -> None:
        events.append("runtime_closed")
        await real_close(self)

    monkeypatch.setattr(Runtime, "close", close)
    async with serving(_settings(embedded_stack), monkeypatch) as stop:
        await _until(lambda: "started" in events)
        assert "closed" not in events
        stop()
        await _until(lambda: "runtime_closed" in events)
    assert events == ["started", "off", "closed", "wait_closed", "runtime_closed"]


async def test_the_smtp_listener_starts_only_when_enabled_and_with_mailboxes(
    embedded_stack: Stack,
) -> None:
    rt = embedded_stack.rt
    disabled = _settings(embedded_stack, SHOULI_EMAIL__SMTP__ENABLED="false")
    assert await channel_registry.start_listeners(dataclasses.replace(rt, settings=disabled)) == []
    enabled = _settings(embedded_stack, SHOULI_EMAIL__SMTP__PORT=str(_free_port()))
    no_mailboxes = enabled.model_copy(
        update={"email": enabled.email.model_copy(update={"mailboxes": ()})}
    )
    assert (
        await channel_registry.start_listeners(dataclasses.replace(rt, settings=no_mailboxes)) == []
    )
    (listener,) = await channel_registry.start_listeners(dataclasses.replace(rt, settings=enabled))
    listener.close()
    await listener.wait_closed()
