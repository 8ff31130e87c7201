"""IMAP polling high-water marks (UIDVALIDITY + last UID per mailbox folder)

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-25

A branch beside 0003 and 0004: ``store.migrate`` upgrades to all heads, so all apply.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "imap_state",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("mailbox", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("folder", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox", "folder", name="uq_imap_state_mailbox_folder"),
    )


def downgrade() -> None:
    op.drop_table("imap_state")
