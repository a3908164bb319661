"""Password reset per OWASP's Forgot Password Cheat Sheet.

Asking: the request does the same work whatever it names. It counts one hit on the
submitted identifier's throttle and one on the client IP's, and, unless either is spent,
writes one outbox row holding the identifier; that is all. Whether an account exists is
decided later by the outbox worker, off the request: the answer (202), its body and the
work behind it are the same for known and unknown accounts, and no password is hashed.
A throttled request answers the same 202, queues nothing and voids nothing.

Confirming: the token (256-bit, SHA-256 at rest, 30 minutes) is bound to the credential
version it was issued at, so any password change voids it, and a newer request voided
it when it was issued. The new password passes the policy, then one transaction spends
the token, swaps the hash (bumping the credential version), ends every session and
queues the notice. The user is not logged in.
"""

from __future__ import annotations

import asyncio
import hashlib

from auth_service.errors import InvalidEmail, InvalidLink
from auth_service.repositories import UserEmail
from auth_service.security.emails import parse_email
from auth_service.security.links import MAX_LINK_TOKEN_LENGTH, hash_link_token
from auth_service.security.policy import lookup_key
from auth_service.services.accounts import notify_password_changed
from auth_service.services.browser_sessions import end_browser_sessions_of
from auth_service.services.context import ServiceContext
from auth_service.services.outbox import PASSWORD_RESET, RESET, enqueue
from auth_service.services.revocation import deny_sessions
from auth_service.services.sessions import end_sessions_in

__all__ = ["check_reset_link", "confirm_password_reset", "request_password_reset"]


def _digest(text: str) -> str:
    # Addresses and usernames never appear in throttle keys in clear.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _identifier(email: str | None, username: str | None) -> tuple[str, str] | None:
    """("email" | "username", canonical value), or None when it cannot name an account."""
    if email is not None:
        try:
            return "email", parse_email(email).canonical
        except InvalidEmail:
            return None
    if username is not None:
        canonical = lookup_key(username)
        return ("username", canonical) if canonical is not None else None
    return None


async def request_password_reset(
    ctx: ServiceContext, *, email: str | None, username: str | None, ip: str | None
) -> None:
    """Throttle, then queue the request; never says whether anything will be sent."""
    named = _identifier(email, username)
    policy = ctx.mail
    window = int(policy.reset_window.total_seconds())
    key = f"{named[0]}:{named[1]}" if named is not None else f"malformed:{email or username}"
    # Both counters are hit every time, in this order: the same work for every request.
    address_wait = await ctx.throttler.take_hit(
        f"reset-id:{_digest(key)}", policy.reset_limit_per_address, window
    )
    ip_wait = await ctx.throttler.take_hit(
        f"reset-ip:{_digest(ip or 'unknown')}", policy.reset_limit_per_ip, window
    )
    if address_wait or ip_wait:
        ctx.audit.record("password_reset_request", outcome="failure", reason="throttled")
        return
    if named is None:
        ctx.audit.record("password_reset_request", outcome="failure", reason="malformed")
        return
    async with ctx.db.transaction() as tx:
        await enqueue(ctx, tx, PASSWORD_RESET, params={named[0]: named[1]})
    ctx.mail_queued.set()
    ctx.audit.record("password_reset_request")


def _hash(token: str) -> str:
    if not token or len(token) > MAX_LINK_TOKEN_LENGTH:
        raise InvalidLink
    return hash_link_token(token)


async def _holder(ctx: ServiceContext, token_hash: str) -> tuple[UserEmail, int]:
    """The user a usable reset token belongs to, and the version it was issued at."""
    row = await ctx.db.email_tokens.find(token_hash, purpose=RESET, now=ctx.clock())
    if row is None:
        raise InvalidLink
    user = await ctx.db.users.email_of(row.user_id)
    if user is None or not user.is_active or user.credential_version != row.credential_version:
        raise InvalidLink  # disabled, or the password changed since: the link is void
    return user, row.credential_version


async def check_reset_link(ctx: ServiceContext, token: str) -> None:
    """InvalidLink unless the token could reset now (the GET form: spends nothing)."""
    await _holder(ctx, _hash(token))


async def confirm_password_reset(ctx: ServiceContext, *, token: str, new_password: str) -> None:
    """Set the new password through the token, end every session; never logs in."""
    token_hash = _hash(token)
    user, version = await _holder(ctx, token_hash)
    # The policy first (422 with reasons keeps the token for a better password).
    accepted = await asyncio.to_thread(ctx.policy.accept, new_password, username=user.username)
    new_hash = await ctx.hasher.hash(accepted)
    async with ctx.db.transaction() as tx:
        spent = await tx.email_tokens.consume(token_hash, purpose=RESET, now=ctx.clock())
        if spent is None:
            raise InvalidLink  # spent by a concurrent confirm
        changed = await tx.users.change_password_hash(
            user.id, expected_version=version, new_hash=new_hash, now=ctx.clock()
        )
        if changed is None:
            raise InvalidLink  # the password changed or the user was disabled meanwhile
        await tx.email_tokens.void(user.id, purpose=RESET, now=ctx.clock())
        ended = await end_sessions_in(ctx, tx, user.id, reason="password_reset")
        await notify_password_changed(ctx, tx, user.id)
    ctx.mail_queued.set()
    await deny_sessions(ctx, ended, committed=True)  # again, after the commit
    await end_browser_sessions_of(ctx, user.id)
    ctx.audit.record("password_reset", user_id=user.id)
