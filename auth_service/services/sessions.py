"""Sessions: open one per password grant, rotate its refresh token, revoke it.

Rotation is a compare-and-set on the presented token's row, so of N concurrent refreshes
exactly one creates a successor. Within the grace window a repeat gets that same successor
back (sealed under the old token); after it, a repeat is treated as theft and the whole
session dies, including the successor and every access token carrying its `sid`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from auth_service.errors import InvalidGrant, InvalidScope, StoreUnavailable
from auth_service.repositories import (
    RefreshFamily,
    RefreshTokenRow,
    Repositories,
    SessionRow,
    UserRecord,
)
from auth_service.security.authn import AMR_PASSWORD, acr_for
from auth_service.security.refresh import (
    MAX_REFRESH_TOKEN_LENGTH,
    hash_refresh_token,
    new_refresh_token,
    open_sealed,
    seal,
)
from auth_service.security.tokens import new_token_id
from auth_service.services.context import ServiceContext
from auth_service.services.id_tokens import id_token_for
from auth_service.services.revocation import deny_sessions, deny_sessions_eventually
from auth_service.services.scopes import IDENTITY_SCOPES

__all__ = [
    "RequestOrigin",
    "SessionView",
    "TokenGrant",
    "end_sessions_in",
    "list_sessions",
    "open_code_session",
    "open_session",
    "refresh",
]


@dataclass(frozen=True)
class RequestOrigin:
    """Where a request came from (IP, user agent), recorded on the session (truncated,
    never trusted)."""

    ip: str | None
    user_agent: str | None

    def clipped(self) -> RequestOrigin:
        """The origin cut to what the session columns hold."""
        return RequestOrigin(
            ip=self.ip[:64] if self.ip else None,
            user_agent=self.user_agent[:256] if self.user_agent else None,
        )


# The RFC 6750 token type of every access token issued here.
BEARER = "Bearer"


@dataclass(frozen=True, kw_only=True)
class TokenGrant:
    """RFC 6749 §5.1 successful token response: POST /token's body, field for field."""

    access_token: str
    token_type: str = BEARER
    expires_in: int
    refresh_token: str | None = None  # None for client_credentials (RFC 6749 §4.4.3)
    scope: str
    # Sessions of the OpenID Connect code flow also get an ID token.
    id_token: str | None = None

    def sealed_for(self, old_refresh_token: str) -> str:
        """This grant, readable only with the refresh token it replaced."""
        payload = json.dumps(
            {
                "access_token": self.access_token,
                "expires_in": self.expires_in,
                "scope": self.scope,
                "refresh_token": self.refresh_token,
                "id_token": self.id_token,
            }
        )
        return seal(payload.encode("utf-8"), old_refresh_token)

    @classmethod
    def unsealed(cls, sealed: str, old_refresh_token: str) -> TokenGrant | None:
        raw = open_sealed(sealed, old_refresh_token)
        return cls(token_type=BEARER, **json.loads(raw)) if raw is not None else None


@dataclass(frozen=True)
class SessionView:
    """One of the caller's open sessions as GET /sessions shows it; never any token."""

    id: str
    client_id: str
    scope: str
    created_at: datetime
    last_used_at: datetime
    last_ip: str | None
    user_agent: str | None
    expires_at: datetime
    current: bool


def _grant(
    ctx: ServiceContext,
    record: SessionRow,
    refresh_token: str,
    credential_version: int,
    scopes: frozenset[str] | None = None,
    *,
    id_token_alg: str | None = None,
    nonce: str | None = None,
    id_claims: Mapping[str, object] | None = None,
) -> TokenGrant:
    scopes = scopes if scopes is not None else frozenset(record.scope.split())
    # Every token of the session says how its login went, refreshed ones too.
    amr = tuple(record.amr.split()) if record.amr else AMR_PASSWORD
    issued = ctx.tokens.mint_access_token(
        subject=record.user_id,
        scopes=scopes,
        session_id=record.id,
        client_id=record.client_id,
        credential_version=credential_version,
        auth_time=record.auth_time or record.created_at,
        amr=amr,
        acr=acr_for(amr),
    )
    id_token = id_token_for(
        ctx,
        record,
        scopes=scopes,
        algorithm=id_token_alg,
        access_token=issued.token,
        nonce=nonce,
        claims=id_claims,
    )
    return TokenGrant(
        access_token=issued.token,
        token_type=BEARER,
        expires_in=issued.expires_in,
        scope=" ".join(sorted(scopes)),
        refresh_token=refresh_token,
        id_token=id_token,
    )


