"""The scopes this service grants, and how a requested scope string is checked."""

from __future__ import annotations

from auth_service.errors import InvalidScope

__all__ = ["DEFAULT_SCOPES", "PROFILE_SCOPE", "SUPPORTED_SCOPES", "parse_requested_scopes"]

PROFILE_SCOPE = "profile"
SUPPORTED_SCOPES: dict[str, str] = {PROFILE_SCOPE: "Read your own account (GET /users/me)"}
DEFAULT_SCOPES = frozenset({PROFILE_SCOPE})
_MAX_SCOPE_TOKENS = 32


def parse_requested_scopes(raw: str | None) -> frozenset[str]:
    """RFC 6749 §3.3: space-delimited; absent means the default; unknown ones are refused."""
    if raw is None:
        return DEFAULT_SCOPES
    requested = raw.split(" ")
    if len(requested) > _MAX_SCOPE_TOKENS or any(not s for s in requested):
        raise InvalidScope("scope must be a short list of scope names separated by single spaces")
    unknown = sorted(set(requested) - SUPPORTED_SCOPES.keys())
    if unknown:
        # Only names we publish in the metadata are echoed, never arbitrary input.
        raise InvalidScope("the requested scope is not supported")
    return frozenset(requested)
