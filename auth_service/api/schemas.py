"""Request and response bodies as they appear on the wire (and in openapi.json).

The token response and the session list are the services' own frozen dataclasses
(services/sessions.py: TokenGrant, SessionView), serialised as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

__all__ = [
    "BEARER_ERRORS",
    "AdminUserBody",
    "AdminUserPage",
    "EmailChangeBody",
    "ErrorBody",
    "HealthBody",
    "JWKSBody",
    "OAuthErrorBody",
    "PasswordBody",
    "PasswordChangeBody",
    "PasswordResetBody",
    "PasswordResetConfirmBody",
    "RecoveryCodesBody",
    "RegisterBody",
    "RejectionBody",
    "ResetAcceptedBody",
    "TotpCodeBody",
    "TotpEnrolmentBody",
    "UserBody",
]


class RegisterBody(BaseModel):
    """New account: the password rules are checked after parsing, with reasons returned."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256, examples=["alice"])
    password: str = Field(min_length=1, max_length=4096, examples=["correct horse battery staple"])
    email: str | None = Field(
        default=None,
        max_length=320,
        examples=["alice@example.com"],
        description="optional; stored unverified, a verification link is mailed",
    )


class UserBody(BaseModel):
    """A user as they may see themselves: never the hash."""

    id: str
    username: str
    created_at: datetime
    email: str | None = Field(default=None, description="the account's address, if any")
    email_verified: bool = Field(
        default=False, description="true once the mailed link was followed"
    )


class EmailChangeBody(BaseModel):
    """A new address, and the current password (re-authentication)."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=320, examples=["alice@example.com"])
    password: str = Field(min_length=1, max_length=4096)


class PasswordResetBody(BaseModel):
    """Exactly one of a (verified) email address or a username."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["email"]}, {"required": ["username"]}]},
    )

    # Strings only in the schema: a null is refused like an absent-but-named key would be.
    email: Annotated[
        str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 320})
    ] = Field(default=None, min_length=1, max_length=320)
    username: Annotated[
        str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 256})
    ] = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _exactly_one(self) -> PasswordResetBody:
        # By key, as the schema's oneOf: {"email": ..., "username": null} names both.
        named = self.model_fields_set
        if len(named) != 1 or getattr(self, next(iter(named))) is None:
            raise ValueError("give exactly one of email or username")
        return self


class ResetAcceptedBody(BaseModel):
    """The one answer to every reset request, known account or not."""

    status: str = Field(examples=["accepted"])
    detail: str


class PasswordResetConfirmBody(BaseModel):
    """The token from the mailed link and the new password."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=1, max_length=4096)


class PasswordChangeBody(BaseModel):
    """The current password (re-authentication) and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=4096)
    new_password: str = Field(min_length=1, max_length=4096)


class ErrorBody(BaseModel):
    """RFC 6749 §5.2 / RFC 6750 §3 error; `error` is a stable machine-readable code."""

    error: str
    error_description: str


# The error answers of every bearer-protected route (RFC 6750 §3.1), for the OpenAPI schema.
BEARER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid, expired or revoked token (RFC 6750)"},
    403: {"model": ErrorBody, "description": "insufficient_scope"},
    503: {"model": ErrorBody, "description": "revocation state unreachable (fails closed)"},
}


class OAuthErrorBody(ErrorBody):
    """A token endpoint error; `mfa_required` also carries the token for the second step."""

    mfa_token: str | None = Field(
        default=None, description="with error=mfa_required: valid 5 minutes, once"
    )


class PasswordBody(BaseModel):
    """Recent authentication: the account's password, entered again."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=4096)


class TotpEnrolmentBody(BaseModel):
    """A pending TOTP factor: add it to an app, then confirm it with a code."""

    secret: str = Field(description="base32 seed (RFC 6238, SHA-1, 6 digits, 30 s)")
    otpauth_uri: str = Field(description="otpauth://totp/... Key URI, as in the QR code")
    qr_svg: str = Field(description="the otpauth URI as an SVG QR code")


class TotpCodeBody(BaseModel):
    """A code from the authenticator app."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, examples=["123456"])


class RecoveryCodesBody(BaseModel):
    """Single-use recovery codes, shown this once (only their hashes are kept)."""

    recovery_codes: list[str]


class RejectionBody(ErrorBody):
    """A rejected registration, with every reason."""

    reasons: list[str]


class JWKSBody(BaseModel):
    """RFC 7517 JSON Web Key Set (public members only)."""

    keys: list[dict[str, str]]


class HealthBody(BaseModel):
    """Liveness or readiness, with the state of each dependency."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class AdminUserBody(BaseModel):
    """An account as administrators see it: never the hash."""

    id: str
    username: str
    active: bool
    scopes: list[str]
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = Field(description="when it was disabled, if it is")
    open_sessions: int | None = Field(
        default=None, description="sessions that can still be refreshed (single user only)"
    )


class AdminUserPage(BaseModel):
    """One page of users by canonical name; `next` is the `after` of the following page."""

    users: list[AdminUserBody]
    next: str | None = Field(description="pass as `after` for the next page; null on the last")
