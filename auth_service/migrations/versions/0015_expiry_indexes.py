"""Indexes the hourly purge of expired rows walks: without them each batch would scan the
whole table. Only columns never updated on a hot path (a refresh touches
`sessions.idle_expires_at`, so that one stays unindexed and PostgreSQL's updates stay HOT).

Revision ID: 0015_expiry_indexes
Revises: 0014_code_email
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_expiry_indexes"
down_revision: str | None = "0014_code_email"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("sessions", "absolute_expires_at"),
    ("browser_sessions", "expires_at"),
    ("mfa_tokens", "expires_at"),
)


def upgrade() -> None:
    for table, column in _INDEXES:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade() -> None:
    for table, column in reversed(_INDEXES):
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
