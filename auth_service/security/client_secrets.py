"""Client secrets: generated with 256 random bits, stored as SHA-256, compared in constant time.

A slow password hash buys nothing for a secret this long and would put argon2 on every
confidential client's token request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["hash_client_secret", "new_client_secret", "verify_client_secret"]

_SCHEME = "sha256$"


def new_client_secret() -> str:
    """A fresh secret to hand to the client's operator once."""
    return secrets.token_urlsafe(32)


def hash_client_secret(secret: str) -> str:
    """What is stored instead of the secret."""
    return _SCHEME + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_client_secret(secret: str, stored_hash: str | None) -> bool:
    """True when `secret` matches; always compares, even against a missing hash."""
    expected = stored_hash if stored_hash and stored_hash.startswith(_SCHEME) else _SCHEME
    return hmac.compare_digest(hash_client_secret(secret), expected) and stored_hash is not None
