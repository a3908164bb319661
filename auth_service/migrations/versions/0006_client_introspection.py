"""Which clients may call /introspect: a per-client permission instead of "any confidential".

Revision ID: 0006_client_introspection
Revises: 0005_username_skeleton
Create Date: 2026-12-02

Clients registered before this revision were allowed to introspect because they were
confidential; they keep that permission (resource servers keep working after the
upgrade). Clients added from now on get it only with `clients add --introspection`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_client_introspection"
down_revision: str | None = "0005_username_skeleton"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.add_column(
            sa.Column("introspection", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    clients = sa.table(
        "oauth_clients", sa.column("confidential", sa.Boolean), sa.column("introspection")
    )
    op.execute(clients.update().where(clients.c.confidential).values(introspection=True))
    with op.batch_alter_table("oauth_clients") as batch:
        batch.alter_column("introspection", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.drop_column("introspection")
