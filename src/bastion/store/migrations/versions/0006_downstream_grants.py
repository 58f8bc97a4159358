"""per-user downstream OAuth: people's sealed grants at origins, approved clients, connections in flight

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _owned() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(length=32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("origin_id", sa.String(length=32), sa.ForeignKey("origins.id", ondelete="CASCADE"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "downstream_grants",
        sa.Column("id", sa.String(length=32), primary_key=True),
        *_owned(),
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("resource", sa.String(length=2048), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "origin_id", "issuer", "resource"),
    )
    op.create_index("ix_downstream_grants_tenant_id", "downstream_grants", ["tenant_id"])
    op.create_index("ix_downstream_grants_user_id", "downstream_grants", ["user_id"])
    op.create_index("ix_downstream_grants_origin_id", "downstream_grants", ["origin_id"])
    op.create_table(
        "downstream_client_approvals",
        sa.Column("id", sa.String(length=32), primary_key=True),
        *_owned(),
        sa.Column("client_key", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "origin_id", "client_key"),
    )
    op.create_index("ix_downstream_client_approvals_tenant_id", "downstream_client_approvals", ["tenant_id"])
    op.create_index("ix_downstream_client_approvals_user_id", "downstream_client_approvals", ["user_id"])
    op.create_table(
        "downstream_connects",
        sa.Column("state_hash", sa.String(length=64), primary_key=True),
        *_owned(),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_verifier", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_downstream_connects_tenant_id", "downstream_connects", ["tenant_id"])
    op.create_index("ix_downstream_connects_expires_at", "downstream_connects", ["expires_at"])


def downgrade() -> None:
    op.drop_table("downstream_connects")
    op.drop_table("downstream_client_approvals")
    op.drop_table("downstream_grants")
