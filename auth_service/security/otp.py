"""RFC 6238 TOTP (pyotp), its enrolment QR code (segno, SVG), recovery codes, MFA tokens.

Codes are HMAC-SHA-1, 6 digits, 30-second steps, and a code of the step before or after
the current one is accepted too (RFC 6238 §5.2's one step of network delay and drift).
`matching_step` says which step a code belongs to, so the caller can record it and accept
that code, or any older one, never again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from datetime import datetime

import pyotp
import segno

__all__ = [
    "DIGITS",
    "RECOVERY_CODE_COUNT",
    "STEP_SECONDS",
    "hash_mfa_token",
    "hash_recovery_code",
    "matching_step",
    "new_mfa_token",
    "new_recovery_codes",
    "new_totp_secret",
    "otpauth_uri",
    "qr_svg",
]

DIGITS = 6
STEP_SECONDS = 30
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_CODE_BYTES = 10  # 80 bits: a leaked hash list cannot be brute-forced
MAX_CODE_LENGTH = 64


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS, digest=hashlib.sha1)


def new_totp_secret() -> str:
    """A new 160-bit seed (RFC 4226 §4's recommended length), base32 as apps expect it."""
    return pyotp.random_base32(length=32)


def otpauth_uri(secret: str, *, username: str, issuer: str) -> str:
    """The Key URI (otpauth://totp/...) authenticator apps read from the QR code."""
    return _totp(secret).provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a standalone SVG QR code (with its namespace, no XML declaration), medium
    error correction: embeddable in HTML and valid as an image/svg+xml document."""
    out = io.BytesIO()
    code = segno.make(uri, error="m", micro=False)
    code.save(out, kind="svg", xmldecl=False, svgns=True, nl=False, scale=4, border=4)
    return out.getvalue().decode("utf-8")


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is, within one step of `now`; None if none is."""
    code = code.strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = _totp(secret)
    current = totp.timecode(now)
    found = None
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        # Every candidate is compared (in constant time), whatever matched before.
        if hmac.compare_digest(totp.generate_otp(current + offset), code):
            found = current + offset
    return found


def new_recovery_codes() -> list[str]:
    """Ten single-use codes, 80 random bits each, grouped for reading: xxxx-xxxx-xxxx-xxxx."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(_RECOVERY_CODE_BYTES)).decode().lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, len(raw), 4)))
    return codes


def hash_recovery_code(user_id: str, code: str) -> str:
    """What is stored of a recovery code: SHA-256 over the owner and the normalised code.

    The code has 80 random bits, so a fast hash is enough: a leaked table cannot be
    reversed, and hashing with the owner means a code works for its own account only.
    """
    normalised = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(f"{user_id}\x00{normalised}".encode()).hexdigest()


def new_mfa_token() -> str:
    """The opaque token handed out between the password step and the second factor."""
    return secrets.token_urlsafe(32)


def hash_mfa_token(token: str) -> str:
    """What is stored of an MFA token (256 random bits, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
