"""the policy pipeline: stored policies per scope; approved item definitions pinned, scan flags

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=600), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "scope", "stage"),
    )
    op.create_index("ix_policies_tenant_id", "policies", ["tenant_id"])
    with op.batch_alter_table("origin_items") as batch_op:
        batch_op.add_column(sa.Column("pinned_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pinned_definition", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("flags", sa.JSON(), nullable=False, server_default="[]"))
    # What was approved before pinning existed is pinned as it stands: no quarantine on upgrade.
    op.execute(
        sa.text(
            "UPDATE origin_items SET pinned_digest = digest, pinned_definition = definition "
            "WHERE origin_id IN (SELECT id FROM origins WHERE status = 'approved')"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("origin_items") as batch_op:
        batch_op.drop_column("flags")
        batch_op.drop_column("pinned_definition")
        batch_op.drop_column("pinned_digest")
    op.drop_index("ix_policies_tenant_id", table_name="policies")
    op.drop_table("policies")
