"""The notification outbox (migration ``0008_notifications``): mail and SMS we owe someone.

One row per message we must send: the acknowledgement of a new ticket to its complainant
(受理回执) by mail and by SMS, an urge (催办) notice to a department, a result by SMS. Rows are
written in the same transaction as the ticket or event that calls for them (a transactional
outbox: no notice without its ticket, no ticket without its notice), and the ``notify``
worker sends them with retries.

``dedupe_key`` is unique: one acknowledgement per ticket, one notice per urge event, however
often the router replays a batch. ``message_id`` is fixed when the row is written, so every
attempt sends the same Message-ID (a resend after a crash is recognisable as the same mail)
and a reply or a bounce can be traced back to the ticket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer
from sqlmodel import Field, SQLModel

from store.outbox_states import RowStatus

_ID = BigInteger().with_variant(Integer(), "sqlite")


def _utc(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class NotificationKind:
    ACKNOWLEDGEMENT = "ack"
    URGE = "urge"
    SMS_ACKNOWLEDGEMENT = "sms_ack"
    SMS_RESULT = "sms_result"
    DISPATCH = "dispatch"  # 派单通知: a ticket was dispatched (or transferred) to a department
    CLOCK = "clock"  # a clock (时限) is due soon or breached
    BATCH = "batch"  # 批量投诉: a batch was opened; the coordinating office is told once
    RESULT = "result"  # 反馈 by mail: the handling result to the complainant

    WORK_ORDER = "work_order"  # a dispatch POSTed to the department's own work-order system

    MAIL = ("ack", "urge", "dispatch", "clock", "batch", "result")
    SMS = ("sms_ack", "sms_result")
    WEBHOOK = ("work_order",)


class NotificationStatus(RowStatus):
    SKIPPED = "skipped"  # nothing to send to (no outbound server is not this: that waits)


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)

    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    kind: str = Field(max_length=32)
    dedupe_key: str = Field(max_length=300, unique=True)
    ticket_id: int | None = Field(default=None, foreign_key="tickets.id", index=True)
    number: str | None = Field(default=None, max_length=32)
    recipient: str = Field(max_length=320)
    message_id: str = Field(max_length=500, unique=True, description="<...@domain>, fixed")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=NotificationStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _utc()
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = _utc()
    sent_at: datetime | None = _utc(nullable=True)
    bounced_at: datetime | None = _utc(nullable=True)
