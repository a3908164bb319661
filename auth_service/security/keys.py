"""Signing keys: load a PEM (or generate one for development), name it, publish it as JWKS.

The `kid` is the RFC 7638 thumbprint of the public key, so it is stable across restarts
and replicas without coordination. Key objects are built once: python-jose re-parses a
PEM string on every sign, which costs milliseconds.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk
from jose.backends.base import Key

__all__ = [
    "KeyConfigurationError",
    "SigningKey",
    "generate_private_key_pem",
    "jwk_thumbprint",
    "jwks_document",
    "load_or_create_development_key",
    "load_signing_key",
    "write_private_file",
]

log = logging.getLogger(__name__)

_RSA_MIN_BITS = 2048
# RFC 7638 §3.2: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class KeyConfigurationError(ValueError):
    """A key file is missing, unreadable, or does not fit the configured algorithm."""


@dataclass(frozen=True)
class SigningKey:
    """A private key ready to sign, with its public half as key object and as JWK."""

    kid: str
    algorithm: str
    private_key: Key = field(repr=False)
    public_key: Key = field(repr=False)
    public_jwk: dict[str, str]


def generate_private_key_pem(algorithm: str) -> bytes:
    """A new unencrypted PKCS#8 PEM private key for ES256 (P-256) or RS256 (3072-bit)."""
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise KeyConfigurationError(f"cannot generate keys for {algorithm}")
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _describe(private: object) -> str:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return f"an EC key on {private.curve.name}"
    if isinstance(private, rsa.RSAPrivateKey):
        return f"a {private.key_size}-bit RSA key"
    return f"a {type(private).__name__.removeprefix('_')} key"


def _check_key_fits(private: object, algorithm: str) -> None:
    hint = f"the file holds {_describe(private)} (see AUTH_SIGNING_ALGORITHM)"
    if algorithm == "ES256":
        if not (
            isinstance(private, ec.EllipticCurvePrivateKey)
            and isinstance(private.curve, ec.SECP256R1)
        ):
            raise KeyConfigurationError(f"ES256 needs an EC private key on curve P-256; {hint}")
    elif algorithm == "RS256":
        if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < _RSA_MIN_BITS:
            raise KeyConfigurationError(
                f"RS256 needs an RSA private key of >= {_RSA_MIN_BITS} bits; {hint}"
            )
    else:
        raise KeyConfigurationError(f"unsupported signing algorithm {algorithm}")


def jwk_thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url without padding."""
    members = _THUMBPRINT_MEMBERS[public_jwk["kty"]]
    canonical = json.dumps(
        {name: public_jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# By content: loading a 3072-bit RSA key checks its primes (~50 ms of CPU), and the same
# key is loaded again by every app started in one process (each test, a key reload). A
# changed file is new content; a refused key raises and is not remembered.
@functools.lru_cache(maxsize=32)
def load_signing_key(pem: bytes, algorithm: str) -> SigningKey:
    """Parse a PEM private key once and derive everything signing and JWKS need."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # cryptography: "Password was not given but ... is encrypted"
        raise KeyConfigurationError(
            "the key is encrypted; the service needs it unencrypted "
            "(`openssl pkey -in KEY -out PLAIN`, then protect PLAIN by file mode)"
        ) from exc
    except ValueError as exc:
        raise KeyConfigurationError(
            "not a PEM private key (a public key or certificate?); the service needs an "
            "unencrypted PEM private key"
        ) from exc
    _check_key_fits(private, algorithm)
    private_key = jwk.construct(private, algorithm)
    public_key = private_key.public_key()
    public_members = {k: str(v) for k, v in public_key.to_dict().items() if k != "alg"}
    kid = jwk_thumbprint(public_members)
    public_jwk = {**public_members, "kid": kid, "alg": algorithm, "use": "sig"}
    return SigningKey(kid, algorithm, private_key, public_key, public_jwk)


def write_private_file(path: Path, content: bytes) -> None:
    """Write a secret readable by its owner only (mode 0600 from the start, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)


def load_or_create_development_key(data_dir: Path, algorithm: str) -> SigningKey:
    """Reuse `<data_dir>/keys/signing-<alg>.pem`, creating it (mode 0600) on first start."""
    path = data_dir / "keys" / f"signing-{algorithm.lower()}.pem"
    if not path.exists():
        # mkdir applies `mode` to the last part only: the data dir itself is made first.
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        # Write a private temp file, then hard-link it into place: two processes starting
        # at once both end up with the one key that won, never with a half-written file.
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write_private_file(temp, generate_private_key_pem(algorithm))
        try:
            os.link(temp, path)
            log.warning("DEVELOPMENT SETUP: generated a %s signing key at %s", algorithm, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return load_signing_key(path.read_bytes(), algorithm)


def jwks_document(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, str]]]:
    """RFC 7517 key set with public members only."""
    return {"keys": [dict(key.public_jwk) for key in keys]}
