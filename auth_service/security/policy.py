"""Username and password rules (NIST SP 800-63B-4): normalise, then accept or give reasons.

Passwords: NFKC-normalised, length in code points between the configured bounds, any
Unicode, no composition rules, refused when the whole string is a common password or the
username. Usernames: trimmed, NFKC-normalised, compared case-insensitively.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from auth_service.errors import InvalidUsername, PasswordRejected

__all__ = [
    "USERNAME_MAX_LENGTH",
    "USERNAME_MIN_LENGTH",
    "PasswordPolicy",
    "canonical_username",
    "load_common_passwords",
    "lookup_key",
    "normalize_password",
    "normalize_username",
]

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 64
# Letters, digits and a few separators common in handles and e-mail addresses.
_USERNAME_PATTERN = re.compile(r"[\w.@+-]+")


def normalize_username(raw: str) -> str:
    """Return the display form of a username, or raise InvalidUsername with the reasons."""
    name = unicodedata.normalize("NFKC", raw.strip())
    reasons: list[str] = []
    if len(name) < USERNAME_MIN_LENGTH:
        reasons.append(f"username must be at least {USERNAME_MIN_LENGTH} characters")
    if len(name) > USERNAME_MAX_LENGTH:
        reasons.append(f"username must be at most {USERNAME_MAX_LENGTH} characters")
    if name and not _USERNAME_PATTERN.fullmatch(name):
        reasons.append("username may contain only letters, digits and . _ @ + -")
    if reasons:
        raise InvalidUsername(reasons)
    return name


def canonical_username(display_name: str) -> str:
    """The case-insensitive key under which a username is unique and looked up."""
    return display_name.casefold()


def lookup_key(submitted: str) -> str | None:
    """The canonical name a submitted username is stored under, or None if it cannot be one."""
    try:
        return canonical_username(normalize_username(submitted))
    except InvalidUsername:
        return None


def normalize_password(raw: str) -> str:
    """NFKC, so the same password typed on different keyboards hashes the same."""
    return unicodedata.normalize("NFKC", raw)


def load_common_passwords() -> frozenset[str]:
    """The shipped blocklist (19,640 lower-cased entries, see data/LICENSE-common-passwords)."""
    data = resources.files("auth_service").joinpath("data", "common-passwords.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip())


@dataclass(frozen=True)
class PasswordPolicy:
    """Length bounds and the blocklist; `check` returns nothing or raises with reasons."""

    min_length: int
    max_length: int
    common_passwords: frozenset[str]

    def check(self, password: str, *, username: str) -> None:
        """Raise PasswordRejected listing every rule the (normalised) password breaks."""
        reasons: list[str] = []
        if len(password) < self.min_length:
            reasons.append(f"password must be at least {self.min_length} characters")
        if len(password) > self.max_length:
            reasons.append(f"password must be at most {self.max_length} characters")
        if "\x00" in password:
            reasons.append("password must not contain NUL characters")
        folded = password.casefold()
        if folded in self.common_passwords:
            reasons.append("password is in a list of commonly used passwords")
        if folded == canonical_username(username):
            reasons.append("password must not be the username")
        if reasons:
            raise PasswordRejected(reasons)
