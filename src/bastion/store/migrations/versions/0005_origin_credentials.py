"""origin credentials: how Bastion authenticates to an origin, the secret sealed by the vault

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("origins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth_mode", sa.String(length=16), nullable=False, server_default="none"))
        batch_op.add_column(sa.Column("credential", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("origins", schema=None) as batch_op:
        batch_op.drop_column("credential")
        batch_op.drop_column("auth_mode")