async def open_session(
    ctx: ServiceContext,
    user: UserRecord,
    *,
    scopes: frozenset[str],
    client_id: str,
    origin: RequestOrigin,
    amr: tuple[str, ...] = AMR_PASSWORD,
) -> TokenGrant:
    """Record a new session with its first refresh token; return the first token pair.

    `amr` says how the user authenticated just now (RFC 8176), recorded on the session.

    The session opens only if the user is still active at the credential version read with
    the password hash: a login in flight across a password change or disable gets
    InvalidGrant, in the same statement that would have opened it.
    """
    now = ctx.clock()
    policy = ctx.session_policy
    origin = origin.clipped()
    absolute = now + policy.absolute_lifetime
    record = SessionRow(
        id=new_token_id(),
        user_id=user.id,
        client_id=client_id,
        scope=" ".join(sorted(scopes)),
        created_at=now,
        last_used_at=now,
        last_ip=origin.ip,
        last_user_agent=origin.user_agent,
        idle_expires_at=min(now + policy.idle_timeout, absolute),
        absolute_expires_at=absolute,
        auth_time=now,
        amr=" ".join(amr),
    )
    refresh_token = new_refresh_token()
    opened = await ctx.db.sessions.open(
        record,
        token_hash=hash_refresh_token(refresh_token),
        credential_version=user.credential_version,
    )
    if not opened:
        ctx.audit.record("login", outcome="failure", user_id=user.id, reason="credentials_changed")
        raise InvalidGrant
    if not await _scopes_still_granted(ctx, user.id, scopes):
        # A set-scopes took one away after `user` was read; it may have missed this
        # session (not yet written), but this read, after the write, sees its commit.
        await revoke_session_ids(ctx, user.id, [record.id], reason="scopes_removed")
        ctx.audit.record(
            "login", outcome="failure", user_id=user.id, client_id=client_id, reason="scopes"
        )
        raise InvalidGrant("the user's scopes changed during the login")
    ctx.audit.record("login", user_id=user.id, client_id=client_id)
    return _grant(ctx, record, refresh_token, user.credential_version)


async def open_code_session(
    ctx: ServiceContext,
    record: SessionRow,
    *,
    credential_version: int,
    user_scopes: str,
    id_token_alg: str,
    nonce: str | None,
    id_claims: Mapping[str, object] | None = None,
) -> TokenGrant:
    """Open the session an authorization code was issued for (its id chosen with the code).

    One statement: it opens only while the user is active at `credential_version` and
    still holds exactly `user_scopes`, as read when the code was issued (a password
    change, disable or scope removal since then gets InvalidGrant).
    """
    refresh_token = new_refresh_token()
    opened = await ctx.db.sessions.open(
        record,
        token_hash=hash_refresh_token(refresh_token),
        credential_version=credential_version,
        expected_scopes=user_scopes,
    )
    if not opened:
        ctx.audit.record(
            "login", outcome="failure", user_id=record.user_id, reason="credentials_changed"
        )
        raise InvalidGrant("the user's account changed since the code was issued")
    ctx.audit.record("login", user_id=record.user_id, client_id=record.client_id)
    return _grant(
        ctx,
        record,
        refresh_token,
        credential_version,
        id_token_alg=id_token_alg,
        nonce=nonce,
        id_claims=id_claims,
    )


async def _scopes_still_granted(ctx: ServiceContext, user_id: str, scopes: frozenset[str]) -> bool:
    """Read after the session was written: does the user still hold every scope it got?"""
    current = await ctx.db.users.by_id(user_id)
    return current is not None and scopes <= frozenset(current.scopes.split())


def _check_family(
    ctx: ServiceContext, found: RefreshFamily | None, client_id: str
) -> RefreshFamily:
    """The presented token's family, if its session may still be refreshed by this client."""
    now = ctx.clock()
    if found is None:
        raise InvalidGrant("the refresh token is invalid")
    record = found.session
    if record.client_id != client_id:
        raise InvalidGrant("the refresh token was issued to another client")
    if record.revoked_at is not None or not found.user_active:
        raise InvalidGrant("the session has been revoked")
    if now >= record.idle_expires_at or now >= record.absolute_expires_at:
        raise InvalidGrant("the session has expired")
    return found


