"""Tokens in mailed links: 256 random bits, stored only as their SHA-256.

A database leak yields hashes, never a working link (compare Supabase Auth, whose links
carry the very value it stores). 256 bits need no slow hash: guessing is hopeless.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["MAX_LINK_TOKEN_LENGTH", "hash_link_token", "new_link_token"]

MAX_LINK_TOKEN_LENGTH = 128


def new_link_token() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_link_token(token: str) -> str:
    """The stored lookup key (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
