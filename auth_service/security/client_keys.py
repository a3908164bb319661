"""A private_key_jwt client's registered public keys: checked once, stored as a JWKS.

Only what the assertion check accepts is registered: RSA keys of >= 2048 bits (RS256) and
EC keys on P-256 (ES256), public members only, each with a `kid` (its RFC 7638
thumbprint when the file named none) and an `alg` pinned to its type, so an assertion can
never choose an algorithm its key was not registered for.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_service.security.keys import jwk_thumbprint

__all__ = ["ClientKeyError", "jwks_from_json", "jwks_from_pem", "key_algorithm"]

_RSA_MIN_BITS = 2048
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ALGORITHM = {"RSA": "RS256", "EC": "ES256"}
_MAX_KEYS = 10


class ClientKeyError(ValueError):
    """A client key file that cannot be registered (and why)."""


def _b64(number: int, length: int | None = None) -> str:
    raw = number.to_bytes(length or max(1, (number.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64_int(value: object) -> int:
    if not isinstance(value, str) or not value:
        raise ClientKeyError("a key member is missing or not a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError as exc:
        raise ClientKeyError("a key member is not base64url") from exc
    return int.from_bytes(raw, "big")


def key_algorithm(jwk: dict[str, Any]) -> str:
    """The one algorithm a registered key verifies."""
    return _ALGORITHM[jwk["kty"]]


def _checked(jwk: object) -> dict[str, str]:
    if not isinstance(jwk, dict):
        raise ClientKeyError("each key must be a JSON object")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise ClientKeyError("the file holds private key material: register the public key only")
    kty = jwk.get("kty")
    if kty == "RSA":
        n = _b64_int(jwk.get("n"))
        if n.bit_length() < _RSA_MIN_BITS:
            raise ClientKeyError(f"RSA keys must have >= {_RSA_MIN_BITS} bits")
        public: dict[str, str] = {"kty": "RSA", "n": _b64(n), "e": _b64(_b64_int(jwk.get("e")))}
    elif kty == "EC":
        if jwk.get("crv") != "P-256":
            raise ClientKeyError("EC keys must be on curve P-256 (ES256)")
        x, y = _b64_int(jwk.get("x")), _b64_int(jwk.get("y"))
        try:
            ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except ValueError as exc:
            raise ClientKeyError("the EC point is not on P-256") from exc
        public = {"kty": "EC", "crv": "P-256", "x": _b64(x, 32), "y": _b64(y, 32)}
    else:
        raise ClientKeyError("only RSA (RS256) and EC P-256 (ES256) keys are accepted")
    alg = jwk.get("alg", _ALGORITHM[kty])
    if alg != _ALGORITHM[kty]:
        raise ClientKeyError(f"a {kty} key can only be registered for {_ALGORITHM[kty]}")
    if jwk.get("use", "sig") != "sig":
        raise ClientKeyError("client keys must be signature keys (use: sig)")
    kid = jwk.get("kid") or jwk_thumbprint(public)
    if not isinstance(kid, str):
        raise ClientKeyError("a kid must be a string")
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


def jwks_from_json(text: str) -> str:
    """Check a JWKS (or a single JWK) and return the JWKS to store, as JSON."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ClientKeyError("the JWKS file is not JSON") from exc
    keys = document.get("keys", [document]) if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > _MAX_KEYS:
        raise ClientKeyError(f"a JWKS needs 1 to {_MAX_KEYS} keys")
    checked = [_checked(key) for key in keys]
    kids = [key["kid"] for key in checked]
    if len(set(kids)) != len(kids):
        raise ClientKeyError("two keys share a kid")
    return json.dumps({"keys": checked}, separators=(",", ":"), sort_keys=True)


def jwks_from_pem(pem: bytes) -> str:
    """Turn a PEM public key (SubjectPublicKeyInfo) into the JWKS to store."""
    if b"PRIVATE KEY" in pem:
        raise ClientKeyError("the file holds a private key: register the public key only")
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ClientKeyError("not a PEM public key") from exc
    jwk: dict[str, str]
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk = {"kty": "RSA", "n": _b64(numbers.n), "e": _b64(numbers.e)}
    elif isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise ClientKeyError("EC keys must be on curve P-256 (ES256)")
        numbers_ec = public.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers_ec.x, 32),
            "y": _b64(numbers_ec.y, 32),
        }
    else:
        raise ClientKeyError("only RSA (RS256) and EC P-256 (ES256) keys are accepted")
    return jwks_from_json(json.dumps(jwk))
