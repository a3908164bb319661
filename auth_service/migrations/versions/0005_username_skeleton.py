"""Usernames unique on their UTS #39 confusable skeleton.

Revision ID: 0005_username_skeleton
Revises: 0004_credential_version
Create Date: 2026-12-02

Existing accounts are backfilled oldest first. Where two existing names already share a
skeleton (`alice`, and `alice` spelt with a Cyrillic U+0430), the older keeps it and the
newer stays NULL: it keeps logging in by its own name (username_canonical is unchanged),
and no new account can take a name that looks like either.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from auth_service.security.policy import username_skeleton

revision: str = "0005_username_skeleton"
down_revision: str | None = "0004_credential_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_USERS = sa.table(
    "users",
    sa.column("id", sa.String),
    sa.column("username", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("username_skeleton", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("username_skeleton", sa.String(512), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_USERS.c.id, _USERS.c.username).order_by(_USERS.c.created_at, _USERS.c.id)
    ).all()
    taken: set[str] = set()
    for user_id, username in rows:
        key = username_skeleton(username)
        if key in taken:
            continue
        taken.add(key)
        bind.execute(sa.update(_USERS).where(_USERS.c.id == user_id).values(username_skeleton=key))
    op.create_index(op.f("ix_users_username_skeleton"), "users", ["username_skeleton"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_users_username_skeleton"), table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("username_skeleton")
