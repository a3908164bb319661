"""private_key_jwt client authentication (RFC 7523 §2.2, OpenID Connect Core §9).

The client signs a short-lived JWT with a key it registered: `iss` = `sub` = its client
id, `aud` exactly this issuer (a single string: rfc7523bis, the remedy for
CVE-2025-27370/27371; the token endpoint URL is not accepted), `exp` at most
MAX_LIFETIME_SECONDS ahead, and a `jti` used once (remembered in the shared revocation
store until the assertion expires). Only RS256 and ES256, each pinned to the keys
registered for it. Every failure is the same `invalid_client`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

from auth_service.errors import InvalidClient
from auth_service.repositories import ClientRow
from auth_service.services.context import ServiceContext

__all__ = ["JWT_BEARER", "MAX_LIFETIME_SECONDS", "verify_client_assertion"]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME_SECONDS = 300
_MAX_LENGTH = 8192
_MAX_JTI = 256
_ALGORITHMS = frozenset({"RS256", "ES256"})
_OPTIONS = {
    "verify_aud": False,  # checked below: exactly one string, the issuer
    "verify_iss": False,
    "verify_sub": False,
    "verify_exp": False,  # checked below against the injectable clock
    "verify_nbf": False,
    "verify_iat": False,
    "verify_jti": False,
    "verify_at_hash": False,
}
_FAILED = "the client assertion is not valid"


def _unverified(assertion: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    if len(assertion) > _MAX_LENGTH or assertion.count(".") != 2:
        raise InvalidClient(_FAILED)
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.get_unverified_claims(assertion)
    except (JOSEError, ValueError, TypeError) as exc:
        raise InvalidClient(_FAILED) from exc
    if not isinstance(header, Mapping) or not isinstance(claims, Mapping):
        raise InvalidClient(_FAILED)
    return header, claims


def _keys_for(row: ClientRow, header: Mapping[str, Any]) -> list[dict[str, Any]]:
    alg = header.get("alg")
    if alg not in _ALGORITHMS or "crit" in header or row.jwks is None:
        raise InvalidClient(_FAILED)
    kid = header.get("kid")
    keys: list[dict[str, Any]] = json.loads(row.jwks)["keys"]
    return [key for key in keys if key["alg"] == alg and (kid is None or key["kid"] == kid)]


def _check_claims(ctx: ServiceContext, claims: Mapping[str, Any], client_id: str) -> int:
    """The seconds the assertion stays valid, once its claims pass."""
    now = int(ctx.clock().timestamp())
    leeway = int(ctx.tokens.leeway.total_seconds())
    exp = claims.get("exp")
    if (
        claims.get("iss") != client_id
        or claims.get("sub") != client_id
        or claims.get("aud") != ctx.tokens.issuer  # a string, byte-identical; no arrays
        or type(exp) is not int
        or exp <= now - leeway
        or exp > now + MAX_LIFETIME_SECONDS + leeway
    ):
        raise InvalidClient(_FAILED)
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (type(value) is not int or value > now + leeway):
            raise InvalidClient(_FAILED)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
        raise InvalidClient(_FAILED)
    return exp - now + leeway


async def verify_client_assertion(
    ctx: ServiceContext, assertion: str, claimed_client_id: str | None
) -> ClientRow:
    """The registered client that signed `assertion`, or InvalidClient."""
    header, unverified = _unverified(assertion)
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or not client_id or len(client_id) > 128:
        raise InvalidClient(_FAILED)
    if claimed_client_id is not None and claimed_client_id != client_id:
        raise InvalidClient(_FAILED)
    row = await ctx.db.clients.get(client_id)
    if row is None or row.disabled_at is not None:
        raise InvalidClient(_FAILED)
    claims: Mapping[str, Any] | None = None
    for key in _keys_for(row, header):
        try:
            claims = jwt.decode(assertion, key, algorithms=[key["alg"]], options=_OPTIONS)
            break
        except (JOSEError, ValueError, TypeError):
            continue
    if claims is None:
        raise InvalidClient(_FAILED)
    ttl = _check_claims(ctx, claims, client_id)
    if not await ctx.revocations.use_once(f"client_assertion:{client_id}:{claims['jti']}", ttl):
        raise InvalidClient("the client assertion was already used")
    return row