async def refresh(
    ctx: ServiceContext,
    refresh_token: str,
    *,
    requested_scopes: frozenset[str] | None,
    client_id: str,
    origin: RequestOrigin,
    id_token_alg: str | None = None,
) -> TokenGrant:
    """RFC 6749 §6 with rotation: a new access and refresh token, the old one spent; for
    a code-flow session with `openid` also a new ID token (same auth_time, `id_token_alg`).

    Two repository calls, each its own transaction: the read, then the rotation (one
    statement on PostgreSQL, one worker job on SQLite).
    """
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        raise InvalidGrant("the refresh token is invalid")
    token_hash = hash_refresh_token(refresh_token)
    family = _check_family(ctx, await ctx.db.sessions.find_family(token_hash), client_id)
    token_row, record = family.token, family.session
    if requested_scopes is not None and not requested_scopes <= set(record.scope.split()):
        raise InvalidScope("a refresh cannot widen the scope of the session")
    if token_row.used_at is None:
        # Scopes taken from the user since the login are not renewed (identity scopes are
        # not the user's to hold: they only say who the user is).
        scopes = (requested_scopes or frozenset(record.scope.split())) & (
            set(family.user_scopes.split()) | IDENTITY_SCOPES
        )
        now = ctx.clock()
        origin = origin.clipped()
        successor_token = new_refresh_token()
        grant = _grant(
            ctx,
            record,
            successor_token,
            family.user_credential_version,
            scopes,
            id_token_alg=id_token_alg,
        )
        won = await ctx.db.sessions.rotate(
            token_hash,
            now=now,
            sealed_successor=grant.sealed_for(refresh_token),
            successor_hash=hash_refresh_token(successor_token),
            session_id=record.id,
            idle_expires_at=min(now + ctx.session_policy.idle_timeout, record.absolute_expires_at),
            ip=origin.ip,
            user_agent=origin.user_agent,
        )
        if won:
            ctx.audit.record("refresh", user_id=record.user_id, client_id=client_id)
            return grant
        # Another request rotated this token first: this one is a repeat.
        family = _check_family(ctx, await ctx.db.sessions.find_family(token_hash), client_id)
    return await _repeat(ctx, family.token, family.session, refresh_token)


async def _repeat(
    ctx: ServiceContext, token_row: RefreshTokenRow, record: SessionRow, refresh_token: str
) -> TokenGrant:
    """A spent token again: the same successor within the grace window, else theft."""
    used_at = token_row.used_at
    assert used_at is not None
    within_grace = ctx.clock() - used_at <= ctx.session_policy.reuse_grace
    if (
        within_grace
        and ctx.session_policy.reuse_grace.total_seconds() > 0
        and (token_row.sealed_successor is not None)
    ):
        grant = TokenGrant.unsealed(token_row.sealed_successor, refresh_token)
        if grant is not None:
            ctx.audit.record(
                "refresh",
                outcome="repeat_within_grace",
                user_id=record.user_id,
                client_id=record.client_id,
            )
            return grant
    # SQL first, the truth: the family is dead even if the store is unreachable now, and
    # the store catches up (deny_sessions_eventually) before this process trusts it again.
    # Tried before the commit too, so that a mirror raised after it covers the entry
    # (stores/revocation.py, invariant 4); unreachable, it is only tried after.
    with contextlib.suppress(StoreUnavailable):
        await deny_sessions(ctx, [record.id])
    await ctx.db.sessions.mark_revoked([record.id], now=ctx.clock(), reason="refresh_token_reuse")
    await deny_sessions_eventually(ctx, [record.id])
    ctx.audit.record(
        "reuse_detected",
        outcome="session_revoked",
        user_id=record.user_id,
        client_id=record.client_id,
    )
    raise InvalidGrant("the refresh token was already used; the session has been revoked")


async def revoke_session_ids(
    ctx: ServiceContext,
    user_id: str,
    session_ids: list[str] | None,
    *,
    reason: str,
    keep: str | None = None,
) -> list[str]:
    """Revoke sessions (None means all the user's); return the ids revoked.

    The shared store is written before SQL: if it is unreachable the call fails with
    nothing half-done and the client can retry; if SQL then fails, the tokens are merely
    dead a little early.
    """
    ids = await ctx.db.sessions.matching_ids(user_id=user_id, only=session_ids, keep=keep)
    await deny_sessions(ctx, ids)
    await ctx.db.sessions.mark_revoked(ids, now=ctx.clock(), reason=reason)
    # again: survives a reseed that read SQL before the commit
    await deny_sessions(ctx, ids, committed=True)
    return ids


async def end_sessions_in(
    ctx: ServiceContext, tx: Repositories, user_id: str, *, reason: str, keep: str | None = None
) -> list[str]:
    """Inside the caller's transaction, which has already updated (so locked) the user's row:
    revoke every open session of the user but `keep`; return their ids.

    No session can open for the user until that transaction ends (open_session needs the
    credential version it changes), so the list is complete. The store is written before
    the caller's transaction commits: if it is unreachable the transaction rolls back whole
    and a retry is safe; if the commit then fails, the tokens are merely dead a little early.
    """
    ids = await tx.sessions.matching_ids(user_id=user_id, keep=keep)
    await deny_sessions(ctx, ids)
    await tx.sessions.mark_revoked(ids, now=ctx.clock(), reason=reason)
    return ids


async def list_sessions(ctx: ServiceContext, user_id: str, current: str) -> list[SessionView]:
    """The caller's open sessions, newest first."""
    records = await ctx.db.sessions.list_open(user_id, ctx.clock())
    return [
        SessionView(
            id=r.id,
            client_id=r.client_id,
            scope=r.scope,
            created_at=r.created_at,
            last_used_at=r.last_used_at,
            last_ip=r.last_ip,
            user_agent=r.last_user_agent,
            expires_at=min(r.idle_expires_at, r.absolute_expires_at),
            current=r.id == current,
        )
        for r in records
    ]
