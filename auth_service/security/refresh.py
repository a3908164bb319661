"""Refresh tokens: opaque 256-bit random strings, stored only as their SHA-256.

A rotated token's successor pair is kept sealed (AES-GCM) under a key derived from the
rotated token itself, so a retry within the grace window can be answered with the same
pair while the database alone can never produce a usable token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MAX_REFRESH_TOKEN_LENGTH",
    "hash_refresh_token",
    "new_refresh_token",
    "open_sealed",
    "seal",
]

MAX_REFRESH_TOKEN_LENGTH = 256
_SEAL_INFO = b"auth_service refresh-token successor v1"
_NONCE_BYTES = 12


def new_refresh_token() -> str:
    """256 random bits, URL-safe, without dots (so it can never parse as a JWT)."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """The lookup key stored instead of the token (hex SHA-256; the token has 256 bits)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _key(token: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return hkdf.derive(token.encode("utf-8"))


def seal(plaintext: bytes, token: str) -> str:
    """Encrypt `plaintext` so that only the holder of `token` can read it."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = nonce + AESGCM(_key(token)).encrypt(nonce, plaintext, None)
    return base64.b64encode(sealed).decode("ascii")


def open_sealed(sealed: str, token: str) -> bytes | None:
    """Decrypt what `seal` produced with the same token, or None if it does not open."""
    try:
        raw = base64.b64decode(sealed)
        return AESGCM(_key(token)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
    except (InvalidTag, ValueError):
        return None
