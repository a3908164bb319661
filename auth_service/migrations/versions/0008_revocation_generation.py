"""A revocation generation counter, bumped in the transaction of every revocation.

Triggers (not the repositories) bump it, so no write path (service, CLI, an operator's
UPDATE) can revoke without it: a session's revoked_at set, a revoked access token
recorded, a user's tokens_valid_after moved. Redis mirrors the value after its own
write; a mirror behind SQL means Redis lost revocations (services/revocation.py).

Revision ID: 0008_revocation_generation
Revises: 0007_service_secrets
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_revocation_generation"
down_revision: str | None = "0007_service_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUMP = "UPDATE revocation_generation SET value = value + 1 WHERE id = 1"
# (trigger name, table, event, condition on OLD/NEW)
_TRIGGERS = (
    (
        "revocation_generation_sessions",
        "sessions",
        "UPDATE OF revoked_at",
        "OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL",
    ),
    ("revocation_generation_tokens", "revoked_access_tokens", "INSERT", None),
    (
        "revocation_generation_users",
        "users",
        "UPDATE OF tokens_valid_after",
        "NEW.tokens_valid_after IS DISTINCT FROM OLD.tokens_valid_after",
    ),
)


def upgrade() -> None:
    op.create_table(
        "revocation_generation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO revocation_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION bump_revocation_generation() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for name, table, event, condition in _TRIGGERS:
            when = f" WHEN ({condition})" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when}"
                " EXECUTE FUNCTION bump_revocation_generation()"
            )
    else:
        for name, table, event, condition in _TRIGGERS:
            when = f" WHEN {condition.replace('IS DISTINCT FROM', 'IS NOT')}" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when}"
                f" BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    for name, table, _, _ in _TRIGGERS:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON {table}")
        else:
            op.execute(f"DROP TRIGGER {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION bump_revocation_generation()")
    op.drop_table("revocation_generation")
