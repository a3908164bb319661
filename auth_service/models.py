"""The tables (the durable source of truth), for Alembic and the repositories' statements.

Nothing outside repositories/ and the migrations uses them: services read frozen rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from auth_service.db.base import Base

__all__ = [
    "OAuthClient",
    "RefreshToken",
    "RevokedAccessToken",
    "ServiceSecret",
    "Session",
    "User",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _new_user_id() -> str:
    return str(uuid.uuid4())


class User(Base):
    """A registered account; `id` is the stable `sub` of its tokens."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_user_id)
    username: Mapped[str] = mapped_column(String(64))
    username_canonical: Mapped[str] = mapped_column(String(256), unique=True)
    # UTS #39 skeleton: names that look alike collide here. NULL only for accounts made
    # before it existed whose skeleton an older account already held (migration 0004).
    # Up to 7 characters per name character (a Hangul syllable): 64 x 7 fits.
    username_skeleton: Mapped[str | None] = mapped_column(String(512), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the user was disabled: the reseed restores recent disables from it.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Bumped by a password change and by a disable, in the same transaction. A session opens
    # only while the version read at authentication time is current; access tokens carry it
    # (`cred_ver`) and a disable denylists every version below the new one.
    credential_version: Mapped[int] = mapped_column(Integer, default=0)
    # Space-separated scopes this user may be granted.
    scopes: Mapped[str] = mapped_column(String(1024), default="profile")


class Session(Base):
    """A login session (refresh-token family): its `id` is the `sid` of its access tokens."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_ip: Mapped[str | None] = mapped_column(String(64))
    last_user_agent: Mapped[str | None] = mapped_column(String(256))
    idle_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    absolute_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    """One issued refresh token, known only by its SHA-256: the token itself is never stored.

    `used_at` is set exactly once (compare-and-set) when the token is rotated; the sealed
    successor lets a retry within the grace window get the same pair back, and only the
    holder of this token can open it.
    """

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sealed_successor: Mapped[str | None] = mapped_column(Text)


class RevokedAccessToken(Base):
    """A single access token revoked through /revoke, kept until it would have expired."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OAuthClient(Base):
    """A registered OAuth client; a confidential one has a secret, stored only hashed."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(128))
    confidential: Mapped[bool] = mapped_column(Boolean)
    grant_types: Mapped[str] = mapped_column(String(256))
    scopes: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # May call /introspect (RFC 7662); only a confidential client can hold it.
    introspection: Mapped[bool] = mapped_column(Boolean)
    # Space-separated, each registered exactly (URIs hold no spaces, RFC 3986).
    redirect_uris: Mapped[str] = mapped_column(Text)
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text)
    # Skips the consent page (and may use the password grant).
    first_party: Mapped[bool] = mapped_column(Boolean)
    # An authorization request without a PKCE challenge is refused; always true when public.
    require_pkce: Mapped[bool] = mapped_column(Boolean)
    id_token_alg: Mapped[str] = mapped_column(String(8))
    # The public keys of a private_key_jwt client, a JWKS as JSON; NULL for the others.
    jwks: Mapped[str | None] = mapped_column(Text)


class ServiceSecret(Base):
    """A random secret made once by whichever replica needs it first, shared by all."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
