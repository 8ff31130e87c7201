"""The queue hand-off every channel uses: a draft is accepted once this returns."""

from __future__ import annotations

from collections.abc import Sequence

from ingest.draft import TicketDraft
from ingest.metrics import Metrics
from ingest.queue import Outgoing, QueueBackend
from ingest.queues import QueueNames


class Handoff:
    def __init__(self, queue: QueueBackend, names: QueueNames, metrics: Metrics) -> None:
        self._queue = queue
        self._names = names
        self._metrics = metrics

    async def submit(self, draft: TicketDraft) -> None:
        """Durably queue one draft; raises ``QueueUnavailable`` (tell the sender: later)."""
        await self.submit_many([draft])

    async def submit_many(self, drafts: Sequence[TicketDraft]) -> None:
        await self._queue.publish(
            self._names.drafts,
            [
                Outgoing(body=d.to_bytes(), message_id=f"{d.channel.value}:{d.source_key}")
                for d in drafts
            ],
        )
        for draft in drafts:
            self._metrics.drafts_published.labels(channel=draft.channel.value).inc()
