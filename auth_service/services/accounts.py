"""Register users, check their passwords, and read their profile."""

from __future__ import annotations

import asyncio
import logging

from auth_service.errors import (
    HashingBusy,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    TooManyAttempts,
    WrongCurrentPassword,
)
from auth_service.repositories import Repositories, UserRecord
from auth_service.security.emails import parse_email
from auth_service.security.policy import (
    canonical_username,
    lookup_key,
    normalize_username,
    username_skeleton,
)
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.outbox import PASSWORD_CHANGED, VERIFY_EMAIL, enqueue
from auth_service.services.profiles import UserProfile
from auth_service.services.revocation import deny_sessions, deny_user_tokens
from auth_service.services.scopes import SUPPORTED_SCOPES
from auth_service.services.sessions import end_sessions_in, revoke_session_ids

__all__ = [
    "UserProfile",
    "authenticate",
    "change_password",
    "check_current_password",
    "disable",
    "get_profile",
    "notify_password_changed",
    "register",
    "require_active",
    "set_scopes",
]

log = logging.getLogger(__name__)


async def register(
    ctx: ServiceContext,
    *,
    username: str,
    password: str,
    ip: str | None = None,
    email: str | None = None,
) -> UserProfile:
    """Create an account after the username and password rules pass; hash off the loop.

    `ip` is the requester's address for per-IP throttling (None from the command line).
    An `email` is stored unverified and a verification mail queued in the same
    transaction; an address another account verified is accepted all the same (the
    answer must not tell), and its owner gets a notice instead of a link.
    """
    address = parse_email(email) if email is not None else None
    display_name = normalize_username(username)
    # zxcvbn is CPU-heavy on long inputs: off the event loop, like the hashing.
    password = await asyncio.to_thread(ctx.policy.accept, password, username=display_name)
    if ip is not None:
        await ctx.throttler.check_registration(ip)
    password_hash = await ctx.hasher.hash(password)
    canonical_name = canonical_username(display_name)
    skeleton = username_skeleton(display_name)
    if address is None:
        user = await ctx.db.users.add(
            username=display_name,
            canonical_name=canonical_name,
            skeleton=skeleton,
            password_hash=password_hash,
            now=ctx.clock(),
        )
    else:
        async with ctx.db.transaction() as tx:
            user = await tx.users.add(
                username=display_name,
                canonical_name=canonical_name,
                skeleton=skeleton,
                password_hash=password_hash,
                now=ctx.clock(),
                email=address.display,
                email_canonical=address.canonical,
            )
            await enqueue(
                ctx, tx, VERIFY_EMAIL, user_id=user.id, params={"canonical": address.canonical}
            )
        ctx.mail_queued.set()
    ctx.audit.record("register", user_id=user.id)
    return UserProfile(
        id=user.id,
        username=user.username,
        created_at=user.created_at,
        email=user.email,
        email_verified=user.email_verified,
    )


async def authenticate(ctx: ServiceContext, *, username: str, password: str) -> UserRecord:
    """Return the active user whose password matches, or raise InvalidGrant.

    Unknown, malformed and disabled usernames cost one argon2 verify like a wrong password
    and fail with the same error, so neither timing nor the response tells them apart.
    """
    prepared = ctx.policy.prepare(password)
    if prepared is None:
        raise InvalidRequest(f"password must be at most {ctx.policy.max_length} characters")
    password = prepared
    if not ctx.hasher.has_capacity():
        # The verify below would be refused: say so before the user lookup. The same for
        # every username, and after the throttle (grants.py), so no answer changes.
        raise HashingBusy
    canonical = lookup_key(username)
    user = None
    if canonical is not None:
        user = await ctx.db.users.by_username(canonical)
    if user is None:
        await ctx.hasher.dummy_verify(password, canonical or username)
        raise InvalidGrant
    result = await ctx.hasher.verify(password, user.password_hash)
    if not result.ok or not user.is_active:
        raise InvalidGrant
    if result.new_hash is not None:
        await ctx.db.users.replace_password_hash(
            user.id, expected_hash=user.password_hash, new_hash=result.new_hash, now=ctx.clock()
        )
        log.info("password hash upgraded", extra={"user_id": user.id})
    return user


async def check_current_password(
    ctx: ServiceContext,
    user: UserRecord,
    password: str,
    ip: str | None,
    *,
    event: str = "password_change",
) -> None:
    """Verify a token holder's (prepared) current password under the login throttle.

    A token is no licence to guess: each check is reserved in the same counters as a
    login for the account from `ip`, so logins and password changes share one budget.
    """
    try:
        async with ctx.throttler.password_check(user.username, ip, wrong=WrongCurrentPassword):
            result = await ctx.hasher.verify(password, user.password_hash)
            if not result.ok:
                raise WrongCurrentPassword
    except TooManyAttempts:
        ctx.audit.record(event, outcome="failure", user_id=user.id, reason="throttled")
        raise
    except WrongCurrentPassword:
        ctx.audit.record(event, outcome="failure", user_id=user.id, reason="bad_credentials")
        raise


