"""Recent authentication: the password re-entered before a sensitive change of an account.

A bearer token alone is not enough to add or remove a second factor, or to delete the
account: whoever holds a stolen token must also know the password. Each check is reserved
in the login throttle's counters for the account from the request's address, so these
checks and logins share one budget of guesses.
"""

from __future__ import annotations

from auth_service.errors import InvalidToken, TooManyAttempts, WrongCurrentPassword
from auth_service.repositories import UserRecord
from auth_service.services.context import ServiceContext

__all__ = ["active_user", "check_password"]


async def active_user(ctx: ServiceContext, user_id: str) -> UserRecord:
    """The token's user, read from SQL; InvalidToken if gone or disabled."""
    user = await ctx.db.users.by_id(user_id)
    if user is None or not user.is_active:
        raise InvalidToken("the account no longer exists or is disabled")
    return user


async def check_password(
    ctx: ServiceContext, user: UserRecord, password: str, ip: str | None, *, action: str
) -> None:
    """Verify the user's password (argon2 off the loop) under the login throttle; raise
    WrongCurrentPassword or TooManyAttempts, audited as `action`."""
    prepared = ctx.policy.prepare(password)
    try:
        if prepared is None:
            raise WrongCurrentPassword
        async with ctx.throttler.password_check(user.username, ip, wrong=WrongCurrentPassword):
            result = await ctx.hasher.verify(prepared, user.password_hash)
            if not result.ok:
                raise WrongCurrentPassword
    except TooManyAttempts:
        ctx.audit.record(action, outcome="failure", user_id=user.id, reason="throttled")
        raise
    except WrongCurrentPassword:
        ctx.audit.record(action, outcome="failure", user_id=user.id, reason="bad_credentials")
        raise
