"""service clients: a permission limit, when someone else set one up for its owner

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Clients made before name none: their owner's roles decide alone, as they did.
    with op.batch_alter_table("oauth_clients") as batch_op:
        batch_op.add_column(sa.Column("permissions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch_op:
        batch_op.drop_column("permissions")
