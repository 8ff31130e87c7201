"""Opening a process's runtime from the root settings: the store (migrated if configured),
the queue backend the settings name, and the queues declared."""

from __future__ import annotations

from channels.runtime import Runtime
from ingest.app.settings import Settings
from ingest.handoff import Handoff
from ingest.metrics import Metrics
from ingest.queue import QueueBackend
from ingest.queues import QueueNames
from store.blobs import BlobStore
from store.db import Database
from store.embedded_queue import EmbeddedQueue
from store.migrate import migrate


def build_queue(settings: Settings, database: Database) -> QueueBackend:
    """No broker URL: the embedded queue in the store. An amqp:// URL: RabbitMQ."""
    if settings.broker.url:
        from ingest.rabbit_queue import RabbitQueue

        return RabbitQueue(settings.broker)
    return EmbeddedQueue(database, settings.broker)


async def open_runtime(settings: Settings, *, apply_migrations: bool | None = None) -> Runtime:
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
    return Runtime(
        settings=settings,
        database=database,
        queue=queue,
        blobs=BlobStore(settings.blobs.path),
        metrics=metrics,
        names=names,
        handoff=Handoff(queue, names, metrics),
    )
