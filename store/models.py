"""The store's tables (SQLModel). Migrations in ``store/migrations`` create exactly these.

Times are stored as timezone-aware UTC. ``events`` is append-only: nothing updates or deletes
an event, so the audit trail of a ticket is its events in id order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _id_column() -> Any:
    return Column(_ID, primary_key=True, autoincrement=True)


def _utc(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


class Complainant(SQLModel, table=True):
    __tablename__ = "complainants"
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32, index=True)
    phone_raw: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320, index=True)
    # Indexed: repeat complaints are found by account number (户号) too.
    account: str | None = Field(default=None, max_length=64, index=True)
    anonymous: bool = False


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("channel", "source_key", name="uq_tickets_channel_source_key"),
        Index("ix_tickets_received_at", "received_at"),
        Index("ix_tickets_status_due_at", "status", "due_at"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    number: str = Field(max_length=32, unique=True)
    channel: str = Field(max_length=16)
    source_key: str = Field(max_length=500)
    received_at: datetime = _utc()
    # Indexed: repeat-complaint lookups go from a contact to its tickets.
    complainant_id: int | None = Field(default=None, foreign_key="complainants.id", index=True)
    subject: str = ""
    body: str = ""
    incident_at: datetime | None = _utc(nullable=True)
    category: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(max_length=32)
    valid: bool = True
    invalid_reason: str | None = None
    first_contact_kind: str = Field(max_length=16)
    first_contact_id: str = Field(max_length=200)
    first_contact_department: str | None = Field(default=None, max_length=64)
    department: str | None = Field(default=None, max_length=64, index=True)
    due_at: datetime | None = _utc(nullable=True)
    referral_source: str | None = Field(default=None, max_length=100)
    referral_reference: str | None = Field(default=None, max_length=200)
    referral_deadline: datetime | None = _utc(nullable=True)
    repeat_of: str | None = Field(default=None, max_length=32)
    batch: str | None = Field(default=None, max_length=64)
    raw_sha256: str | None = Field(default=None, max_length=64)
    overdue_at: datetime | None = _utc(nullable=True)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()


class Attachment(SQLModel, table=True):
    __tablename__ = "attachments"
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    filename: str = Field(max_length=500)
    content_type: str = Field(max_length=200)
    size: int
    sha256: str = Field(max_length=64)


class Event(SQLModel, table=True):
    __tablename__ = "events"
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    at: datetime = _utc()
    kind: str = Field(max_length=64)
    actor: str = Field(max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class InboundItem(SQLModel, table=True):
    """What arrived on a channel, once: the idempotency record and the replayable original."""

    __tablename__ = "inbound_items"
    __table_args__ = (
        UniqueConstraint("channel", "source_key", name="uq_inbound_channel_source_key"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    channel: str = Field(max_length=16)
    source_key: str = Field(max_length=500)
    received_at: datetime = _utc()
    raw_sha256: str | None = Field(default=None, max_length=64)
    draft: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ticket_id: int | None = Field(default=None, foreign_key="tickets.id")
    deliveries: int = 1


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letters"
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    queue: str = Field(max_length=200, index=True)
    message_id: str = Field(max_length=500)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reason: str
    attempts: int
    failed_at: datetime = _utc()
    replayed_at: datetime | None = _utc(nullable=True)


class IntakeNumber(SQLModel, table=True):
    """A number reserved when an item is accepted at the edge (HTTP answers carry it), before
    the router has made the ticket. Keyed like the ticket, so a re-sent item gets the same."""

    __tablename__ = "intake_numbers"
    __table_args__ = (
        UniqueConstraint("channel", "source_key", name="uq_intake_channel_source_key"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    channel: str = Field(max_length=16)
    source_key: str = Field(max_length=500)
    number: str = Field(max_length=32, unique=True)
    reserved_at: datetime = _utc()


class NumberCounter(SQLModel, table=True):
    """One row per numbering period (``TS202611``); incremented under the row lock."""

    __tablename__ = "number_counters"
    period: str = Field(primary_key=True, max_length=16)
    value: int = 0


class QueueMessage(SQLModel, table=True):
    """The embedded queue's messages (``store/embedded_queue.py``)."""

    __tablename__ = "queue_messages"
    __table_args__ = (Index("ix_queue_messages_ready", "queue", "available_at"),)
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    queue: str = Field(max_length=200)
    message_id: str = Field(max_length=500)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    attempt: int = 1
    deliveries: int = 0
    available_at: float = Field(description="unix time from which it may be delivered")
    lease: str | None = Field(default=None, max_length=32)
    enqueued_at: float
