"""A ticket's named clocks (时限): one row per (ticket, clock name), moved by its events.

``warned_at`` and ``breached_at`` are set once each by a conditional update, so two SLA
workers racing on one clock record one warning and one breach. A paused clock keeps
``remaining_seconds`` of its own kind of time (working or elapsed) until it resumes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models import _id_column, _utc


class TicketClock(SQLModel, table=True):
    __tablename__ = "ticket_clocks"
    __table_args__ = (
        UniqueConstraint("ticket_id", "name", name="uq_ticket_clocks_ticket_name"),
        # The SLA sweeps look for running clocks by due time.
        Index("ix_ticket_clocks_running", "met_at", "due_at"),
    )
    id: int | None = Field(default=None, sa_column=_id_column())
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    name: str = Field(max_length=32)
    rule: str = Field(max_length=200, description="what set the limit, for 'why this due date'")
    time_limit: str | None = Field(default=None, max_length=64)
    hours: str = Field(max_length=64, description="'organisation' or a desk key")
    working: bool = True
    started_at: datetime = _utc()
    due_at: datetime = _utc()
    warn_at: datetime = _utc()
    met_at: datetime | None = _utc(nullable=True)
    warned_at: datetime | None = _utc(nullable=True)
    breached_at: datetime | None = _utc(nullable=True)
    paused_at: datetime | None = _utc(nullable=True)
    remaining_seconds: float | None = None
    extended: float = Field(default=0.0, description="extensions so far, in max_extension units")
    updated_at: datetime = _utc()
