"""complainants.account (户号), indexed: repeat complaints are found by account number

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

Before this, the account was only a line in the ticket body, and finding a caller's earlier
tickets by account read every ticket of the repeat window.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complainants") as batch:
        batch.add_column(
            sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch.create_index("ix_complainants_account", ["account"])


def downgrade() -> None:
    with op.batch_alter_table("complainants") as batch:
        batch.drop_index("ix_complainants_account")
        batch.drop_column("account")
