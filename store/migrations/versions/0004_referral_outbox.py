"""referral orders, updates, reply outbox and signature replay guard

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24

A branch beside 0003: ``store.migrate`` upgrades to all heads, so both apply.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def _str(name: str, length: int | None, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "referral_orders",
        _id(),
        _str("source", 100),
        _str("reference", 200),
        _str("source_key", 500),
        _str("request_type", 32, nullable=True),
        _str("handling_unit", 200, nullable=True),
        _utc("dispatched_at", nullable=True),
        _utc("sign_for_due", nullable=True),
        _utc("contact_due", nullable=True),
        _utc("complete_due", nullable=True),
        sa.Column("confidential", sa.Boolean(), nullable=False),
        _utc("received_at"),
        _utc("registered_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "reference", name="uq_referral_orders_source_reference"),
    )
    with op.batch_alter_table("referral_orders", schema=None) as batch_op:
        batch_op.create_index("ix_referral_orders_registered_at", ["registered_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_referral_orders_source_key"), ["source_key"], unique=False
        )

    op.create_table(
        "referral_updates",
        _id(),
        _str("source", 100),
        _str("reference", 200),
        _str("update_key", 300),
        _str("kind", 32),
        _str("number", 32),
        sa.Column("detail", sa.JSON(), nullable=False),
        _str("raw_sha256", 64, nullable=True),
        _utc("received_at"),
        _utc("applied_at", nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "update_key", name="uq_referral_updates_source_key"),
    )
    with op.batch_alter_table("referral_updates", schema=None) as batch_op:
        batch_op.create_index("ix_referral_updates_pending", ["applied_at"], unique=False)

    op.create_table(
        "referral_outbox",
        _id(),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        _str("number", 32),
        _str("source", 100),
        _str("kind", 16),
        sa.Column("trigger_event_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        _str("status", 16),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _utc("next_attempt_at"),
        _str("last_error", None, nullable=True),
        _utc("created_at"),
        _utc("sent_at", nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "ticket_id", "kind", "trigger_event_id", name="uq_referral_outbox_ticket_kind_event"
        ),
    )
    with op.batch_alter_table("referral_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_referral_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_referral_outbox_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "referral_signatures",
        _id(),
        _str("source", 100),
        _str("signature", 64),
        _utc("seen_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "signature", name="uq_referral_signatures_source_signature"),
    )
    with op.batch_alter_table("referral_signatures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_referral_signatures_seen_at"), ["seen_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("referral_signatures")
    op.drop_table("referral_outbox")
    op.drop_table("referral_updates")
    op.drop_table("referral_orders")
