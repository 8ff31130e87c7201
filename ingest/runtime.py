"""App wiring: everything a process needs, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.embedded_queue import EmbeddedQueue
from ingest.handoff import Handoff
from ingest.metrics import Metrics
from ingest.queue import QueueBackend
from ingest.queues import QueueNames
from ingest.settings import Settings
from store.blobs import BlobStore
from store.db import Database
from store.migrate import migrate


def build_queue(settings: Settings, database: Database) -> QueueBackend:
    """No broker URL: the embedded queue in the store. An amqp:// URL: RabbitMQ."""
    if settings.broker.url:
        from ingest.rabbit_queue import RabbitQueue

        return RabbitQueue(settings.broker)
    return EmbeddedQueue(database, settings.broker)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    queue: QueueBackend
    blobs: BlobStore
    metrics: Metrics
    names: QueueNames
    handoff: Handoff
    # Components running in this process that report their own health in /readyz.
    health: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    async def open(cls, settings: Settings, *, apply_migrations: bool | None = None) -> Runtime:
        database = Database(settings.database)
        try:
            if settings.database.migrate_on_start if apply_migrations is None else apply_migrations:
                await migrate(database)
            queue = build_queue(settings, database)
            await queue.connect()
            names = QueueNames(settings.broker.prefix)
            for name in names.all():
                await queue.declare(name)
        except BaseException:
            await database.close()
            raise
        metrics = Metrics()
        return cls(
            settings=settings,
            database=database,
            queue=queue,
            blobs=BlobStore(settings.blobs.path),
            metrics=metrics,
            names=names,
            handoff=Handoff(queue, names, metrics),
        )

    async def close(self) -> None:
        await self.queue.close()
        await self.database.close()
