"""assertions presented once (ID-JAGs, JWT subject tokens): remembered in the store, not per process

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_used_assertions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_oauth_used_assertions_expires_at", "oauth_used_assertions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_oauth_used_assertions_expires_at", table_name="oauth_used_assertions")
    op.drop_table("oauth_used_assertions")
