"""Queueing work orders (synchronous Core, inside ``Database.write``): one ``work_order`` row
per dispatch event to a department with a ``webhook`` (``work_order:<event id>``: once
however often it is swept). Whether the complainant asked for confidentiality is decided
here, once: the order then never carries the person."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, String, cast, literal, select
from sqlmodel import col

from channels.email.notices import DISPATCH_EVENTS
from router.settings import Department
from store.models import Event, Ticket
from store.notification_models import Notification, NotificationKind
from store.notification_outbox import NOTIFICATIONS
from store.outbox import enqueue, new_events, newest_event_id
from store.tickets import confidential_sources, event_time


def queue_work_orders(
    conn: Connection, departments: Sequence[Department], after_event_id: int, now: datetime
) -> tuple[int, int]:
    """Returns (rows queued, newest event id seen) for the next sweep's ``after_event_id``."""
    newest = newest_event_id(conn)
    hooked = {d.key for d in departments if d.webhook is not None}
    if not hooked:
        return 0, newest
    queued = (
        select(col(Notification.id))
        .where(col(Notification.dedupe_key) == literal("work_order:") + cast(col(Event.id), String))
        .exists()
    )
    found = conn.execute(
        new_events(DISPATCH_EVENTS, after_event_id, newest, col(Ticket.source_key)).where(~queued)
    ).all()
    confidential = confidential_sources(conn, [e.source_key for e in found])
    rows = []
    for event in found:
        key = (event.detail or {}).get("department")
        if not isinstance(key, str) or key not in hooked:
            continue
        rows.append(
            {
                "kind": NotificationKind.WORK_ORDER,
                "dedupe_key": f"work_order:{event.event_id}",
                "ticket_id": event.ticket_id,
                "number": event.number,
                "recipient": key,  # the department: its webhook is read when sending
                "message_id": f"<work_order.{uuid.uuid4().hex}@shouli>",
                "detail": {
                    "event_id": event.event_id,
                    "department": key,
                    "dispatched_at": event_time(event.at),
                    "confidential": event.source_key in confidential,
                },
            }
        )
    return enqueue(conn, NOTIFICATIONS, rows, now), newest
