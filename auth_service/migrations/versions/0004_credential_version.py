"""A per-user credential version: bumped by a password change and by a disable.

Sessions open only while the version read at authentication time is still current, and
access tokens carry it, so a disable's cut-off is exact rather than a whole second.

Revision ID: 0004_credential_version
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_credential_version"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("credential_version", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("users") as batch:
        batch.alter_column("credential_version", server_default=None)
    # Users disabled before this revision: their tokens (which carry no version, read as 0)
    # stay dead when the denylist is rebuilt from SQL.
    op.execute("UPDATE users SET credential_version = 1 WHERE tokens_valid_after IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("credential_version")
