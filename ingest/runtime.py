"""App wiring: everything a process needs, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ingest.embedded_queue import EmbeddedQueue
from ingest.handoff import Handoff
from ingest.metrics import Metrics
from ingest.queue import QueueBackend
from ingest.queues import QueueNames
from ingest.settings import Settings
from store.blobs import BlobStore
from store.db import Database
from store.migrate import migrate

if TYPE_CHECKING:
    from router.segment import Segmenter


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

    @cached_property
    def segmenter(self) -> Segmenter:
        """The process's one word segmenter, for the routing rules and the repeat rule: the
        router worker, and the hotline and web edges' repeat finders, are all given this one.

        Built on first use, not in :meth:`open`: loading jieba's dictionary takes about a
        second and tens of MB, which a process that never segments (sla, notify, the CLI)
        should not pay; for the same reason jieba is imported only here.
        """
        from router.rules import segmenter_for

        return segmenter_for(self.settings)

    async def close(self) -> None:
        await self.queue.close()
        await self.database.close()
