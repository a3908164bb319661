"""Administer accounts: list, show, enable and delete (disable lives in accounts.py).

An account deleted by its owner (services/account_deletion.py) cannot be enabled, and its
row is deleted only once its name's hold is over.

Deleting a user drops the SQL row that carries its token cut-off, the durable record a
flushed denylist is rebuilt from. So only a user disabled longer than the access-token
horizon can be deleted: by then every token it ever held has expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from auth_service.errors import UserDeletionRefused
from auth_service.repositories import AdminUserRow
from auth_service.security.policy import lookup_key
from auth_service.services.context import ServiceContext

__all__ = ["UserPage", "UserSummary", "delete", "enable", "list_users", "show"]

MAX_PAGE = 500


@dataclass(frozen=True)
class UserSummary:
    """An account as an administrator sees it; `open_sessions` only from show()."""

    id: str
    username: str
    active: bool
    scopes: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    open_sessions: int | None = None


@dataclass(frozen=True)
class UserPage:
    """One page of users; pass `next_cursor` as `after` for the next (None: last page)."""

    users: list[UserSummary]
    next_cursor: str | None


def _summary(row: AdminUserRow, open_sessions: int | None = None) -> UserSummary:
    return UserSummary(
        id=row.id,
        username=row.username,
        active=row.is_active,
        scopes=tuple(sorted(row.scopes.split())),
        created_at=row.created_at,
        updated_at=row.updated_at,
        disabled_at=None if row.is_active else row.tokens_valid_after,
        open_sessions=open_sessions,
    )


async def list_users(
    ctx: ServiceContext, *, disabled_only: bool = False, after: str | None = None, limit: int = 100
) -> UserPage:
    """Users by canonical name, a page at a time (keyset: stable while users change)."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = await ctx.db.users.admin_page(disabled_only=disabled_only, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return UserPage(
        users=[_summary(row) for row in rows],
        next_cursor=rows[-1].canonical_name if more else None,
    )


async def _row(ctx: ServiceContext, username: str) -> AdminUserRow | None:
    canonical = lookup_key(username)
    if canonical is None:
        return None
    return await ctx.db.users.admin_row(canonical)


async def show(ctx: ServiceContext, username: str) -> UserSummary | None:
    """One account with its number of open sessions; None if unknown."""
    row = await _row(ctx, username)
    if row is None:
        return None
    count = await ctx.db.sessions.count_open(row.id, ctx.clock())
    return _summary(row, count)


async def enable(ctx: ServiceContext, username: str) -> bool:
    """Allow logins again; tokens and sessions ended by the disable stay dead. False if unknown."""
    row = await _row(ctx, username)
    if row is None or row.deleted_at is not None:
        return False  # an account its owner deleted is gone, whatever its row still holds
    if not row.is_active:
        await ctx.db.users.enable(row.id, now=ctx.clock())
        ctx.profiles.discard(row.id)
        ctx.audit.record("enable", user_id=row.id)
    return True


async def delete(ctx: ServiceContext, username: str) -> bool:
    """Delete a user disabled longer than the token horizon; False if unknown."""
    row = await _row(ctx, username)
    if row is None:
        return False
    if row.is_active:
        raise UserDeletionRefused("disable the user first; delete it once its tokens expired")
    now = ctx.clock()
    horizon = ctx.session_policy.access_token_horizon
    hold = ctx.accounts.deleted_username_hold
    if row.deleted_at is not None and now < row.deleted_at + hold:
        raise UserDeletionRefused(
            f"deleted by its owner; the name is held until {(row.deleted_at + hold).isoformat()}"
        )
    if row.tokens_valid_after is not None and now < row.tokens_valid_after + horizon:
        wait = int((row.tokens_valid_after + horizon - now).total_seconds()) + 1
        raise UserDeletionRefused(
            f"tokens issued before the disable may live {wait} s more; delete after that"
        )
    deleted = await ctx.db.users.delete_disabled(row.id)
    if deleted:
        ctx.profiles.discard(row.id)
        ctx.audit.record("delete", user_id=row.id)
    return deleted
