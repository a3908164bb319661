"""TOTP enrolment (RFC 6238): start with the password, confirm with a code, remove, reset.

The seed is sealed with the data encryption key before it is stored (a leaked database
holds no usable seeds) and bound to its owner. Confirming needs a code from the app, gives
out ten recovery codes once (stored hashed), and ends the user's other sessions: whoever
had a token from before has to log in again, now with the second factor. Confirmation
also bumps the credential version, so a password-only login in flight cannot open a
session after it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from auth_service.errors import (
    InvalidOtp,
    InvalidToken,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    MfaNotPending,
)
from auth_service.repositories import TotpFactorRow
from auth_service.security.data_keys import Sealed
from auth_service.security.otp import (
    hash_recovery_code,
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    otpauth_uri,
    qr_svg,
)
from auth_service.security.policy import lookup_key
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.reauth import active_user, check_password
from auth_service.services.revocation import deny_sessions
from auth_service.services.sessions import end_sessions_in

__all__ = [
    "TotpEnrolment",
    "confirm_totp",
    "factor_secret",
    "remove_totp",
    "reset_totp",
    "start_totp",
]


@dataclass(frozen=True)
class TotpEnrolment:
    """What the user needs to add the factor to an authenticator app."""

    secret: str
    otpauth_uri: str
    qr_svg: str


def _sealing_context(user_id: str) -> str:
    return f"totp-secret:{user_id}"


def factor_secret(ctx: ServiceContext, factor: TotpFactorRow) -> str:
    """The factor's base32 seed, opened with the key its ciphertext names."""
    sealed = Sealed(factor.key_id, factor.secret_ciphertext)
    return ctx.accounts.cipher.open(sealed, context=_sealing_context(factor.user_id)).decode()


async def start_totp(
    ctx: ServiceContext, claims: AccessClaims, *, password: str | None, ip: str | None
) -> TotpEnrolment:
    """Check the password, store a new pending seed (replacing a pending one), and return
    it with its otpauth:// URI and QR code; MfaAlreadyEnabled if one is confirmed.
    `password` None: the caller saw a login of the last few minutes (the account page)."""
    user = await active_user(ctx, claims.subject)
    if password is not None:
        await check_password(ctx, user, password, ip, action="mfa_enrol")
    secret = new_totp_secret()
    sealed = ctx.accounts.cipher.seal(secret.encode(), context=_sealing_context(user.id))
    stored = await ctx.db.mfa.put_pending(
        user.id, key_id=sealed.key_id, ciphertext=sealed.ciphertext, now=ctx.clock()
    )
    if not stored:
        raise MfaAlreadyEnabled
    uri = otpauth_uri(secret, username=user.username, issuer=ctx.accounts.totp_issuer)
    svg = await asyncio.to_thread(qr_svg, uri)  # pure-Python QR encoding: a few ms of CPU
    ctx.audit.record("mfa_enrol", outcome="pending", user_id=user.id)
    return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=svg)


async def confirm_totp(
    ctx: ServiceContext, claims: AccessClaims, *, code: str, ip: str | None
) -> list[str]:
    """Confirm the pending factor with a current code; return ten recovery codes (shown
    this once) and end every other session of the user.

    A wrong code counts as a failed login of the account from `ip` (same throttle).
    """
    user = await active_user(ctx, claims.subject)
    factor = await ctx.db.mfa.factor(user.id)
    if factor is None or factor.confirmed_at is not None:
        raise MfaNotPending
    secret = factor_secret(ctx, factor)
    codes = new_recovery_codes()
    async with ctx.throttler.password_check(user.username, ip, wrong=InvalidOtp):
        now = ctx.clock()
        step = matching_step(secret, code, now)
        if step is None:
            ctx.audit.record("mfa_enrol", outcome="failure", user_id=user.id, reason="bad_code")
            raise InvalidOtp
        async with ctx.db.transaction() as tx:
            if not await tx.mfa.confirm(user.id, step=step, now=now):
                raise InvalidOtp  # confirmed, replaced or the code used meanwhile
            # Locks the user's row: no session opens with the version read before it.
            if await tx.users.bump_credential_version(user.id, now=now) is None:
                raise InvalidToken("the account no longer exists or is disabled")
            hashes = [hash_recovery_code(user.id, item) for item in codes]
            await tx.mfa.replace_recovery_codes(user.id, hashes, now=now)
            ended = await end_sessions_in(
                ctx, tx, user.id, reason="mfa_enabled", keep=claims.session_id
            )
    await deny_sessions(ctx, ended, committed=True)  # again, after the commit
    ctx.audit.record("mfa_enrol", user_id=user.id)
    return codes


async def remove_totp(
    ctx: ServiceContext, claims: AccessClaims, *, password: str, ip: str | None
) -> None:
    """Check the password and remove the factor and its recovery codes."""
    user = await active_user(ctx, claims.subject)
    await check_password(ctx, user, password, ip, action="mfa_remove")
    if not await ctx.db.mfa.remove(user.id):
        raise MfaNotEnabled
    ctx.audit.record("mfa_remove", user_id=user.id)


async def reset_totp(ctx: ServiceContext, username: str) -> bool | None:
    """Administrators: remove a user's factor. None if no such user, False if it had none."""
    canonical = lookup_key(username)
    user = await ctx.db.users.by_username(canonical) if canonical is not None else None
    if user is None:
        return None
    removed = await ctx.db.mfa.remove(user.id)
    if removed:
        ctx.audit.record("mfa_reset", user_id=user.id)
    return removed
