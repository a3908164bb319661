"""The login page's second step for a user with a confirmed TOTP factor.

The password step parks who passed it on the pending request (server side) with the
SHA-256 of a random binding that only this browser holds in a cookie, so a leaked request
id alone never reaches the code form. The step then takes a TOTP code or a recovery code
through mfa_login.spend_second_factor (same throttle, each code once) within the MFA token
lifetime, and only then signs the browser in, with amr/acr saying what was used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace

from auth_service.errors import InvalidGrant
from auth_service.repositories import UserRecord
from auth_service.security.otp import DIGITS, MAX_CODE_LENGTH
from auth_service.services.authorization import Pending, record_login
from auth_service.services.browser_sessions import BrowserLogin, current_session, sign_in
from auth_service.services.context import ServiceContext
from auth_service.services.mfa_login import spend_second_factor

__all__ = ["finish_login", "park_second_factor", "second_factor_user"]

_BINDING_BYTES = 32


def _hash(binding: str) -> str:
    return hashlib.sha256(binding.encode("utf-8")).hexdigest()


async def park_second_factor(ctx: ServiceContext, pending: Pending, user: UserRecord) -> str:
    """Note on the pending request that `user` passed the password; the browser binding."""
    binding = secrets.token_urlsafe(_BINDING_BYTES)
    parked = replace(
        pending.request,
        mfa_user=user.id,
        mfa_credential_version=user.credential_version,
        mfa_since=ctx.clock().timestamp(),
        mfa_binding=_hash(binding),
    )
    await ctx.db.authorizations.update_request(pending.request_id, parked.to_json())
    ctx.audit.record(
        "login", outcome="mfa_required", user_id=user.id, client_id=pending.client.client_id
    )
    return binding


async def second_factor_user(
    ctx: ServiceContext, pending: Pending, binding: str | None
) -> UserRecord | None:
    """The user whose code this browser may enter now, or None (no password step, another
    browser, too old, or the account changed since): then the login starts again."""
    request = pending.request
    if request.mfa_user is None or request.mfa_binding is None or request.mfa_since is None:
        return None
    if not binding or len(binding) > MAX_CODE_LENGTH:
        return None
    if not hmac.compare_digest(_hash(binding), request.mfa_binding):
        return None
    age = ctx.clock().timestamp() - request.mfa_since
    if age > ctx.accounts.mfa_token_ttl.total_seconds():
        return None
    user = await ctx.db.users.by_id(request.mfa_user)
    if user is None or not user.is_active or not user.has_second_factor:
        return None
    if user.credential_version != request.mfa_credential_version:
        return None  # the password changed since it was checked
    return user


async def finish_login(
    ctx: ServiceContext,
    pending: Pending,
    user: UserRecord,
    *,
    code: str,
    ip: str | None,
    cookie: str | None,
) -> BrowserLogin:
    """Spend a TOTP code (six digits) or a recovery code, then sign the browser in.
    InvalidGrant if wrong or spent, TooManyAttempts when throttled."""
    code = "".join(code.split())
    if not code or len(code) > MAX_CODE_LENGTH:
        raise InvalidGrant
    is_otp = len(code) == DIGITS and code.isdigit()
    amr = await spend_second_factor(
        ctx,
        user,
        otp=code if is_otp else None,
        recovery_code=None if is_otp else code,
        ip=ip,
    )
    current = await current_session(ctx, cookie, client_id=pending.client.client_id)
    login = await sign_in(
        ctx,
        user,
        current=current,
        lifetime=ctx.browser_session_lifetime,
        amr=amr,
    )
    await record_login(ctx, pending, login.session.id)
    return login
