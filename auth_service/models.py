"""The tables (the durable source of truth), for Alembic and the repositories' statements.

Nothing outside repositories/ and the migrations uses them: services read frozen rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from auth_service.db.base import Base

__all__ = [
    "EmailToken",
    "MailOutbox",
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
    # The address as given (mail goes there) and its canonical form (security/emails.py),
    # unique among verified addresses only: an unverified one squats nothing.
    email: Mapped[str | None] = mapped_column(String(320))
    email_canonical: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default=false())
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "uq_users_verified_email",
            "email_canonical",
            unique=True,
            postgresql_where=text("email_verified"),
            sqlite_where=text("email_verified"),
        ),
    )


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


class ServiceSecret(Base):
    """A random secret made once by whichever replica needs it first, shared by all."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class EmailToken(Base):
    """A link token (email verification, password reset), known only by its SHA-256.

    Single use: `used_at` is set once by compare-and-set. A reset token is bound to the
    credential version it was issued at, so any password change voids it; a verification
    token to the address it was sent to, so a change of address voids it.
    """

    __tablename__ = "email_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email_canonical: Mapped[str | None] = mapped_column(String(320))
    credential_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MailOutbox(Base):
    """A mail to send, written in the transaction of the change it reports.

    A row is an intent (`kind` with its `params`), rendered by the worker when it sends:
    a link's token is made then, so no usable token is ever at rest. Workers claim rows
    with a lease; a sent row is deleted.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(36))
    recipient: Mapped[str | None] = mapped_column(String(320))
    params: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(256))
