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
    "AuthorizationCode",
    "AuthorizationRequest",
    "BrowserSession",
    "Consent",
    "EmailToken",
    "MailOutbox",
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
    absolute_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    # Opened by the authorization-code flow: the browser (SSO) session it came from, whose
    # end ends this session too, and the authentication its ID tokens keep restating.
    browser_session_id: Mapped[str | None] = mapped_column(String(32), index=True)
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    amr: Mapped[str | None] = mapped_column(String(64))
    acr: Mapped[str | None] = mapped_column(String(64))


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
    # The `sid` of its client_credentials tokens: replaced (and the old one revoked) when
    # its credentials change or it is disabled or removed.
    token_epoch: Mapped[str] = mapped_column(String(32))
    # Set while disabled: it cannot authenticate and its tokens are revoked.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevokedClientEpoch(Base):
    """A client's former token epoch: its client_credentials tokens are revoked (the durable
    record a flushed denylist is rebuilt from, as `sessions.revoked_at` is for sessions)."""

    __tablename__ = "revoked_client_epochs"

    epoch: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ServiceSecret(Base):
    """A random secret made once by whichever replica needs it first, shared by all."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class RevocationGeneration(Base):
    """One row: how many revocations SQL has recorded, bumped by triggers in the same
    transaction as each one; Redis mirrors it, so a Redis that lost recent writes in a
    failover is seen behind and reseeded (services/revocation.py, check_generation)."""

    __tablename__ = "revocation_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class BrowserSession(Base):
    """A browser's single sign-on session: its cookie is random and stored only as SHA-256;
    `id` is the `sid` of the ID tokens issued through it."""

    __tablename__ = "browser_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # When the user last entered credentials in this browser (the ID token's auth_time).
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    amr: Mapped[str] = mapped_column(String(64))  # RFC 8176 values, space-separated
    acr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthorizationRequest(Base):
    """A validated authorization request waiting for a login or a consent (server side,
    so no return URL ever travels through the pages)."""

    __tablename__ = "authorization_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    parameters: Mapped[str] = mapped_column(Text)  # JSON of the validated request
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AuthorizationCode(Base):
    """An authorization code, known only by its SHA-256, spent once by compare-and-set.

    `session_id` is the session its exchange opens, chosen when the code is issued: a
    replayed code revokes exactly that session (RFC 6749 §4.1.2).
    """

    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(1024))
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The user's state when the code was issued: the exchange opens its session only
    # while both are unchanged (a password change, disable or scope removal since stops it).
    credential_version: Mapped[int] = mapped_column(Integer)
    user_scopes: Mapped[str] = mapped_column(String(1024))
    browser_session_id: Mapped[str] = mapped_column(String(32))
    session_id: Mapped[str] = mapped_column(String(32))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    amr: Mapped[str] = mapped_column(String(64))
    acr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Read with the browser session at issue, for the ID token of scope `email`.
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default=false())


class Consent(Base):
    """What a user allowed a third-party client, remembered per (user, client)."""

    __tablename__ = "consents"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    scopes: Mapped[str] = mapped_column(String(1024))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())


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
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
