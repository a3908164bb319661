"""Registered OAuth clients and per-user scopes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("scopes", sa.String(1024), nullable=False, server_default="profile")
        )
    with op.batch_alter_table("users") as batch:
        batch.alter_column("scopes", server_default=None)
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=True),
        sa.Column("confidential", sa.Boolean(), nullable=False),
        sa.Column("grant_types", sa.String(256), nullable=False),
        sa.Column("scopes", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_oauth_clients")),
    )


def downgrade() -> None:
    op.drop_table("oauth_clients")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("scopes")
