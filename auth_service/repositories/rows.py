"""The frozen rows the repositories return: what services read, never ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AdminUserRow",
    "AuthorizationCodeRow",
    "BrowserSessionFound",
    "BrowserSessionRow",
    "ClientRow",
    "EmailTokenRow",
    "MfaTokenRow",
    "OutboxRow",
    "PendingRequestRow",
    "ProfileRow",
    "RecentRevocations",
    "RefreshFamily",
    "RefreshTokenRow",
    "SessionRow",
    "TotpFactorRow",
    "UserEmail",
    "UserInfoRow",
    "UserRecord",
]


@dataclass(frozen=True)
class UserRecord:
    """A user as the services read it."""

    id: str
    username: str
    password_hash: str
    is_active: bool
    scopes: str
    # As read with the hash: a session opens only while it is still current.
    credential_version: int
    # A confirmed TOTP factor: a password alone opens no session.
    has_second_factor: bool = False


@dataclass(frozen=True)
class ProfileRow:
    """What a user may see of their own account."""

    id: str
    username: str
    created_at: datetime
    email: str | None = None
    email_verified: bool = False


@dataclass(frozen=True)
class UserEmail:
    """A user's address and what a mail about it needs (never the hash)."""

    id: str
    username: str
    is_active: bool
    credential_version: int
    email: str | None
    email_canonical: str | None
    email_verified: bool


@dataclass(frozen=True)
class EmailTokenRow:
    """A link token (verification or reset), known by its SHA-256 only."""

    token_hash: str
    purpose: str
    user_id: str
    email_canonical: str | None
    credential_version: int
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class OutboxRow:
    """A mail intent in the outbox: a kind, who it concerns, and its parameters (JSON)."""

    id: str
    kind: str
    user_id: str | None
    recipient: str | None
    params: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None = None
    claim: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class AdminUserRow:
    """Everything an administrator may see of an account (never the hash)."""

    id: str
    username: str
    canonical_name: str
    is_active: bool
    scopes: str
    created_at: datetime
    updated_at: datetime
    tokens_valid_after: datetime | None
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class SessionRow:
    """A session (the `sid` of its access tokens), as stored."""

    id: str
    user_id: str
    client_id: str
    scope: str
    created_at: datetime
    last_used_at: datetime
    last_ip: str | None
    last_user_agent: str | None
    idle_expires_at: datetime
    absolute_expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    # Sessions of the authorization-code flow: their browser session. When and how (RFC
    # 8176 values, space-separated) the user authenticated; None in sessions opened before
    # they were recorded (then: created_at, "pwd").
    browser_session_id: str | None = None
    auth_time: datetime | None = None
    amr: str | None = None
    acr: str | None = None


@dataclass(frozen=True)
class RefreshTokenRow:
    """An issued refresh token, known by its hash."""

    token_hash: str
    session_id: str
    issued_at: datetime
    used_at: datetime | None
    sealed_successor: str | None


@dataclass(frozen=True)
class RefreshFamily:
    """A refresh token, its session, and the state of the session's user."""

    token: RefreshTokenRow
    session: SessionRow
    username: str
    user_active: bool
    user_scopes: str
    user_credential_version: int


@dataclass(frozen=True)
class ClientRow:
    """A registered OAuth client; a confidential one has a secret, stored only hashed."""

    client_id: str
    secret_hash: str | None
    confidential: bool
    grant_types: str
    scopes: str
    created_at: datetime
    introspection: bool
    # Space-separated URIs, each matched exactly (services/redirect_uris.py).
    redirect_uris: str = ""
    post_logout_redirect_uris: str = ""
    first_party: bool = False
    require_pkce: bool = True
    id_token_alg: str = "RS256"  # noqa: S105 - an algorithm name, not a secret
    # A private_key_jwt client's public keys (a JWKS, as JSON); None for the others.
    jwks: str | None = None
    # The `sid` of its client_credentials tokens; a new one revokes them all.
    token_epoch: str = ""
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class RecentRevocations:
    """What the denylist must hold, read from SQL (the durable truth)."""

    sessions: list[tuple[str, datetime]]  # (session id, revoked at)
    tokens: list[tuple[str, datetime]]  # (jti, expires at)
    users: list[tuple[str, int, datetime]]  # (user id, credential version, disabled at)


@dataclass(frozen=True)
class BrowserSessionRow:
    """A browser's SSO session as stored (the cookie itself never is, only its hash)."""

    id: str
    token_hash: str
    user_id: str
    auth_time: datetime
    amr: str
    acr: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class BrowserSessionFound:
    """A browser session with its user's state and what the user allowed one client."""

    session: BrowserSessionRow
    username: str
    user_active: bool
    user_scopes: str
    user_credential_version: int
    consented_scopes: str | None
    email: str | None = None
    email_verified: bool = False


@dataclass(frozen=True)
class PendingRequestRow:
    """An authorization request waiting for the browser's login or consent."""

    id: str
    client_id: str
    parameters: str  # JSON
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class AuthorizationCodeRow:
    """An authorization code (by hash) and everything its exchange is bound to."""

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    user_id: str
    credential_version: int
    user_scopes: str
    browser_session_id: str
    session_id: str
    auth_time: datetime
    amr: str
    acr: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    # The user's address at issue, only when the scope has `email` (OIDC Core §5.4).
    email: str | None = None
    email_verified: bool = False


@dataclass(frozen=True)
class UserInfoRow:
    """What the UserInfo endpoint and ID tokens may release about an active user."""

    id: str
    username: str
    updated_at: datetime
    email: str | None = None
    email_verified: bool = False


@dataclass(frozen=True)
class TotpFactorRow:
    """A user's TOTP factor: the sealed seed, whether confirmed, the last step accepted."""

    user_id: str
    key_id: str
    secret_ciphertext: str
    created_at: datetime
    confirmed_at: datetime | None
    last_used_step: int | None


@dataclass(frozen=True)
class MfaTokenRow:
    """What a password step bound its MFA token to."""

    user_id: str
    client_id: str
    scope: str | None
    credential_version: int
