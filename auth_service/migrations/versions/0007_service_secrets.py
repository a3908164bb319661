"""Secrets the service generates once and every replica shares.

The first is the key of the unknown-user dummy-hash draw (services/hash_population.py):
it must be the same on every replica and survive restarts, and nothing else durable and
secret is shared by all replicas but the database.

Revision ID: 0007_service_secrets
Revises: 0006_client_introspection
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_service_secrets"
down_revision: str | None = "0006_client_introspection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
