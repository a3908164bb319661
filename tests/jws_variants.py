"""Other spellings of one compact JWS: what a canonical-encoding check must refuse."""

from __future__ import annotations

import base64

# The order n of the P-256 group (FIPS 186-4 D.1.2.3): s and n - s both verify.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def padded(token: str) -> str:
    """The signature with base64 '=' padding (ES256's 86 characters take two).

    Padding the header or payload would change the signing input and break the signature
    anyway; the signature segment is the one whose spelling an attacker can vary freely.
    """
    head, _, signature = token.rpartition(".")
    return f"{head}.{signature}" + "=" * (-len(signature) % 4 or 4)


def standard_alphabet(token: str) -> str:
    """The signature in the '+/' alphabet of RFC 4648 §4 instead of base64url's '-_'."""
    head, _, signature = token.rpartition(".")
    return f"{head}." + signature.translate(str.maketrans("-_", "+/"))


def loose_trailing_bits(token: str) -> str:
    """The signature with its unused low bits set: another string for the same bytes."""
    header, payload, signature = token.split(".")
    unused_bits = {2: 4, 3: 2}[len(signature) % 4]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1]) | ((1 << unused_bits) - 1)
    return f"{header}.{payload}.{signature[:-1]}{alphabet[last]}"


def _with_s(token: str, choose: bool) -> str:
    header, payload, signature = token.split(".")
    raw = _decode(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    if choose:
        s = P256_ORDER - s
    return f"{header}.{payload}.{_encode(r + s.to_bytes(32, 'big'))}"


def es256_s(token: str) -> int:
    """The s half of an ES256 signature."""
    return int.from_bytes(_decode(token.split(".")[2])[32:], "big")


def flipped_s(token: str) -> str:
    """The same ES256 signature with s replaced by n - s (equally valid mathematically)."""
    return _with_s(token, True)


def low_s(token: str) -> str:
    """An ES256 token with s <= n/2, the only form verifiers here accept (for test signers)."""
    return _with_s(token, es256_s(token) > P256_ORDER // 2)
