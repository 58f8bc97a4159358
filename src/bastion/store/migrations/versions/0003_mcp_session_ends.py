"""mcp_session_ends: MCP sessions ended by DELETE, so that every replica refuses their ids

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mcp_session_ends",
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    with op.batch_alter_table("mcp_session_ends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mcp_session_ends_ended_at"), ["ended_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_mcp_session_ends_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mcp_session_ends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mcp_session_ends_expires_at"))
        batch_op.drop_index(batch_op.f("ix_mcp_session_ends_ended_at"))
    op.drop_table("mcp_session_ends")
