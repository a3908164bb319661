"""Set or change a user's address, and verify it through the mailed link.

Setting an address stores it unverified and queues, in the same transaction, the
verification mail and (on a change) a notice to the old address. Verification spends the
link's token and marks the address verified only if it is still the user's; the partial
unique index makes a verified address belong to one account.
"""

from __future__ import annotations

from auth_service.errors import InvalidLink, InvalidToken, WrongCurrentPassword
from auth_service.security.emails import parse_email
from auth_service.security.links import MAX_LINK_TOKEN_LENGTH, hash_link_token
from auth_service.security.tokens import AccessClaims
from auth_service.services.accounts import UserProfile, check_current_password, get_profile
from auth_service.services.context import ServiceContext
from auth_service.services.outbox import EMAIL_CHANGED, VERIFY, VERIFY_EMAIL, enqueue

__all__ = ["check_verification_link", "set_email", "verify_email"]


def _mask(address: str) -> str:
    """`a***@example.com`: enough for the owner to recognise, little for anyone else."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


async def set_email(
    ctx: ServiceContext, claims: AccessClaims, *, email: str, password: str, ip: str | None
) -> UserProfile:
    """Re-check the password (throttled like a login), then replace the address with an
    unverified one; the same verified address again changes nothing. A verified old
    address is told of the change (an unverified one may be nobody's)."""
    address = parse_email(email)
    user = await ctx.db.users.by_id(claims.subject)
    if user is None or not user.is_active:
        raise InvalidToken("the account no longer exists or is disabled")
    current = ctx.policy.prepare(password)
    if current is None:
        raise WrongCurrentPassword
    await check_current_password(ctx, user, current, ip, event="email_change")
    async with ctx.db.transaction() as tx:
        before = await tx.users.email_of(user.id)
        if before is None:
            raise InvalidToken("the account no longer exists or is disabled")
        same = before.email_canonical == address.canonical
        if not (same and before.email_verified):
            await tx.users.set_email(
                user.id, email=address.display, email_canonical=address.canonical, now=ctx.clock()
            )
            await enqueue(
                ctx, tx, VERIFY_EMAIL, user_id=user.id, params={"canonical": address.canonical}
            )
            if before.email and before.email_verified and not same:
                await enqueue(
                    ctx,
                    tx,
                    EMAIL_CHANGED,
                    user_id=user.id,
                    recipient=parse_email(before.email).delivery,
                    params={"username": user.username, "new": _mask(address.display)},
                )
    ctx.mail_queued.set()
    ctx.profiles.discard(user.id)
    ctx.audit.record("email_change", user_id=user.id)
    profile = await get_profile(ctx, user.id)
    if profile is None:
        raise InvalidToken("the account no longer exists or is disabled")
    return profile


def _hash(token: str) -> str:
    if not token or len(token) > MAX_LINK_TOKEN_LENGTH:
        raise InvalidLink
    return hash_link_token(token)


async def check_verification_link(ctx: ServiceContext, token: str) -> None:
    """InvalidLink unless the token could verify now (the GET form; spends nothing)."""
    row = await ctx.db.email_tokens.find(_hash(token), purpose=VERIFY, now=ctx.clock())
    if row is None:
        raise InvalidLink


async def verify_email(ctx: ServiceContext, token: str) -> None:
    """Spend the token and verify the address it was sent to, if still the user's.

    InvalidLink for an unknown, spent, expired or superseded link; EmailTaken when
    another account verified the address first (the token is then not spent).
    """
    token_hash = _hash(token)
    now = ctx.clock()
    async with ctx.db.transaction() as tx:
        row = await tx.email_tokens.consume(token_hash, purpose=VERIFY, now=now)
        if row is None or row.email_canonical is None:
            raise InvalidLink
        verified = await tx.users.mark_email_verified(
            row.user_id, email_canonical=row.email_canonical, now=now
        )
        if not verified:
            raise InvalidLink  # the address changed since the link was sent
    ctx.profiles.discard(row.user_id)
    ctx.audit.record("email_verify", user_id=row.user_id)
