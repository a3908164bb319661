"""TOTP second factor, recovery codes, MFA tokens; account deletion.

(How sessions authenticated, auth_time and amr, came with 0011.)

Revision ID: 0012_mfa
Revises: 0011_oidc_flows
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_mfa"
down_revision: str | None = "0011_oidc_flows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _owner(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "mfa_totp_factors",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("secret_ciphertext", sa.String(256), nullable=False),
        _when("created_at"),
        _when("confirmed_at", nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_mfa_totp_factors")),
        _owner("mfa_totp_factors"),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        _when("created_at"),
        _when("used_at", nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_mfa_recovery_codes")),
        _owner("mfa_recovery_codes"),
    )
    op.create_index(op.f("ix_mfa_recovery_codes_user_id"), "mfa_recovery_codes", ["user_id"])
    op.create_table(
        "mfa_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(1024), nullable=True),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        _when("expires_at"),
        _when("used_at", nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_mfa_tokens")),
        _owner("mfa_tokens"),
    )
    op.create_index(op.f("ix_mfa_tokens_user_id"), "mfa_tokens", ["user_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(_when("deleted_at", nullable=True))
    op.create_index(op.f("ix_users_deleted_at"), "users", ["deleted_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_users_deleted_at"), "users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's batch mode rebuilt the table, which drops its triggers: restore 0008's.
        op.execute(
            "CREATE TRIGGER revocation_generation_users AFTER UPDATE OF tokens_valid_after"
            " ON users FOR EACH ROW"
            " WHEN NEW.tokens_valid_after IS NOT OLD.tokens_valid_after"
            " BEGIN UPDATE revocation_generation SET value = value + 1 WHERE id = 1; END"
        )
    op.drop_index(op.f("ix_mfa_tokens_user_id"), "mfa_tokens")
    op.drop_table("mfa_tokens")
    op.drop_index(op.f("ix_mfa_recovery_codes_user_id"), "mfa_recovery_codes")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_totp_factors")
