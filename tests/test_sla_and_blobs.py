"""The SLA worker's sweeps and the content-addressed blob store."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from router.calendar import WorkCalendar
from store.blobs import BlobStore
from store.models import Event, Ticket
from tests.stack import Stack, make_draft
from workers.sla import SlaWorker


async def test_overdue_tickets_are_marked_once_and_month_old_ones_become_major(
    stack: Stack,
) -> None:
    old = make_draft("old-1", received_at=datetime.now(UTC) - timedelta(days=40))
    fresh = make_draft("fresh-1")
    await stack.rt.handoff.submit_many([old, fresh])
    stack.start_router()
    assert await stack.wait_for_tickets(2) == 2
    await stack.stop_routers()
    settings = stack.settings
    worker = SlaWorker(
        settings=settings,
        database=stack.rt.database,
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
    )
    assert await worker.sweep() == (1, 1)
    assert await worker.sweep() == (0, 0), "a second sweep changes nothing"
    async with stack.rt.database.sessions() as session:
        tickets = {t.source_key: t for t in (await session.execute(select(Ticket))).scalars()}
        kinds = [
            (e.ticket_id, e.kind)
            for e in (await session.execute(select(Event).order_by(Event.id))).scalars()
        ]
    assert tickets["old-1"].severity == "major" and tickets["fresh-1"].severity == "general"
    assert tickets["old-1"].overdue_at is not None and tickets["fresh-1"].overdue_at is None
    assert (tickets["old-1"].id, "overdue") in kinds
    assert (tickets["old-1"].id, "severity_raised") in kinds
    assert (tickets["fresh-1"].id, "overdue") not in kinds


async def test_a_blob_is_stored_once_under_its_sha256_and_read_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = "投诉附件".encode() * 1000
    digest = await store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert await store.put(data) == digest
    assert await store.get(digest) == data
    assert store.path(digest).parent.parent.name == digest[:2]
    leftovers = [p for p in (tmp_path / "blobs").rglob(".incoming-*")]
    assert leftovers == []
