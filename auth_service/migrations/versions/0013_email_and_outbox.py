"""Email addresses on users, link tokens (verification, reset) and the mail outbox.

The canonical address is unique among verified addresses only (a partial unique index on
both backends): registering someone else's address unverified squats nothing.

Revision ID: 0013_email_and_outbox
Revises: 0012_mfa
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_email_and_outbox"
down_revision: str | None = "0012_mfa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


_USERS_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS revocation_generation_users"
    " AFTER UPDATE OF tokens_valid_after ON users FOR EACH ROW"
    " WHEN NEW.tokens_valid_after IS NOT OLD.tokens_valid_after"
    " BEGIN UPDATE revocation_generation SET value = value + 1 WHERE id = 1; END"
)


def _restore_users_trigger() -> None:
    """SQLite's batch mode rebuilds `users` (the boolean's CHECK), which drops its
    triggers: put 0008's revocation-generation trigger back."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_USERS_TRIGGER)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("email_canonical", sa.String(320), nullable=True))
        batch.add_column(
            sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(_when("email_verified_at", nullable=True))
    _restore_users_trigger()
    op.create_index(
        "uq_users_verified_email",
        "users",
        ["email_canonical"],
        unique=True,
        postgresql_where=sa.text("email_verified"),
        sqlite_where=sa.text("email_verified"),
    )
    op.create_table(
        "email_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("email_canonical", sa.String(320), nullable=True),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        _when("used_at", nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_email_tokens")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_email_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_email_tokens_user_id"), "email_tokens", ["user_id"])
    op.create_index(op.f("ix_email_tokens_expires_at"), "email_tokens", ["expires_at"])
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        _when("created_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        _when("lease_until", nullable=True),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index(op.f("ix_mail_outbox_next_attempt_at"), "mail_outbox", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mail_outbox_next_attempt_at"), table_name="mail_outbox")
    op.drop_table("mail_outbox")
    op.drop_index(op.f("ix_email_tokens_expires_at"), table_name="email_tokens")
    op.drop_index(op.f("ix_email_tokens_user_id"), table_name="email_tokens")
    op.drop_table("email_tokens")
    op.drop_index("uq_users_verified_email", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_verified_at")
        batch.drop_column("email_verified")
        batch.drop_column("email_canonical")
        batch.drop_column("email")
    _restore_users_trigger()
