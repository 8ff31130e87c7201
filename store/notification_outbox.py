"""The notification outbox (acknowledgements, urge notices) as the outbox engine sees it:
its table, its dead letters (``notification:<id>`` with ``notification_id``) and the events
each attempt writes on the ticket. Addresses live only in ``notifications.recipient``; its
events and dead letters never carry them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlmodel import col

from store.notification_models import Notification
from store.outbox import AttemptOutcome, Due, Entry, Outbox, Recorded, table_of
from store.outbox_states import RowStatus
from store.tickets import event_time


@dataclass(frozen=True)
class DueNotification(Due):
    recipient: str
    message_id: str  # fixed when queued: every attempt sends the same Message-ID
    detail: dict[str, Any]


def _load(common: Mapping[str, Any], row: Row[Any]) -> DueNotification:
    return DueNotification(
        **common, recipient=row.recipient, message_id=row.message_id, detail=dict(row.detail or {})
    )


def _attempted(due: DueNotification, _outcome: AttemptOutcome, done: Recorded) -> list[Entry]:
    base = {"notification": due.kind, "notification_id": due.id, "attempt": due.attempt}
    if done.status == RowStatus.SENT:
        return [("notification_sent", base | {"message_id": due.message_id})]
    if done.status == RowStatus.DEAD:
        failed = {"error": done.error, "reason": done.reason, "dead_letter_id": done.dead_letter_id}
        return [("notification_failed", base | failed)]
    retry = {"error": done.error, "next_attempt_at": event_time(done.next_attempt_at)}
    return [("notification_attempt_failed", base | retry)]


def _replayed(kind: str, row_id: int, attempts: int) -> list[Entry]:
    detail = {"notification": kind, "notification_id": row_id, "after": attempts}
    return [("notification_replayed", detail)]


NOTIFICATIONS: Outbox[DueNotification] = Outbox(
    table=table_of(Notification),
    actor="notify",
    dead_letter_prefix="notification",
    id_key="notification_id",
    refused="refused by the mail server",
    exhausted="{attempts} attempts",
    reason="{kind} notification not sent: {why}; last answer: {error}",
    load=_load,
    attempted=_attempted,
    replayed=_replayed,
)


def last_swept_event(conn: Connection, kind: str) -> int:
    """Where an event sweep that queues rows of ``kind`` starts after a restart: the event of
    the newest such row (``detail.event_id``); 0 before the first."""
    detail = conn.execute(
        select(col(Notification.detail))
        .where(col(Notification.kind) == kind)
        .order_by(col(Notification.id).desc())
        .limit(1)
    ).scalar_one_or_none()
    return int((detail or {}).get("event_id", 0))
