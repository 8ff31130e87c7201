"""Workers by name. An unknown name stops the process at start-up with the list of known ones,
and so does a name registered twice (the second would silently replace the first)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from channels.runtime import Runtime
from ingest.registry import DuplicateName, Registry, UnknownName
from workers.settings import WorkersSettings

__all__ = ["REGISTERED", "WORKERS", "DuplicateName", "UnknownWorker", "Worker", "build_worker"]


class Worker(Protocol):
    name: str

    async def run(self, stopping: asyncio.Event) -> None: ...


def _router(runtime: Runtime, settings: WorkersSettings) -> Worker:
    from router.calendar import WorkCalendar
    from router.rules import Router
    from workers.router_worker import RouterWorker

    return RouterWorker(
        settings=settings,
        queue=runtime.queue,
        database=runtime.database,
        router=Router(settings, runtime.segmenter),
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
        metrics=runtime.metrics,
    )


def _sla(runtime: Runtime, settings: WorkersSettings) -> Worker:
    from router.calendar import WorkCalendar
    from workers.sla import SlaWorker

    return SlaWorker(
        settings=settings,
        database=runtime.database,
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
    )


def _referrals(runtime: Runtime, settings: WorkersSettings) -> Worker:
    from workers.referrals import ReferralsWorker

    return ReferralsWorker(runtime, settings.worker)


def _notify(runtime: Runtime, settings: WorkersSettings) -> Worker:
    from workers.notify import NotifyWorker

    return NotifyWorker(runtime, settings.worker)


def _imap(runtime: Runtime, settings: WorkersSettings) -> Worker:
    from workers.imap import ImapWorker

    worker = ImapWorker(runtime)
    runtime.health["imap"] = worker.health
    return worker


# The runtime's services, and the workers' own settings tree (the runtime's settings are
# typed as what the channels read; the workers read more).
WorkerFactory = Callable[[Runtime, WorkersSettings], Worker]

REGISTERED: tuple[tuple[str, WorkerFactory], ...] = (
    ("router", _router),
    ("sla", _sla),
    ("referrals", _referrals),
    ("imap", _imap),
    ("notify", _notify),
)


class UnknownWorker(UnknownName):
    pass


def workers() -> Registry[WorkerFactory]:
    # Built from REGISTERED whenever asked, so a duplicate is refused by the process that
    # starts (ingest.app.serve asks before it opens anything).
    return Registry("worker", REGISTERED, unknown=UnknownWorker)


# For listings (``shouli serve`` runs them all, docker-compose.yml has one service each); also
# refuses a duplicate at import.
WORKERS = workers()


def worker_factory(name: str) -> WorkerFactory:
    return workers()[name]


def build_worker(name: str, runtime: Runtime, settings: WorkersSettings) -> Worker:
    return worker_factory(name)(runtime, settings)
