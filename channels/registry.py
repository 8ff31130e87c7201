"""Channels by name, and what each contributes to a running process: an APIRouter for the
HTTP server, a listener of its own (SMTP), or both.

Adding a channel = one module under ``channels/`` and one line in :data:`CHANNELS`. A name
registered twice stops start-up with that name (:class:`DuplicateName`), as does asking for a
name that is not registered (:class:`UnknownName`, with the known ones).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import APIRouter

from ingest.registry import DuplicateName, Registry, UnknownName

if TYPE_CHECKING:
    from channels.runtime import Runtime

__all__ = ["CHANNELS", "Channel", "DuplicateName", "Listener", "UnknownName"]


class Listener(Protocol):
    """What the process stops a listener with (``asyncio.Server`` is one)."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


@dataclass(frozen=True)
class Channel:
    name: str
    # "module:function" for the running process, imported only when the process starts, so
    # a process imports only the channels it runs (and a worker none of them).
    http: str | None = None  # (runtime) -> APIRouter
    listener: str | None = None  # async (runtime) -> Listener, or None when switched off


CHANNELS: tuple[Channel, ...] = (
    Channel("hotline", http="channels.hotline.api:build_router"),
    Channel("referrals", http="channels.referral.routes:build_router"),
    Channel("web", http="channels.web.routes:build_router"),
    Channel("email", listener="channels.email.listener:start_listener"),
)


def channels() -> Registry[Channel]:
    # Built from CHANNELS at each start-up rather than once at import: cheap, and a duplicate
    # is reported by the process that starts, not as an import error of whoever imports this.
    return Registry("channel", ((c.name, c) for c in CHANNELS))


def _load(target: str) -> Callable[..., Any]:
    module_name, _, function_name = target.partition(":")
    function: Callable[..., Any] = getattr(import_module(module_name), function_name)
    return function


def http_routers(runtime: Runtime) -> list[APIRouter]:
    routers = []
    for name, channel in channels().items():
        if channel.http is None:
            continue
        factory: Callable[[Runtime], APIRouter] = _load(channel.http)
        router = factory(runtime)
        router.tags = router.tags or [name]
        routers.append(router)
    return routers


async def start_listeners(runtime: Runtime) -> list[Listener]:
    """Every channel's listener that is switched on, listening on the running loop."""
    started: list[Listener] = []
    try:
        for channel in channels().values():
            if channel.listener is None:
                continue
            start: Callable[[Runtime], Awaitable[Listener | None]] = _load(channel.listener)
            listener = await start(runtime)
            if listener is not None:
                started.append(listener)
    except BaseException:
        # One that cannot listen (its port taken) stops start-up: free the others' ports.
        for listener in started:
            listener.close()
        raise
    return started
