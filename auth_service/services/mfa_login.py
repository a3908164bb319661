"""The second step of a password login for a user with a TOTP factor.

The password step answers `mfa_required` with an opaque `mfa_token` (256 bits, stored as
its SHA-256, 5 minutes, bound to the user, the client, the granted scope and the
credential version read with the password). The second step presents it with a TOTP code
(grant type urn:auth-service:grant-type:mfa-otp) or a recovery code (...:mfa-recovery-code).
In one transaction it spends the token and the code, each a compare-and-set, so a token,
a time step and a recovery code each work once whatever runs concurrently; a wrong code
rolls the token back, so a typo does not cost the password step. Only then does the
session open, and only if the credential version is still the one read with the password.
Wrong codes count as failed logins of the account (services/throttling.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from auth_service.errors import InvalidGrant, InvalidRequest, MfaRequired, TooManyAttempts
from auth_service.repositories import MfaTokenRow, Repositories, UserRecord
from auth_service.security.authn import AMR_PASSWORD_OTP, AMR_PASSWORD_RECOVERY_CODE
from auth_service.security.data_keys import SealedDataUnreadable
from auth_service.security.otp import (
    MAX_CODE_LENGTH,
    hash_mfa_token,
    hash_recovery_code,
    matching_step,
    new_mfa_token,
)
from auth_service.services.clients import Client
from auth_service.services.context import ServiceContext
from auth_service.services.mfa import factor_secret
from auth_service.services.sessions import RequestOrigin, TokenGrant, open_session

__all__ = [
    "MFA_GRANT_TYPES",
    "MFA_OTP_GRANT",
    "MFA_RECOVERY_CODE_GRANT",
    "complete_login",
    "needs_second_factor",
    "require_second_factor",
    "spend_second_factor",
]

MFA_OTP_GRANT = "urn:auth-service:grant-type:mfa-otp"
MFA_RECOVERY_CODE_GRANT = "urn:auth-service:grant-type:mfa-recovery-code"
MFA_GRANT_TYPES = (MFA_OTP_GRANT, MFA_RECOVERY_CODE_GRANT)
_MAX_MFA_TOKEN_LENGTH = 128
_BAD_TOKEN = "the mfa_token is invalid, expired or already used"  # noqa: S105 - a message
_BAD_CODE = "the code is not correct or was already used"


def needs_second_factor(user: UserRecord) -> bool:
    """True when the user has a confirmed factor (read with the password hash, in the same
    statement: a password alone then opens no session)."""
    return user.has_second_factor


async def require_second_factor(
    ctx: ServiceContext, user: UserRecord, *, client_id: str, scopes: frozenset[str]
) -> MfaRequired:
    """Store an MFA token for this password step; the error that hands it out."""
    token = new_mfa_token()
    now = ctx.clock()
    bound = MfaTokenRow(
        user_id=user.id,
        client_id=client_id,
        scope=" ".join(sorted(scopes)),
        credential_version=user.credential_version,
    )
    await ctx.db.mfa.add_token(
        hash_mfa_token(token), row=bound, expires_at=now + ctx.accounts.mfa_token_ttl, now=now
    )
    ctx.audit.record("login", outcome="mfa_required", user_id=user.id, client_id=client_id)
    return MfaRequired(token)


def _parameter(params: dict[str, str], name: str, limit: int) -> str:
    value = params.get(name)
    if not value:
        raise InvalidRequest(f"the '{name}' parameter is required")
    if len(value) > limit:
        raise InvalidGrant(_BAD_TOKEN if name == "mfa_token" else _BAD_CODE)
    return value


async def _bound_user(
    ctx: ServiceContext, token_hash: str, client: Client
) -> tuple[MfaTokenRow, UserRecord]:
    bound = await ctx.db.mfa.peek_token(token_hash, now=ctx.clock())
    if bound is None or bound.client_id != client.client_id:
        raise InvalidGrant(_BAD_TOKEN)
    user = await ctx.db.users.by_id(bound.user_id)
    if user is None or not user.is_active or user.credential_version != bound.credential_version:
        raise InvalidGrant(_BAD_TOKEN)  # disabled, deleted or password changed since
    return bound, user


async def _otp_step(ctx: ServiceContext, user: UserRecord, code: str) -> int:
    factor = await ctx.db.mfa.factor(user.id)
    if factor is None or factor.confirmed_at is None:
        raise InvalidGrant(_BAD_CODE)  # removed since the password step
    try:
        secret = factor_secret(ctx, factor)
    except SealedDataUnreadable:
        raise InvalidGrant(_BAD_CODE) from None  # its key was dropped from the key file
    step = matching_step(secret, code, ctx.clock())
    if step is None:
        raise InvalidGrant(_BAD_CODE)
    return step


async def spend_second_factor(
    ctx: ServiceContext,
    user: UserRecord,
    *,
    otp: str | None = None,
    recovery_code: str | None = None,
    ip: str | None,
    claim: Callable[[Repositories], Awaitable[bool]] | None = None,
) -> tuple[str, ...]:
    """Check and spend a TOTP code or a recovery code of `user` under the login throttle;
    the `amr` of the login it completes. InvalidGrant if wrong, spent or no factor.

    `claim` runs first in the same transaction (the grant spends its MFA token there; a
    browser login may spend its own pending state): False refuses, and a wrong code rolls
    the claim back. Reusable by any login that has checked the password already.
    """
    recovery = recovery_code is not None
    try:
        async with ctx.throttler.password_check(user.username, ip, wrong=InvalidGrant):
            step = None if recovery else await _otp_step(ctx, user, otp or "")
            now = ctx.clock()
            async with ctx.db.transaction() as tx:
                if claim is not None and not await claim(tx):
                    raise InvalidGrant(_BAD_TOKEN)
                if step is not None:
                    spent = await tx.mfa.use_step(user.id, step=step)
                else:
                    code_hash = hash_recovery_code(user.id, recovery_code or "")
                    spent = await tx.mfa.use_recovery_code(user.id, code_hash, now=now)
                if not spent:
                    raise InvalidGrant(_BAD_CODE)  # rolls the claim back
    except TooManyAttempts:
        ctx.audit.record("login", outcome="throttled", user_id=user.id)
        raise
    except InvalidGrant:
        reason = "recovery_code" if recovery else "otp"
        ctx.audit.record("login", outcome="failure", user_id=user.id, reason=reason)
        raise
    return AMR_PASSWORD_RECOVERY_CODE if recovery else AMR_PASSWORD_OTP


async def complete_login(
    ctx: ServiceContext,
    grant_type: str,
    params: dict[str, str],
    client: Client,
    origin: RequestOrigin,
) -> TokenGrant:
    """The second step: spend the MFA token and a code, then open the session."""
    token = _parameter(params, "mfa_token", _MAX_MFA_TOKEN_LENGTH)
    recovery = grant_type == MFA_RECOVERY_CODE_GRANT
    code = _parameter(params, "recovery_code" if recovery else "otp", MAX_CODE_LENGTH)
    token_hash = hash_mfa_token(token)
    bound, user = await _bound_user(ctx, token_hash, client)

    async def claim_token(tx: Repositories) -> bool:
        return await tx.mfa.claim_token(token_hash, now=ctx.clock()) is not None

    amr = await spend_second_factor(
        ctx,
        user,
        otp=None if recovery else code,
        recovery_code=code if recovery else None,
        ip=origin.ip,
        claim=claim_token,
    )
    # What the password step granted, less anything taken from the user or client since.
    scopes = frozenset((bound.scope or "").split()) & client.scopes & set(user.scopes.split())
    return await open_session(
        ctx, user, scopes=scopes, client_id=client.client_id, origin=origin, amr=amr
    )
