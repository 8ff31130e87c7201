"""Workers by name. An unknown name stops the process at start-up with the list of known ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ingest.runtime import Runtime


class Worker(Protocol):
    name: str

    async def run(self, stopping: asyncio.Event) -> None: ...


def _router(runtime: Runtime) -> Worker:
    from router.calendar import WorkCalendar
    from router.rules import Router
    from workers.router_worker import RouterWorker

    settings = runtime.settings
    return RouterWorker(
        settings=settings,
        queue=runtime.queue,
        database=runtime.database,
        router=Router(settings),
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
        metrics=runtime.metrics,
    )


def _sla(runtime: Runtime) -> Worker:
    from router.calendar import WorkCalendar
    from workers.sla import SlaWorker

    settings = runtime.settings
    return SlaWorker(
        settings=settings,
        database=runtime.database,
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
    )


def _referrals(runtime: Runtime) -> Worker:
    from workers.referrals import ReferralsWorker

    return ReferralsWorker(runtime)


def _notify(runtime: Runtime) -> Worker:
    from workers.notify import NotifyWorker

    return NotifyWorker(runtime)


def _imap(runtime: Runtime) -> Worker:
    from workers.imap import ImapWorker

    worker = ImapWorker(runtime)
    runtime.health["imap"] = worker.health
    return worker


WORKERS: dict[str, Callable[[Runtime], Worker]] = {
    "router": _router,
    "sla": _sla,
    "referrals": _referrals,
    "imap": _imap,
    "notify": _notify,
}


class UnknownWorker(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown worker {name!r}; known workers: {', '.join(sorted(WORKERS))}")


def build_worker(name: str, runtime: Runtime) -> Worker:
    factory = WORKERS.get(name)
    if factory is None:
        raise UnknownWorker(name)
    return factory(runtime)
