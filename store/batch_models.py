"""Batches (批量投诉, migration ``0011_batches``): many complainants about one fault.

``batch_candidates`` holds every ticket whose text names a configured area, with its
category and who complained, so a batch can be recognised when enough different people
complain within the window; ``batches`` one row per batch. A ticket's ``batch`` column names
the batch it belongs to (``links.batch`` in the ticket JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer
from sqlmodel import Field, SQLModel

_ID = BigInteger().with_variant(Integer(), "sqlite")


def _utc(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class Batch(SQLModel, table=True):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_matter", "category", "area", "last_member_at"),)

    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    key: str = Field(max_length=64, unique=True)
    category: str = Field(max_length=64)
    area: str = Field(max_length=64)
    members: int = 0
    opened_at: datetime = _utc()
    last_member_at: datetime = _utc()


class BatchCandidate(SQLModel, table=True):
    __tablename__ = "batch_candidates"
    __table_args__ = (Index("ix_batch_candidates_matter", "category", "area", "at"),)

    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    ticket_id: int = Field(foreign_key="tickets.id", unique=True)
    number: str = Field(max_length=32)
    category: str = Field(max_length=64)
    area: str = Field(max_length=64)
    complainant: str = Field(max_length=400, description="who: phone, email, account or name")
    at: datetime = _utc()
    batch: str | None = Field(default=None, max_length=64)
