"""The embedded queue on a fresh SQLite store, for the queue contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ingest.queue import BrokerSettings
from store.db import Database
from store.embedded_queue import EmbeddedQueue
from store.migrate import migrate
from store.settings import DatabaseSettings


@asynccontextmanager
async def embedded_queue(
    tmp_path: Path, settings: BrokerSettings | None = None
) -> AsyncIterator[EmbeddedQueue]:
    """A connected EmbeddedQueue; the same ``tmp_path`` reopens the same durable queue."""
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/queue.db"))
    await migrate(database)
    queue = EmbeddedQueue(database, settings or BrokerSettings(visibility_timeout=1.0))
    await queue.connect()
    try:
        yield queue
    finally:
        await queue.close()
        await database.close()
