"""The tables (the durable source of truth), for Alembic and the repositories' statements.

Nothing outside repositories/ and the migrations uses them: services read frozen rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from auth_service.db.base import Base

__all__ = [
    "MfaToken",
    "OAuthClient",
    "RecoveryCode",
    "RefreshToken",
    "RevokedAccessToken",
    "ServiceSecret",
    "Session",
    "TotpFactor",
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
    # Set when the owner deleted the account: the row is kept, emptied of personal data,
    # disabled and holding its name, until AUTH_DELETED_USERNAME_HOLD_SECONDS have passed.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


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
    # How the user authenticated when the session opened (RFC 8176 values, space-separated)
    # and when: every access token of the session carries them (RFC 9068 §2.2.1).
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    amr: Mapped[str | None] = mapped_column(String(64))


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


class ServiceSecret(Base):
    """A random secret made once by whichever replica needs it first, shared by all."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class TotpFactor(Base):
    """A user's TOTP seed, encrypted (security/data_keys.py); pending until confirmed.

    `last_used_step` is the RFC 6238 time step of the last accepted code: a code is
    accepted only for a later step, set by compare-and-set, so each code works once.
    """

    __tablename__ = "mfa_totp_factors"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(String(32))
    secret_ciphertext: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One single-use recovery code, known only by its SHA-256 (with the owner's id)."""

    __tablename__ = "mfa_recovery_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MfaToken(Base):
    """The password step of a login of a user with a second factor, waiting for it.

    Known by its SHA-256 only; bound to the user, the client, the requested scope and the
    credential version read with the password; claimed once (`used_at`) by the second step.
    """

    __tablename__ = "mfa_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str | None] = mapped_column(String(1024))
    credential_version: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
