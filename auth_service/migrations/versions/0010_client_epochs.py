"""client_credentials tokens carry the client's token epoch as `sid`; revoking an epoch
(disable, secret rotation, removal) kills them all at once.

Revision ID: 0010_client_epochs
Revises: 0009_client_model
Create Date: 2026-12-02

Each existing client gets a random epoch of its own.
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_client_epochs"
down_revision: str | None = "0009_client_model"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGER = "revocation_generation_client_epochs"


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.add_column(sa.Column("token_epoch", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    clients = sa.table("oauth_clients", sa.column("client_id"), sa.column("token_epoch"))
    connection = op.get_bind()
    for (client_id,) in connection.execute(sa.select(clients.c.client_id)).all():
        connection.execute(
            clients.update()
            .where(clients.c.client_id == client_id)
            .values(token_epoch=secrets.token_urlsafe(16))
        )
    with op.batch_alter_table("oauth_clients") as batch:
        batch.alter_column("token_epoch", server_default=None)
    op.create_table(
        "revoked_client_epochs",
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("epoch", name=op.f("pk_revoked_client_epochs")),
    )
    op.create_index(
        op.f("ix_revoked_client_epochs_revoked_at"), "revoked_client_epochs", ["revoked_at"]
    )
    # A revoked epoch is a revocation: it bumps the generation like the others (0008).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {_TRIGGER} AFTER INSERT ON revoked_client_epochs FOR EACH ROW"
            " EXECUTE FUNCTION bump_revocation_generation()"
        )
    else:
        op.execute(
            "CREATE TRIGGER revocation_generation_client_epochs AFTER INSERT"
            " ON revoked_client_epochs FOR EACH ROW"
            " BEGIN UPDATE revocation_generation SET value = value + 1 WHERE id = 1; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {_TRIGGER} ON revoked_client_epochs")
    else:
        op.execute(f"DROP TRIGGER {_TRIGGER}")
    op.drop_index(op.f("ix_revoked_client_epochs_revoked_at"), "revoked_client_epochs")
    op.drop_table("revoked_client_epochs")
    with op.batch_alter_table("oauth_clients") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("token_epoch")
