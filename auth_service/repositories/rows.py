"""The frozen rows the repositories return: what services read, never ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AdminUserRow",
    "ClientRow",
    "EmailTokenRow",
    "OutboxRow",
    "ProfileRow",
    "RecentRevocations",
    "RefreshFamily",
    "RefreshTokenRow",
    "SessionRow",
    "UserEmail",
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


@dataclass(frozen=True)
class RecentRevocations:
    """What the denylist must hold, read from SQL (the durable truth)."""

    sessions: list[tuple[str, datetime]]  # (session id, revoked at)
    tokens: list[tuple[str, datetime]]  # (jti, expires at)
    users: list[tuple[str, int, datetime]]  # (user id, credential version, disabled at)
