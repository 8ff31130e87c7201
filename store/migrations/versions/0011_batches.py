"""batches and batch_candidates: batch complaints (批量投诉)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STR = sqlmodel.sql.sqltypes.AutoString
_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", _STR(length=64), nullable=False),
        sa.Column("category", _STR(length=64), nullable=False),
        sa.Column("area", _STR(length=64), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("opened_at", _UTC, nullable=False),
        sa.Column("last_member_at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_batches_matter", "batches", ["category", "area", "last_member_at"])
    op.create_table(
        "batch_candidates",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("number", _STR(length=32), nullable=False),
        sa.Column("category", _STR(length=64), nullable=False),
        sa.Column("area", _STR(length=64), nullable=False),
        sa.Column("complainant", _STR(length=400), nullable=False),
        sa.Column("at", _UTC, nullable=False),
        sa.Column("batch", _STR(length=64), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id"),
    )
    op.create_index("ix_batch_candidates_matter", "batch_candidates", ["category", "area", "at"])


def downgrade() -> None:
    op.drop_table("batch_candidates")
    op.drop_table("batches")
