"""governance: tenants, teams, custom roles, connector approval, visibility, scoped API tokens

Everything that exists before this revision belongs to the default tenant, and
origins registered before it count as approved (there was no approval step).
Local users without roles become members, which is what they could do before:
access is now denied unless a role grants it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_DEFAULT = "default"
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _tenant_fk(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(
        "tenant_id",
        sa.String(length=32),
        sa.ForeignKey("tenants.id", name=f"fk_{name}_tenant", ondelete="CASCADE"),
        nullable=nullable,
        server_default=None if nullable else _DEFAULT,
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.execute(
        sa.text(
            "INSERT INTO tenants (id, slug, name, created_at) VALUES ('default', 'default', 'Default', CURRENT_TIMESTAMP)"
        )
    )
    op.create_table(
        "teams",
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_index("ix_teams_tenant_id", "teams", ["tenant_id"])
    op.create_table(
        "roles",
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_index("ix_roles_tenant_id", "roles", ["tenant_id"])

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(_tenant_fk("users"))
        batch_op.create_index("ix_users_tenant_id", ["tenant_id"])
    op.execute(
        sa.text(
            "UPDATE users SET roles = '[\"member\"]' "
            "WHERE is_admin = false AND provider IS NULL AND CAST(roles AS TEXT) = '[]'"
        )
    )
    op.create_table(
        "team_members",
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("team_id", sa.String(length=32), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(length=32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "user_id"),
    )
    op.create_index("ix_team_members_tenant_id", "team_members", ["tenant_id"])

    # 0001 left the unique constraint on origins.name unnamed: PostgreSQL calls it origins_name_key;
    # on SQLite a naming convention lets the batch copy find it (Alembic, "Dropping Unnamed ... Constraints").
    sqlite = op.get_bind().dialect.name == "sqlite"
    old_unique = "uq_origins_name" if sqlite else "origins_name_key"
    with op.batch_alter_table("origins", schema=None, naming_convention=_NAMING if sqlite else None) as batch_op:
        batch_op.add_column(_tenant_fk("origins"))
        batch_op.add_column(
            sa.Column(
                "owner_user_id",
                sa.String(length=32),
                sa.ForeignKey("users.id", name="fk_origins_owner", ondelete="SET NULL"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("visibility", sa.String(length=8), nullable=False, server_default="tenant"))
        batch_op.add_column(sa.Column("team_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="approved"))
        batch_op.add_column(sa.Column("reviewed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("review_note", sa.String(length=500), nullable=False, server_default=""))
        batch_op.drop_constraint(old_unique, type_="unique")
        batch_op.create_unique_constraint("uq_origins_tenant_id_name", ["tenant_id", "name"])
        batch_op.create_index("ix_origins_tenant_id", ["tenant_id"])

    with op.batch_alter_table("virtual_servers", schema=None) as batch_op:
        batch_op.add_column(_tenant_fk("virtual_servers"))
        batch_op.add_column(
            sa.Column(
                "owner_user_id",
                sa.String(length=32),
                sa.ForeignKey("users.id", name="fk_virtual_servers_owner", ondelete="SET NULL"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("visibility", sa.String(length=8), nullable=False, server_default="tenant"))
        batch_op.add_column(sa.Column("team_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.create_index("ix_virtual_servers_tenant_id", ["tenant_id"])

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(_tenant_fk("api_tokens"))
        batch_op.add_column(sa.Column("permissions", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("allowed_cidrs", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("max_uses", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("uses", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_api_tokens_tenant_id", ["tenant_id"])
    op.create_table(
        "api_token_uses",
        sa.Column("tenant_id", sa.String(length=32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_id", sa.String(length=32), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("block_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_token_uses_tenant_id", "api_token_uses", ["tenant_id"])
    op.create_index("ix_api_token_uses_token_id", "api_token_uses", ["token_id"])
    op.create_index("ix_api_token_uses_at", "api_token_uses", ["at"])

    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(_tenant_fk("oauth_clients", nullable=True))
        batch_op.create_index("ix_oauth_clients_tenant_id", ["tenant_id"])
    op.execute(sa.text("UPDATE oauth_clients SET tenant_id = 'default' WHERE kind = 'service'"))
    with op.batch_alter_table("login_events", schema=None) as batch_op:
        batch_op.add_column(_tenant_fk("login_events", nullable=True))
        batch_op.create_index("ix_login_events_tenant_id", ["tenant_id"])
    op.execute(sa.text("UPDATE login_events SET tenant_id = 'default' WHERE user_id IS NOT NULL"))


def downgrade() -> None:
    with op.batch_alter_table("login_events", schema=None) as batch_op:
        batch_op.drop_index("ix_login_events_tenant_id")
        batch_op.drop_constraint("fk_login_events_tenant", type_="foreignkey")
        batch_op.drop_column("tenant_id")
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_index("ix_oauth_clients_tenant_id")
        batch_op.drop_constraint("fk_oauth_clients_tenant", type_="foreignkey")
        batch_op.drop_column("tenant_id")
    op.drop_table("api_token_uses")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_api_tokens_tenant_id")
        batch_op.drop_constraint("fk_api_tokens_tenant", type_="foreignkey")
        for column in ("uses", "max_uses", "not_before", "allowed_cidrs", "permissions", "tenant_id"):
            batch_op.drop_column(column)
    with op.batch_alter_table("virtual_servers", schema=None) as batch_op:
        batch_op.drop_index("ix_virtual_servers_tenant_id")
        batch_op.drop_constraint("fk_virtual_servers_tenant", type_="foreignkey")
        batch_op.drop_constraint("fk_virtual_servers_owner", type_="foreignkey")
        for column in ("team_ids", "visibility", "owner_user_id", "tenant_id"):
            batch_op.drop_column(column)
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("origins", schema=None) as batch_op:
        batch_op.drop_index("ix_origins_tenant_id")
        batch_op.drop_constraint("uq_origins_tenant_id_name", type_="unique")
        batch_op.create_unique_constraint("uq_origins_name" if sqlite else "origins_name_key", ["name"])
        batch_op.drop_constraint("fk_origins_tenant", type_="foreignkey")
        batch_op.drop_constraint("fk_origins_owner", type_="foreignkey")
        for column in (
            "review_note",
            "reviewed_at",
            "reviewed_by",
            "status",
            "team_ids",
            "visibility",
            "owner_user_id",
            "tenant_id",
        ):
            batch_op.drop_column(column)
    op.drop_table("team_members")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_tenant_id")
        batch_op.drop_constraint("fk_users_tenant", type_="foreignkey")
        batch_op.drop_column("tenant_id")
    op.drop_table("roles")
    op.drop_table("teams")
    op.drop_table("tenants")
