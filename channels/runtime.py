"""What a running process gives its edges and workers: the settings they are built from and
the services opened once for the process (store, queue, blobs, metrics, the hand-off).

Opened by the composition root (``ingest.app.runtime.open_runtime``); a component takes it by
constructor and never opens one itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from channels.settings import ChannelSettings
from ingest.handoff import Handoff
from ingest.metrics import Metrics
from ingest.queue import QueueBackend
from ingest.queues import QueueNames
from store.blobs import BlobStore
from store.db import Database

if TYPE_CHECKING:
    from router.segment import Segmenter


@dataclass
class Runtime:
    settings: ChannelSettings
    database: Database
    queue: QueueBackend
    blobs: BlobStore
    metrics: Metrics
    names: QueueNames
    handoff: Handoff
    # Components running in this process that report their own health in /readyz.
    health: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)

    @cached_property
    def segmenter(self) -> Segmenter:
        """The process's one word segmenter, for the routing rules and the repeat rule: the
        router worker, and the hotline and web edges' repeat finders, are all given this one.

        Built on first use: loading jieba's dictionary takes about a second and tens of MB,
        which a process that never segments (sla, notify, the CLI) should not pay; for the
        same reason jieba is imported only here.
        """
        from router.rules import segmenter_for

        return segmenter_for(self.settings)

    async def close(self) -> None:
        await self.queue.close()
        await self.database.close()
