"""IMAP polling state (migration ``0005_imap_state``): one high-water mark per mailbox folder.

``last_uid`` is the highest UID below which every message of ``folder`` (as numbered under
``uidvalidity``) has been handed off and marked processed or failed on the server. A new
UIDVALIDITY (RFC 3501 section 2.3.1.1: the folder was recreated or renumbered) invalidates
it, and the poller starts again from UID 1; the idempotency key keeps that harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, Integer, UniqueConstraint, select
from sqlmodel import Field, SQLModel, col

from store.db import Database

_ID = BigInteger().with_variant(Integer(), "sqlite")


class ImapStateRecord(SQLModel, table=True):
    __tablename__ = "imap_state"
    __table_args__ = (UniqueConstraint("mailbox", "folder", name="uq_imap_state_mailbox_folder"),)
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    mailbox: str = Field(max_length=64, description="email.imap[].name")
    folder: str = Field(max_length=500)
    uidvalidity: int = Field(sa_column=Column(BigInteger(), nullable=False))
    last_uid: int = Field(sa_column=Column(BigInteger(), nullable=False))
    updated_at: datetime = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


@dataclass(frozen=True)
class HighWaterMark:
    uidvalidity: int
    last_uid: int


class ImapStateRepository:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def load(self, mailbox: str, folder: str) -> HighWaterMark | None:
        async with self._database.sessions() as session:
            row = (
                await session.execute(
                    select(ImapStateRecord).where(
                        col(ImapStateRecord.mailbox) == mailbox,
                        col(ImapStateRecord.folder) == folder,
                    )
                )
            ).scalar_one_or_none()
        return None if row is None else HighWaterMark(row.uidvalidity, row.last_uid)

    async def save(self, mailbox: str, folder: str, mark: HighWaterMark) -> None:
        async with self._database.transaction() as session:
            row = (
                await session.execute(
                    select(ImapStateRecord).where(
                        col(ImapStateRecord.mailbox) == mailbox,
                        col(ImapStateRecord.folder) == folder,
                    )
                )
            ).scalar_one_or_none()
            now = datetime.now(UTC)
            if row is None:
                session.add(
                    ImapStateRecord(
                        mailbox=mailbox,
                        folder=folder,
                        uidvalidity=mark.uidvalidity,
                        last_uid=mark.last_uid,
                        updated_at=now,
                    )
                )
            else:
                row.uidvalidity = mark.uidvalidity
                row.last_uid = mark.last_uid
                row.updated_at = now
