"""The token endpoint's authorization_code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

A code is spent by one compare-and-set; a code presented again is a replay (RFC 6749
§4.1.2: the code may have leaked), so the session its first exchange opened is revoked
with every token issued from it, and the replay gets invalid_grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from auth_service.errors import InvalidGrant, InvalidRequest
from auth_service.repositories import AuthorizationCodeRow, SessionRow
from auth_service.services.authorization import PKCE_VALUE, hash_code
from auth_service.services.clients import Client
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import deny_sessions
from auth_service.services.sessions import RequestOrigin, TokenGrant, open_code_session
from auth_service.services.userinfo import email_claims

__all__ = ["exchange_code"]

_MAX_CODE_LENGTH = 128


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_pkce(row: AuthorizationCodeRow, verifier: str | None) -> None:
    if row.code_challenge is None:
        if verifier is not None:
            # A verifier for a request that sent no challenge: a downgrade (RFC 9700 §2.1.1).
            raise InvalidGrant("code_verifier sent, but the authorization request had no PKCE")
        return
    if verifier is None:
        raise InvalidGrant("code_verifier is required")
    if not PKCE_VALUE.fullmatch(verifier) or not hmac.compare_digest(
        _s256(verifier), row.code_challenge
    ):
        raise InvalidGrant("code_verifier does not match the code_challenge")


async def _replayed(ctx: ServiceContext, code_hash: str) -> None:
    """A spent code again: revoke the session its exchange opened (if any yet)."""
    row = await ctx.db.authorizations.find_code(code_hash)
    if row is None or row.used_at is None:
        return
    # The store first (it also covers a session still being opened), then SQL, then again.
    await deny_sessions(ctx, [row.session_id])
    await ctx.db.sessions.mark_revoked([row.session_id], now=ctx.clock(), reason="code_replay")
    await deny_sessions(ctx, [row.session_id], committed=True)
    ctx.audit.record(
        "code_replay", outcome="session_revoked", user_id=row.user_id, client_id=row.client_id
    )


async def exchange_code(
    ctx: ServiceContext, client: Client, params: dict[str, str], origin: RequestOrigin
) -> TokenGrant:
    """Spend the code and open its session: access, refresh and (for openid) ID token."""
    code = params.get("code")
    if not code:
        raise InvalidRequest("the 'code' parameter is required")
    redirect_uri = params.get("redirect_uri")
    verifier = params.get("code_verifier")
    if len(code) > _MAX_CODE_LENGTH:
        raise InvalidGrant("the authorization code is invalid")
    code_hash = hash_code(code)
    now = ctx.clock()
    row = await ctx.db.authorizations.consume_code(code_hash, now=now)
    if row is None:
        await _replayed(ctx, code_hash)
        raise InvalidGrant("the authorization code is invalid, expired or already used")
    if row.client_id != client.client_id:
        raise InvalidGrant("the authorization code was issued to another client")
    if redirect_uri != row.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request")
    _check_pkce(row, verifier)
    origin = origin.clipped()
    policy = ctx.session_policy
    absolute = now + policy.absolute_lifetime
    record = SessionRow(
        id=row.session_id,
        user_id=row.user_id,
        client_id=row.client_id,
        scope=row.scope,
        created_at=now,
        last_used_at=now,
        last_ip=origin.ip,
        last_user_agent=origin.user_agent,
        idle_expires_at=min(now + policy.idle_timeout, absolute),
        absolute_expires_at=absolute,
        browser_session_id=row.browser_session_id,
        auth_time=row.auth_time,
        amr=row.amr,
        acr=row.acr,
    )
    return await open_code_session(
        ctx,
        record,
        credential_version=row.credential_version,
        user_scopes=row.user_scopes,
        id_token_alg=client.id_token_alg,
        nonce=row.nonce,
        id_claims=email_claims(row.email, row.email_verified),
    )
