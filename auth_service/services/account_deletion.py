"""An owner deletes their account; the deleted accounts' names are freed after a hold.

Deleting cannot drop the user's row at once: it carries the token cut-off (credential
version and disable time) that a flushed denylist is rebuilt from, and its name. So one
transaction disables the user as `disable` does (version bumped, every access token of an
older version denylisted, every session revoked, the store written before the commit),
removes the second factor, and erases the personal data: the password hash, the scopes,
the addresses and user agents recorded on its sessions. The row, holding only the name
and the cut-off, is purged after AUTH_DELETED_USERNAME_HOLD_SECONDS (at least the token
lifetime), and until then nobody can register the name.
"""

from __future__ import annotations

from auth_service.errors import InvalidToken
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.reauth import active_user, check_password
from auth_service.services.revocation import deny_sessions, deny_user_tokens
from auth_service.services.sessions import end_sessions_in

__all__ = ["delete_own_account", "purge_deleted_accounts"]


async def delete_own_account(
    ctx: ServiceContext, claims: AccessClaims, *, password: str, ip: str | None
) -> None:
    """Check the password, then delete the caller's account and end every session."""
    user = await active_user(ctx, claims.subject)
    await check_password(ctx, user, password, ip, action="account_delete")
    now = ctx.clock()
    async with ctx.db.transaction() as tx:
        await tx.mfa.remove(user.id)
        version = await tx.users.disable(user.id, now=now)
        if version is None:
            raise InvalidToken("the account no longer exists or is disabled")
        await deny_user_tokens(ctx, user.id, version)
        ended = await end_sessions_in(ctx, tx, user.id, reason="account_deleted")
        await tx.users.erase(user.id, now=now)
    # Again, after the commit: a reseed that read SQL before it cannot lose them.
    await deny_user_tokens(ctx, user.id, version, committed=True)
    await deny_sessions(ctx, ended, committed=True)
    ctx.profiles.discard(user.id)
    ctx.audit.record("account_delete", user_id=user.id)


async def purge_deleted_accounts(ctx: ServiceContext) -> int:
    """Drop the rows of accounts deleted longer ago than the hold; how many (names freed)."""
    purged = await ctx.db.users.purge_deleted(
        before=ctx.clock() - ctx.accounts.deleted_username_hold
    )
    if purged:
        ctx.audit.record("account_purge")
    return purged