async def get_profile(ctx: ServiceContext, user_id: str) -> UserProfile | None:
    """The profile of an active user, or None when the account is gone or disabled.

    Served from ctx.profiles when cached (see services/profiles.py); a miss reads SQL, and
    only active users are cached.
    """
    now = ctx.clock()
    profile = ctx.profiles.get(user_id, now)
    if profile is not None:
        return profile
    row = await ctx.db.users.active_profile(user_id)
    if row is None:
        return None
    profile = UserProfile(
        id=row.id,
        username=row.username,
        created_at=row.created_at,
        email=row.email,
        email_verified=row.email_verified,
    )
    ctx.profiles.put(profile, now)
    return profile


async def change_password(
    ctx: ServiceContext,
    claims: AccessClaims,
    *,
    current_password: str,
    new_password: str,
    ip: str | None = None,
) -> None:
    """Check the current password, apply the policy to the new one, end every other session.

    The check is throttled and audited like a login from `ip` (see check_current_password).
    The account's verified address is told, by a mail queued in the same transaction.
    """
    user = await ctx.db.users.by_id(claims.subject)
    if user is None or not user.is_active:
        raise InvalidToken("the account no longer exists or is disabled")
    current = ctx.policy.prepare(current_password)
    if current is None:
        raise WrongCurrentPassword
    await check_current_password(ctx, user, current, ip)
    new_password = await asyncio.to_thread(ctx.policy.accept, new_password, username=user.username)
    new_hash = await ctx.hasher.hash(new_password)
    # One transaction: the new hash, the bumped credential version (logins still in flight
    # with the old password cannot open a session) and every other session revoked. The
    # store is written inside it, so a store failure leaves nothing changed and a retry
    # with the same body succeeds.
    async with ctx.db.transaction() as tx:
        changed = await tx.users.change_password_hash(
            user.id,
            expected_version=user.credential_version,
            new_hash=new_hash,
            now=ctx.clock(),
        )
        if changed is None:
            raise WrongCurrentPassword  # changed or disabled since it was checked
        ended = await end_sessions_in(
            ctx, tx, user.id, reason="password_changed", keep=claims.session_id
        )
        await notify_password_changed(ctx, tx, user.id)
    ctx.mail_queued.set()
    await deny_sessions(ctx, ended, committed=True)  # again, after the commit
    ctx.audit.record("password_change", user_id=user.id)


async def disable(ctx: ServiceContext, username: str) -> bool:
    """Block the user's logins and kill all their sessions and tokens; False if unknown.

    One transaction bumps the credential version (no session opens after it, whatever is in
    flight), denylists every access token carrying an older one, and revokes every session;
    the store is written before the commit, so a store failure rolls it all back (retry).
    """
    canonical = lookup_key(username)
    if canonical is None:
        return False
    user = await ctx.db.users.by_username(canonical)
    if user is None:
        return False
    async with ctx.db.transaction() as tx:
        version = await tx.users.disable(user.id, now=ctx.clock())
        if version is None:
            return False  # deleted meanwhile
        await deny_user_tokens(ctx, user.id, version)
        ended = await end_sessions_in(ctx, tx, user.id, reason="user_disabled")
    # Again, after the commit: a reseed that read SQL before it cannot lose them.
    await deny_sessions(ctx, ended, committed=True)
    await deny_user_tokens(ctx, user.id, version, committed=True)
    ctx.profiles.discard(user.id)
    ctx.audit.record("disable", user_id=user.id)
    return True


async def require_active(ctx: ServiceContext, user_id: str) -> None:
    """Raise InvalidToken unless the user is active in SQL (for privileged operations, which
    should not rest on the denylist alone)."""
    if not await ctx.db.users.is_active(user_id):
        raise InvalidToken("the account no longer exists or is disabled")


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
    async with ctx.db.transaction() as tx:
        user = await tx.users.by_username(canonical)
        if user is None:
            return False
        await tx.users.set_scopes(user.id, scopes=" ".join(sorted(scopes)), now=ctx.clock())
    held = await ctx.db.sessions.unrevoked_scopes(user.id)
    wider = [sid for sid, scope in held if not frozenset(scope.split()) <= scopes]
    if wider:
        await revoke_session_ids(ctx, user.id, wider, reason="scopes_removed")
    ctx.audit.record("scopes_change", user_id=user.id)
    return True


async def notify_password_changed(ctx: ServiceContext, tx: Repositories, user_id: str) -> None:
    """Queue the "your password was changed" notice to the user's verified address."""
    user = await tx.users.email_of(user_id)
    if user is not None and user.email and user.email_verified:
        await enqueue(
            ctx,
            tx,
            PASSWORD_CHANGED,
            user_id=user_id,
            recipient=parse_email(user.email).delivery,
            params={"username": user.username},
        )
