"""ids used up until they expire (single-use assertions, signed-out sessions): in the store, not per process

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
        "spent_ids",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_spent_ids_expires_at", "spent_ids", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_spent_ids_expires_at", table_name="spent_ids")
    op.drop_table("spent_ids")
