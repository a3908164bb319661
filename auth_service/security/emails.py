"""Email addresses: syntax check, the canonical form that is unique, the delivery form.

The canonical form decides "the same address": NFC-normalised, the local part lower-cased,
the domain as its lower-case IDNA A-label (UTS #46, so `Bücher.example` and
`xn--bcher-kva.example` are one domain). Dots and `+tags` are kept: only some providers
ignore them, and stripping them for all would merge different people's mailboxes.
Lower-casing the local part is the one liberty taken (RFC 5321 lets a server tell
`Alice@` from `alice@`; no common one does), so nobody holds a case variant of an
address someone else verified.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from auth_service.errors import InvalidEmail

__all__ = ["EMAIL_MAX_LENGTH", "EmailAddress", "parse_email"]

EMAIL_MAX_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path limit less the angle brackets


@dataclass(frozen=True)
class EmailAddress:
    """An address as given (normalised), its canonical key, and where to deliver it."""

    display: str
    canonical: str
    delivery: str


def parse_email(address: str) -> EmailAddress:
    """Check the syntax (no DNS look-up) and derive the forms; InvalidEmail if it fails."""
    text = unicodedata.normalize("NFC", address.strip())
    if not text or len(text) > EMAIL_MAX_LENGTH:
        raise InvalidEmail(["email: must be an address of at most 254 characters"])
    try:
        parsed = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidEmail([f"email: {exc}"]) from exc
    local = parsed.local_part
    domain = parsed.ascii_domain.lower()
    return EmailAddress(
        display=parsed.normalized,
        canonical=f"{local.lower()}@{domain}",
        delivery=f"{local}@{domain}",
    )
