"""Register users, check their passwords, and read their profile."""

from __future__ import annotations

import logging

from auth_service.db.hot import hot_connection
from auth_service.errors import (
    HashingBusy,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    WrongCurrentPassword,
)
from auth_service.security.policy import (
    canonical_username,
    lookup_key,
    normalize_password,
    normalize_username,
)
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.profiles import UserProfile
from auth_service.services.revocation import deny_user_tokens
from auth_service.services.scopes import SUPPORTED_SCOPES
from auth_service.services.sessions import revoke_session_ids
from auth_service.stores import sessions as session_rows
from auth_service.stores import users
from auth_service.stores.users import UserRecord

__all__ = [
    "UserProfile",
    "authenticate",
    "change_password",
    "disable",
    "get_profile",
    "register",
    "set_scopes",
]

log = logging.getLogger(__name__)


async def register(
    ctx: ServiceContext, *, username: str, password: str, ip: str | None = None
) -> UserProfile:
    """Create an account after the username and password rules pass; hash off the loop.

    `ip` is the requester's address for per-IP throttling (None from the command line).
    """
    display_name = normalize_username(username)
    password = normalize_password(password)
    ctx.policy.check(password, username=display_name)
    if ip is not None:
        await ctx.throttler.check_registration(ip)
    password_hash = await ctx.hasher.hash(password)
    async with ctx.sessions.begin() as session:
        user = await users.add_user(
            session,
            username=display_name,
            canonical_name=canonical_username(display_name),
            password_hash=password_hash,
            now=ctx.clock(),
        )
    ctx.audit.record("register", user_id=user.id)
    return UserProfile(id=user.id, username=user.username, created_at=user.created_at)


async def authenticate(ctx: ServiceContext, *, username: str, password: str) -> UserRecord:
    """Return the active user whose password matches, or raise InvalidGrant.

    Unknown, malformed and disabled usernames cost one argon2 verify like a wrong password
    and fail with the same error, so neither timing nor the response tells them apart.
    """
    if len(password) > ctx.policy.max_length:
        raise InvalidRequest(f"password must be at most {ctx.policy.max_length} characters")
    if not ctx.hasher.has_capacity():
        # The verify below would be refused: say so before the user lookup. The same for
        # every username, and after the throttle (grants.py), so no answer changes.
        raise HashingBusy
    password = normalize_password(password)
    canonical = lookup_key(username)
    user = None
    if canonical is not None:
        async with hot_connection(ctx.sessions) as db:
            user = await users.get_user_by_username(db, canonical)
    if user is None:
        await ctx.hasher.dummy_verify(password)
        raise InvalidGrant
    result = await ctx.hasher.verify(password, user.password_hash)
    if not result.ok or not user.is_active:
        raise InvalidGrant
    if result.new_hash is not None:
        async with ctx.sessions.begin() as session:
            await users.replace_password_hash(
                session,
                user.id,
                expected_hash=user.password_hash,
                new_hash=result.new_hash,
                now=ctx.clock(),
            )
        log.info("password hash upgraded", extra={"user_id": user.id})
    return user


async def get_profile(ctx: ServiceContext, user_id: str) -> UserProfile | None:
    """The profile of an active user, or None when the account is gone or disabled.

    Served from ctx.profiles when cached (see services/profiles.py); a miss reads SQL, and
    only active users are cached.
    """
    now = ctx.clock()
    profile = ctx.profiles.get(user_id, now)
    if profile is not None:
        return profile
    async with ctx.sessions() as session:
        row = await users.get_active_profile(session, user_id)
    if row is None:
        return None
    profile = UserProfile(id=row[0], username=row[1], created_at=row[2])
    ctx.profiles.put(profile, now)
    return profile


async def change_password(
    ctx: ServiceContext, claims: AccessClaims, *, current_password: str, new_password: str
) -> None:
    """Check the current password, apply the policy to the new one, end every other session."""
    async with ctx.sessions() as session:
        user = await users.get_user_by_id(session, claims.subject)
    if user is None or not user.is_active:
        raise InvalidToken("the account no longer exists or is disabled")
    if len(current_password) > ctx.policy.max_length:
        raise WrongCurrentPassword
    result = await ctx.hasher.verify(normalize_password(current_password), user.password_hash)
    if not result.ok:
        raise WrongCurrentPassword
    new_password = normalize_password(new_password)
    ctx.policy.check(new_password, username=user.username)
    new_hash = await ctx.hasher.hash(new_password)
    async with ctx.sessions.begin() as session:
        await users.set_password_hash(session, user.id, new_hash=new_hash, now=ctx.clock())
    await revoke_session_ids(ctx, user.id, None, reason="password_changed", keep=claims.session_id)
    ctx.audit.record("password_change", user_id=user.id)


async def disable(ctx: ServiceContext, username: str) -> bool:
    """Block the user's logins and kill all their sessions and tokens; False if unknown."""
    canonical = lookup_key(username)
    if canonical is None:
        return False
    now = ctx.clock()
    async with ctx.sessions() as session:
        user = await users.get_user_by_username(session, canonical)
    if user is None:
        return False
    # Store first (fails closed, retryable), then the durable record.
    await deny_user_tokens(ctx, user.id, now)
    async with ctx.sessions.begin() as session:
        await users.disable_user(session, user.id, now=now)
    await deny_user_tokens(ctx, user.id, now)  # again, after the commit
    ctx.profiles.discard(user.id)
    await revoke_session_ids(ctx, user.id, None, reason="user_disabled")
    ctx.audit.record("disable", user_id=user.id)
    return True


async def set_scopes(ctx: ServiceContext, username: str, scopes: frozenset[str]) -> bool:
    """Replace what the user may be granted; False if unknown.

    Every session holding a scope taken away ends at once, with its access tokens (the
    others live on). The scopes are committed first, so new logins and refreshes get only
    what is left; a failure after that (store unreachable) is safe to retry.
    """
    unknown = scopes - SUPPORTED_SCOPES.keys()
    if unknown:
        raise InvalidScope(f"unknown scopes: {' '.join(sorted(unknown))}")
    canonical = lookup_key(username)
    if canonical is None:
        return False
    async with ctx.sessions.begin() as session:
        user = await users.get_user_by_username(session, canonical)
        if user is None:
            return False
        await users.set_scopes(session, user.id, scopes=" ".join(sorted(scopes)), now=ctx.clock())
    async with ctx.sessions() as session:
        held = await session_rows.unrevoked_session_scopes(session, user.id)
    wider = [sid for sid, scope in held if not frozenset(scope.split()) <= scopes]
    if wider:
        await revoke_session_ids(ctx, user.id, wider, reason="scopes_removed")
    ctx.audit.record("scopes_change", user_id=user.id)
    return True
