"""the audit trail's checkpoints: the last checkpoint on each chain head, the keys that signed them

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot drop these columns again without rebuilding the table.
    with op.batch_alter_table("audit_heads") as batch_op:
        batch_op.add_column(sa.Column("checkpoint_seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("checkpoint_at_us", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "audit_checkpoint_keys",
        sa.Column("kid", sa.String(length=128), primary_key=True),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("added_at_us", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoint_keys")
    with op.batch_alter_table("audit_heads") as batch_op:
        batch_op.drop_column("checkpoint_at_us")
        batch_op.drop_column("checkpoint_seq")
