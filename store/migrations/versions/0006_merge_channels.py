"""merge the web, referral and IMAP branches

The three channels were built side by side, each adding its tables on a branch off 0002.
This revision joins them so the schema has one head again; it changes nothing itself.

Revision ID: 0006
Revises: 0003, 0004, 0005
Create Date: 2026-11-23
"""

revision = "0006"
down_revision = ("0003", "0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
