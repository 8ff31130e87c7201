"""Running the roles of a process: HTTP edge and workers on one event loop.

SIGINT / SIGTERM set one ``stopping`` event: the HTTP server and the channels' own listeners
(SMTP) stop accepting, each worker finishes and settles the batch in hand, then the store and
queue are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence

import structlog
import uvicorn

from channels.registry import Listener, channels, start_listeners
from ingest.access_log import AccessLog
from ingest.app.http import create_app
from ingest.app.runtime import open_runtime
from ingest.app.settings import Settings
from workers.registry import worker_factory

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals belong to the whole process (see run_roles), not to uvicorn alone.
        yield


async def run_roles(settings: Settings, *, http: bool, workers: Sequence[str]) -> int:
    # A name typed wrong or registered twice stops the process here, before it connects to
    # the store and the queue (and before a first worker is already running).
    factories = [(name, worker_factory(name)) for name in workers]
    if http:
        channels()
    runtime = await open_runtime(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    tasks: dict[asyncio.Task[None], str] = {}
    server: _Server | None = None
    listeners: list[Listener] = []
    failed = False
    try:
        for name, factory in factories:
            worker = factory(runtime, settings)
            tasks[asyncio.create_task(worker.run(stopping), name=name)] = name
        if http:
            server = _Server(
                uvicorn.Config(
                    AccessLog(create_app(runtime)),
                    host=settings.http.host,
                    port=settings.http.port,
                    # Our logging (ingest/logs.py) handles uvicorn's loggers; AccessLog
                    # replaces uvicorn's access line, which has the raw query and client.
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
            tasks[asyncio.create_task(server.serve(), name="http")] = "http"
            listeners = await start_listeners(runtime)
        log.info(
            "shouli_started",
            roles=(["http"] if http else []) + list(workers),
            queue="rabbitmq" if settings.broker.url else "embedded",
            store="sqlite" if settings.database.is_sqlite else "postgresql",
        )
        stop_wait = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            # Roles run until the process stops: one that raised, or ended before the stop
            # was asked for, is a fault. (On a signal a role may finish in the same instant.)
            if task in done and (task.exception() is not None or stop_wait not in done):
                failed = True
                log.error("role_ended", role=tasks[task], error=repr(task.exception()))
        stopping.set()
        stop_wait.cancel()
        if server is not None:
            server.should_exit = True
        for listener in listeners:
            # No new sessions; a DATA in progress finishes its hand-off before the loop ends.
            listener.close()
        log.info("shouli_stopping")
        _, pending = await asyncio.wait(tasks, timeout=settings.worker.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for listener in listeners:
            await listener.wait_closed()
        await runtime.close()
        log.info("shouli_stopped")
    return 1 if failed else 0
