"""OpenID Connect: browser (SSO) sessions, pending authorization requests, authorization
codes, remembered consents, and the code-flow columns of sessions.

Revision ID: oidc_browser_sessions
Revises: svcgrant_client_model (merged from the clients-base tag)
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "oidc_browser_sessions"
down_revision: str | None = "svcgrant_client_model"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user(table: str) -> list[Any]:
    return [
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("browser_session_id", sa.String(32), nullable=True))
        batch.add_column(_when("auth_time", nullable=True))
        batch.add_column(sa.Column("amr", sa.String(64), nullable=True))
        batch.add_column(sa.Column("acr", sa.String(64), nullable=True))
    op.create_index(op.f("ix_sessions_browser_session_id"), "sessions", ["browser_session_id"])
    op.create_table(
        "browser_sessions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        *_user("browser_sessions"),
        _when("auth_time"),
        sa.Column("amr", sa.String(64), nullable=False),
        sa.Column("acr", sa.String(64), nullable=True),
        _when("created_at"),
        _when("expires_at"),
        _when("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_browser_sessions_token_hash")),
    )
    op.create_index(op.f("ix_browser_sessions_user_id"), "browser_sessions", ["user_id"])
    op.create_table(
        "authorization_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_requests")),
    )
    op.create_index(
        op.f("ix_authorization_requests_expires_at"), "authorization_requests", ["expires_at"]
    )
    op.create_table(
        "authorization_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        *_user("authorization_codes"),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        sa.Column("user_scopes", sa.String(1024), nullable=False),
        sa.Column("browser_session_id", sa.String(32), nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        _when("auth_time"),
        sa.Column("amr", sa.String(64), nullable=False),
        sa.Column("acr", sa.String(64), nullable=True),
        _when("created_at"),
        _when("expires_at"),
        _when("used_at", nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_authorization_codes")),
    )
    op.create_index(op.f("ix_authorization_codes_user_id"), "authorization_codes", ["user_id"])
    op.create_index(
        op.f("ix_authorization_codes_expires_at"), "authorization_codes", ["expires_at"]
    )
    op.create_table(
        "consents",
        *_user("consents"),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("scopes", sa.String(1024), nullable=False),
        _when("granted_at"),
        sa.PrimaryKeyConstraint("user_id", "client_id", name=op.f("pk_consents")),
    )


def downgrade() -> None:
    op.drop_table("consents")
    op.drop_table("authorization_codes")
    op.drop_table("authorization_requests")
    op.drop_table("browser_sessions")
    op.drop_index(op.f("ix_sessions_browser_session_id"), table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("acr")
        batch.drop_column("amr")
        batch.drop_column("auth_time")
        batch.drop_column("browser_session_id")
