"""Request and response bodies as they appear on the wire (and in openapi.json)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AdminUserBody",
    "AdminUserPage",
    "EmailChangeBody",
    "ErrorBody",
    "HealthBody",
    "JWKSBody",
    "PasswordChangeBody",
    "PasswordResetBody",
    "PasswordResetConfirmBody",
    "RegisterBody",
    "RejectionBody",
    "ResetAcceptedBody",
    "SessionBody",
    "TokenBody",
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

    email: str | None = Field(default=None, min_length=1, max_length=320)
    username: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _exactly_one(self) -> PasswordResetBody:
        if (self.email is None) == (self.username is None):
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


class TokenBody(BaseModel):
    """RFC 6749 §5.1 successful token response."""

    access_token: str
    token_type: str = Field(examples=["Bearer"])
    expires_in: int
    refresh_token: str
    scope: str


class PasswordChangeBody(BaseModel):
    """The current password (re-authentication) and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=4096)
    new_password: str = Field(min_length=1, max_length=4096)


class SessionBody(BaseModel):
    """One of the caller's open sessions; never any token."""

    id: str
    client_id: str
    scope: str
    created_at: datetime
    last_used_at: datetime
    last_ip: str | None
    user_agent: str | None
    expires_at: datetime
    current: bool


class ErrorBody(BaseModel):
    """RFC 6749 §5.2 / RFC 6750 §3 error; `error` is a stable machine-readable code."""

    error: str
    error_description: str


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
