"""The web channel's table: progress links and the contact a progress inquiry must match.

One row per link handed out (the acknowledgement page of a web complaint or feedback). Only
digests are stored: ``token_sha256`` of the unguessable link token, so the table alone does
not open anyone's progress page, and ``contact_digest`` (salted) of the canonical contact
(E.164 or lower-case email), so an inquiry by number + contact can be answered before the
router has made the ticket, without another plain copy of the contact.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Integer
from sqlmodel import Field, SQLModel

# As in store.models: SQLite only auto-increments INTEGER PRIMARY KEY.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class WebProgressToken(SQLModel, table=True):
    __tablename__ = "web_progress_tokens"
    id: int | None = Field(
        default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True)
    )
    number: str = Field(max_length=32, index=True)
    token_sha256: str = Field(max_length=64, unique=True)
    contact_digest: str | None = Field(
        default=None, max_length=100, description="salt$sha256(salt|contact); None: anonymous"
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
