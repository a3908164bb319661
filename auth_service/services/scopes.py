"""The scopes this service grants, and how a requested scope string is checked."""

from __future__ import annotations

from collections.abc import Iterable

from auth_service.errors import InvalidScope

__all__ = [
    "ADMIN_SCOPE",
    "DEFAULT_SCOPES",
    "EMAIL_SCOPE",
    "IDENTITY_SCOPES",
    "OPENID_SCOPE",
    "PROFILE_SCOPE",
    "SUPPORTED_SCOPES",
    "grantable_scopes",
    "parse_requested_scopes",
]

PROFILE_SCOPE = "profile"
ADMIN_SCOPE = "admin"
OPENID_SCOPE = "openid"
EMAIL_SCOPE = "email"
SUPPORTED_SCOPES: dict[str, str] = {
    PROFILE_SCOPE: "Read your own account and sessions",
    ADMIN_SCOPE: "Administer users (only for users granted it)",
    OPENID_SCOPE: "Sign you in with your account (OpenID Connect)",
    EMAIL_SCOPE: "Read your email address",
}
# Scopes that only say who the user is: any user may release them to a client they sign in
# to (the consent page asks for third parties); the others need the user's own grant.
IDENTITY_SCOPES = frozenset({OPENID_SCOPE, EMAIL_SCOPE})
DEFAULT_SCOPES = frozenset({PROFILE_SCOPE})
_MAX_SCOPE_TOKENS = 32


def parse_requested_scopes(raw: str | None) -> frozenset[str] | None:
    """RFC 6749 §3.3: space-delimited names we publish; None when the request names none."""
    if raw is None:
        return None
    requested = raw.split(" ")
    if len(requested) > _MAX_SCOPE_TOKENS or any(not s for s in requested):
        raise InvalidScope("scope must be a short list of scope names separated by single spaces")
    if set(requested) - SUPPORTED_SCOPES.keys():
        # Only names we publish in the metadata are echoed, never arbitrary input.
        raise InvalidScope("the requested scope is not supported")
    return frozenset(requested)


def grantable_scopes(requested: frozenset[str] | None, *allowed: Iterable[str]) -> frozenset[str]:
    """The requested scopes if every one is allowed (by the user and the client), else
    InvalidScope; with no request, the defaults that are allowed."""
    permitted = frozenset(SUPPORTED_SCOPES)
    for scopes in allowed:
        permitted &= frozenset(scopes)
    if requested is None:
        return DEFAULT_SCOPES & permitted
    if not requested <= permitted:
        raise InvalidScope("the requested scope is not granted to this user or client")
    return requested
