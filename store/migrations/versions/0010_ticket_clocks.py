"""ticket_clocks: a ticket's named clocks (accept, first contact, handle, feedback, callback,
the referring authority's deadline), each with its own start, due, met and breach

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Before this, a ticket had one due_at (the handling deadline); it still has, kept equal to
the handling clock's. Tickets made before this migration have no clock rows.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STR = sqlmodel.sql.sqltypes.AutoString
_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ticket_clocks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("name", _STR(length=32), nullable=False),
        sa.Column("rule", _STR(length=200), nullable=False),
        sa.Column("time_limit", _STR(length=64), nullable=True),
        sa.Column("hours", _STR(length=64), nullable=False),
        sa.Column("working", sa.Boolean(), nullable=False),
        sa.Column("started_at", _UTC, nullable=False),
        sa.Column("due_at", _UTC, nullable=False),
        sa.Column("warn_at", _UTC, nullable=False),
        sa.Column("met_at", _UTC, nullable=True),
        sa.Column("warned_at", _UTC, nullable=True),
        sa.Column("breached_at", _UTC, nullable=True),
        sa.Column("paused_at", _UTC, nullable=True),
        sa.Column("remaining_seconds", sa.Float(), nullable=True),
        sa.Column("extended", sa.Float(), nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "name", name="uq_ticket_clocks_ticket_name"),
    )
    op.create_index("ix_ticket_clocks_ticket_id", "ticket_clocks", ["ticket_id"])
    op.create_index("ix_ticket_clocks_running", "ticket_clocks", ["met_at", "due_at"])


def downgrade() -> None:
    op.drop_table("ticket_clocks")
