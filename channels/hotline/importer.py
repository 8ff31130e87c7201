"""``shouli import-calls``: an export streamed into the router's queue in batches.

Memory stays bounded whatever the file's size: rows are read one at a time, drafts are
published ``batch_size`` at a time with ``Handoff.submit_many``, and the call ids already
seen in this file live in a temporary SQLite file, not in memory. The router reserves the
numbers (nobody is waiting for them), applies the routing and repeat rules and is idempotent
on the call id, so importing the same file twice, or again after a crash, makes no duplicates.

A row counts as a duplicate when its call id came earlier in the same file, or is already in
the store (a ticket, a number reserved by ``POST /api/calls``, or a call merged into an open
ticket as a repeat). A call published by an earlier run that the router has not committed
yet is published again and counted as imported; the router drops the second copy.
"""

from __future__ import annotations

import asyncio
import csv
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import structlog
from sqlalchemy import select
from sqlmodel import col

from channels.hotline.records import CallContext, call_draft
from channels.hotline.rows import RowError, RowMapper
from channels.hotline.sources import CallSource
from channels.runtime import Runtime
from ingest.draft import Channel, TicketDraft
from ingest.errors import Interrupted
from ingest.queue import QueueUnavailable
from store.models import InboundItem, IntakeNumber, Ticket

log = structlog.get_logger(__name__)

PUBLISH_ATTEMPTS = 6
_CHUNK = 400  # keys per IN (...) query, under every database's bound-parameter limit


@dataclass
class ImportSummary:
    rows: int = 0
    imported: int = 0  # queued for the router
    duplicates: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ImportInterrupted(Interrupted):
    """The queue stayed unavailable; what was published so far is in ``summary``."""

    def __init__(self, summary: ImportSummary) -> None:
        super().__init__("the queue is unavailable")
        self.summary = summary


class ErrorReport:
    """CSV of rejected rows: row number, field, reason. Created at the first error only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        path.unlink(missing_ok=True)  # a stale report from an earlier run would mislead

    def add(self, error: RowError) -> None:
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=["row", "field", "reason"])
            self._writer.writeheader()
        self._writer.writerow({"row": error.row, "field": error.field, "reason": error.reason})
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class SeenKeys:
    """Call ids seen so far in this file, on disk: a million of them cost no memory."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="shouli-import-")
        self._db = sqlite3.connect(Path(self._dir.name) / "seen.db")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-8192")  # 8 MiB
        self._db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID")

    def add_new(self, keys: Sequence[str]) -> list[str]:
        """The keys not seen before, in order; all of them are seen from now on."""
        new = []
        for key in keys:
            if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (key,)).rowcount:
                new.append(key)
        return new

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


async def known_in_store(runtime: Runtime, keys: Sequence[str]) -> set[str]:
    """Which of these call ids the store already knows (ticket, reservation, merged repeat)."""
    found: set[str] = set()
    channel = Channel.PHONE.value
    async with runtime.database.sessions() as session:
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            for table in (Ticket, IntakeNumber, InboundItem):
                rows = await session.execute(
                    select(col(table.source_key)).where(
                        col(table.channel) == channel, col(table.source_key).in_(chunk)
                    )
                )
                found.update(rows.scalars())
    return found


class CallImporter:
    def __init__(
        self,
        runtime: Runtime,
        mapper: RowMapper,
        context: CallContext,
        *,
        batch_size: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._runtime = runtime
        self._mapper = mapper
        self._context = context
        self._batch_size = batch_size
        self._clock = clock
        self.summary = ImportSummary()

    async def run(
        self,
        source: CallSource,
        report: ErrorReport,
        on_progress: Callable[[int, ImportSummary], None] = lambda _pos, _summary: None,
    ) -> ImportSummary:
        summary = self.summary
        seen = SeenKeys()
        now = self._clock()
        batch: list[TicketDraft] = []
        try:
            for row in source.rows():
                summary.rows += 1
                mapped = self._mapper.map(row, now)
                if isinstance(mapped, list):
                    summary.rejected += 1
                    for error in mapped:
                        report.add(error)
                    continue
                record = mapped.record
                assert record.agent_id is not None
                batch.append(
                    call_draft(
                        record,
                        agent_id=record.agent_id,
                        department=mapped.department,
                        context=self._context,
                    )
                )
                if len(batch) >= self._batch_size:
                    await self._flush(batch, seen)
                    batch = []
                    on_progress(source.position, summary)
            await self._flush(batch, seen)
            on_progress(source.position, summary)
        finally:
            seen.close()
        log.info("calls_imported", **summary.as_dict())
        return summary

    async def _flush(self, batch: list[TicketDraft], seen: SeenKeys) -> None:
        if not batch:
            return
        unique: dict[str, TicketDraft] = {}
        for draft in batch:
            unique.setdefault(draft.source_key, draft)
        fresh = seen.add_new(list(unique))
        known = await known_in_store(self._runtime, fresh) if fresh else set()
        drafts = [unique[key] for key in fresh if key not in known]
        self.summary.duplicates += len(batch) - len(drafts)
        await self._publish(drafts)
        self.summary.imported += len(drafts)

    async def _publish(self, drafts: list[TicketDraft]) -> None:
        if not drafts:
            return
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self._runtime.handoff.submit_many(drafts)
                return
            except QueueUnavailable:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise ImportInterrupted(self.summary) from None
                log.warning("import_queue_unavailable", attempt=attempt + 1)
                await asyncio.sleep(min(2**attempt, 10))
