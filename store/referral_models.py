"""The referral channel's tables (migration ``0004_referral_outbox``).

* ``referral_orders``: one row per work order (source, reference) as it arrived: the
  authority's clocks (sign-for, contact, completion), the confidential flag, and when the
  referrals worker saw its ticket (``registered_at``; the ticket is the referral ticket of
  the same ``source_key``).
* ``referral_updates``: every update of an order (催办, 延期, 撤单, 退单, 督办), once per
  (source, update_key): the idempotency record, and the holding place of an update whose
  ticket the router has not made yet (``applied_at`` empty).
* ``referral_outbox``: replies and sign-for confirmations going back, one row per
  (ticket, kind, trigger event), with their attempts, next attempt and final status.
* ``referral_signatures``: request signatures seen within the timestamp window (replay guard).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.outbox_states import RowStatus

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere (as store.models).
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _utc(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class OutboxStatus(RowStatus):
    CANCELLED = "cancelled"


class ReferralOrderRecord(SQLModel, table=True):
    __tablename__ = "referral_orders"
    __table_args__ = (
        UniqueConstraint("source", "reference", name="uq_referral_orders_source_reference"),
        Index("ix_referral_orders_registered_at", "registered_at"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    source: str = Field(max_length=100)
    reference: str = Field(max_length=200)
    source_key: str = Field(max_length=500, index=True, description="the ticket's source_key")
    request_type: str | None = Field(default=None, max_length=32)
    handling_unit: str | None = Field(default=None, max_length=200)
    dispatched_at: datetime | None = _utc(nullable=True)
    sign_for_due: datetime | None = _utc(nullable=True)
    contact_due: datetime | None = _utc(nullable=True)
    complete_due: datetime | None = _utc(nullable=True)
    confidential: bool = False
    received_at: datetime = _utc()
    registered_at: datetime | None = _utc(nullable=True)


class ReferralUpdateRecord(SQLModel, table=True):
    __tablename__ = "referral_updates"
    __table_args__ = (
        UniqueConstraint("source", "update_key", name="uq_referral_updates_source_key"),
        Index("ix_referral_updates_pending", "applied_at"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    source: str = Field(max_length=100)
    reference: str = Field(max_length=200)
    update_key: str = Field(max_length=300)
    kind: str = Field(max_length=32)
    number: str = Field(max_length=32)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    raw_sha256: str | None = Field(default=None, max_length=64)
    received_at: datetime = _utc()
    applied_at: datetime | None = _utc(nullable=True)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ReferralOutbox(SQLModel, table=True):
    __tablename__ = "referral_outbox"
    __table_args__ = (
        UniqueConstraint(
            "ticket_id", "kind", "trigger_event_id", name="uq_referral_outbox_ticket_kind_event"
        ),
        Index("ix_referral_outbox_due", "status", "next_attempt_at"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    number: str = Field(max_length=32)
    source: str = Field(max_length=100)
    kind: str = Field(max_length=16, description="reply or sign_for")
    trigger_event_id: int = Field(
        sa_column=Column(BigInteger(), nullable=False),
        description="the event that asked for it (handle, received)",
    )
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _utc()
    last_error: str | None = None
    created_at: datetime = _utc()
    sent_at: datetime | None = _utc(nullable=True)


class ReferralSignature(SQLModel, table=True):
    __tablename__ = "referral_signatures"
    __table_args__ = (
        UniqueConstraint("source", "signature", name="uq_referral_signatures_source_signature"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    source: str = Field(max_length=100)
    signature: str = Field(max_length=64)
    seen_at: datetime = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
