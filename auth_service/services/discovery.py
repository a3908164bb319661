"""RFC 8414 authorization server metadata, derived from the issuer and what we support."""

from __future__ import annotations

from typing import Any

from auth_service.services.grants import SUPPORTED_GRANT_TYPES
from auth_service.services.scopes import SUPPORTED_SCOPES

__all__ = ["server_metadata"]

_CLIENT_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
_AUTH_METHODS = ["none", *_CLIENT_METHODS]
# private_key_jwt assertions (RFC 8414 §2: required once private_key_jwt is listed).
_ASSERTION_ALGS = ["ES256", "RS256"]


def server_metadata(*, issuer: str) -> dict[str, Any]:
    """The metadata document; `issuer` equals the `iss` of every token we sign."""
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(SUPPORTED_GRANT_TYPES),
        # No authorization endpoint: the password grant needs none (RFC 8414 §2 still
        # requires the member, so it is present and empty).
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": _ASSERTION_ALGS,
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": _AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": _ASSERTION_ALGS,
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": _CLIENT_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": _ASSERTION_ALGS,
        "scopes_supported": sorted(SUPPORTED_SCOPES),
        "service_documentation": f"{issuer}/docs",
    }
