"""Request and response bodies as they appear on the wire (and in openapi.json)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdminUserBody",
    "AdminUserPage",
    "ErrorBody",
    "HealthBody",
    "JWKSBody",
    "PasswordChangeBody",
    "RegisterBody",
    "RejectionBody",
    "SessionBody",
    "TokenBody",
    "UserBody",
]


class RegisterBody(BaseModel):
    """New account: the password rules are checked after parsing, with reasons returned."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256, examples=["alice"])
    password: str = Field(min_length=1, max_length=4096, examples=["correct horse battery staple"])


class UserBody(BaseModel):
    """A user as they may see themselves: never the hash."""

    id: str
    username: str
    created_at: datetime


class TokenBody(BaseModel):
    """RFC 6749 §5.1 successful token response."""

    access_token: str
    token_type: str = Field(examples=["Bearer"])
    expires_in: int
    refresh_token: str
    scope: str
    id_token: str | None = Field(
        default=None, description="OpenID Connect ID token (authorization_code with openid)"
    )


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
