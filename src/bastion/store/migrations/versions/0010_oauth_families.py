"""OAuth token families as rows: rotation and revocation of one grant are serialized on them

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_families",
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("family_id"),
    )
    # Every grant issued before, revoked where a refresh token of it was (a refresh token is revoked
    # with its whole family: a replay, RFC 7009, a withdrawn consent); the others live.
    op.execute(
        sa.text(
            "INSERT INTO oauth_families (family_id) "
            "SELECT family_id FROM oauth_tokens UNION SELECT family_id FROM oauth_codes"
        )
    )
    op.execute(
        sa.text(
            "UPDATE oauth_families SET revoked_at = (SELECT MAX(t.revoked_at) FROM oauth_tokens t "
            "WHERE t.family_id = oauth_families.family_id AND t.kind = 'refresh') "
            "WHERE family_id IN (SELECT family_id FROM oauth_tokens WHERE kind = 'refresh' AND revoked_at IS NOT NULL)"
        )
    )


def downgrade() -> None:
    op.drop_table("oauth_families")
