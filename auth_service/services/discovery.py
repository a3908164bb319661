"""Discovery: RFC 8414 authorization server metadata and OpenID Connect Discovery 1.0 §3,
derived from the issuer and what we support, consistent with each other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auth_service.services.grants import SUPPORTED_GRANT_TYPES
from auth_service.services.scopes import SUPPORTED_SCOPES

__all__ = ["SUPPORTED_CLAIMS", "openid_configuration", "server_metadata"]

_SECRET_METHODS = ["client_secret_basic", "client_secret_post"]
_AUTH_METHODS = ["none", *_SECRET_METHODS]
SUPPORTED_CLAIMS = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "preferred_username",
    "updated_at",
    "email",
    "email_verified",
]


def server_metadata(*, issuer: str) -> dict[str, Any]:
    """The RFC 8414 document; `issuer` equals the `iss` of every token we sign."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(SUPPORTED_GRANT_TYPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": _AUTH_METHODS,
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": _SECRET_METHODS,
        "scopes_supported": sorted(SUPPORTED_SCOPES),
        "service_documentation": f"{issuer}/docs",
    }


def openid_configuration(*, issuer: str, id_token_algorithms: Sequence[str]) -> dict[str, Any]:
    """The OpenID Provider metadata: every REQUIRED member and the RECOMMENDED ones, and
    the defaults that would be wrong here said explicitly (request_uri_parameter_supported
    defaults to true)."""
    return {
        **server_metadata(issuer=issuer),
        "userinfo_endpoint": f"{issuer}/userinfo",
        "end_session_endpoint": f"{issuer}/end_session",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(id_token_algorithms),
        "claims_supported": SUPPORTED_CLAIMS,
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }
