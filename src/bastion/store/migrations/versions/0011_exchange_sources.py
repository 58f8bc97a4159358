"""token exchange: a family issued for a subject token names it, so revoking the source revokes it

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Families issued before name no source: their tokens live out their own (short) lives.
    with op.batch_alter_table("oauth_families") as batch_op:
        batch_op.add_column(sa.Column("source_token", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_oauth_families_source_token", ["source_token"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oauth_families") as batch_op:
        batch_op.drop_index("ix_oauth_families_source_token")
        batch_op.drop_column("source_token")
