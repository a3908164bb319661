"""Username and password rules (NIST SP 800-63B-4): normalise, then accept or give reasons.

Passwords: NFKC-normalised, and measured in code points of that form on every path (login
and current passwords through `PasswordPolicy.prepare`, new ones through `accept`) against
the configured bounds; any Unicode, no composition rules, refused when the whole string
is a common password or the username, or when zxcvbn finds it guessable (repetition,
sequences, keyboard walks, words, the username or the service's name; see
guessability.py). Usernames: trimmed,
NFKC-normalised, one script (UTS #39, see confusables.py), compared case-insensitively for
login and unique on their confusable skeleton.
"""

from __future__ import annotations

import functools
import gzip
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from auth_service.errors import InvalidUsername, PasswordRejected
from auth_service.security.confusables import script_reasons, skeleton
from auth_service.security.guessability import guessability_reasons

__all__ = [
    "SERVICE_NAMES",
    "USERNAME_MAX_LENGTH",
    "USERNAME_MIN_LENGTH",
    "PasswordPolicy",
    "canonical_username",
    "context_words",
    "load_common_passwords",
    "lookup_key",
    "normalize_password",
    "normalize_username",
    "username_skeleton",
]

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 64
# Letters, digits and a few separators common in handles and e-mail addresses.
_USERNAME_PATTERN = re.compile(r"[\w.@+-]+")
# The service's own names: context words a password must not be built on.
SERVICE_NAMES = ("auth-service", "auth_service", "authservice")
_WORD_SEPARATORS = re.compile(r"[\W_]+")


def normalize_username(raw: str) -> str:
    """Return the display form of a new username, or raise InvalidUsername with the reasons.

    On top of the syntax, a new name must keep to one script (mixed names are refused
    here only, so accounts made before the rule keep logging in through `lookup_key`).
    """
    name = _username_syntax(raw)
    reasons = script_reasons(name)
    if reasons:
        raise InvalidUsername(reasons)
    return name


def _username_syntax(raw: str) -> str:
    """Trim and NFKC a username, or raise InvalidUsername for its length and charset."""
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
    """The case-insensitive key under which a username is looked up at login."""
    return display_name.casefold()


def username_skeleton(display_name: str) -> str:
    """The key under which a username is unique: names that look alike share it (UTS #39)."""
    return skeleton(display_name)


def lookup_key(submitted: str) -> str | None:
    """The canonical name a submitted username is stored under, or None if it cannot be one."""
    try:
        return canonical_username(_username_syntax(submitted))
    except InvalidUsername:
        return None


def normalize_password(raw: str) -> str:
    """NFKC, so the same password typed on different keyboards hashes the same."""
    return unicodedata.normalize("NFKC", raw)


def context_words(issuer: str) -> tuple[str, ...]:
    """The service's names and its issuer's host labels (`auth`, `example`), for the policy."""
    host = issuer.partition("://")[2].partition("/")[0].rpartition("@")[2].partition(":")[0]
    if not any(char.isalpha() for char in host):  # an IP address names nothing
        return SERVICE_NAMES
    labels = tuple(label for label in host.split(".") if len(label) >= 3)
    return (*SERVICE_NAMES, host, *labels)


def _words(text: str) -> list[str]:
    """`text` and its parts between separators (for zxcvbn's user dictionary)."""
    parts = [part for part in _WORD_SEPARATORS.split(text) if len(part) >= 3]
    return [text, *parts]


@functools.lru_cache(maxsize=1)  # ~10 ms to unpack; immutable, so one per process
def load_common_passwords() -> frozenset[str]:
    """The shipped blocklist (19,640 lower-cased entries, see data/LICENSE-common-passwords)."""
    data = resources.files("auth_service").joinpath("data", "common-passwords.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip())


@dataclass(frozen=True)
class PasswordPolicy:
    """Length bounds, blocklist and context words; `accept` returns the form to hash."""

    min_length: int
    max_length: int
    common_passwords: frozenset[str]
    context_words: tuple[str, ...] = SERVICE_NAMES

    def prepare(self, raw: str) -> str | None:
        """The one form every path hashes or verifies (NFKC), or None when it is too long.

        Registration, login and password change all measure this form, so a password that
        registered always fits at login, and nothing longer is ever hashed.
        """
        password = normalize_password(raw)
        return None if self._too_long(password) else password

    def accept(self, raw: str, *, username: str) -> str:
        """The prepared form of a new password, or PasswordRejected with every reason."""
        password = normalize_password(raw)
        self.check(password, username=username)
        return password

    def _too_long(self, password: str) -> bool:
        return len(password) > self.max_length

    def check(self, password: str, *, username: str) -> None:
        """Raise PasswordRejected listing every rule the (normalised) password breaks.

        The estimator runs only on a password that passed the other rules: their reasons
        already say why, and it spares zxcvbn's work on strings refused anyway.
        """
        reasons: list[str] = []
        if len(password) < self.min_length:
            reasons.append(f"password must be at least {self.min_length} characters")
        if self._too_long(password):
            reasons.append(f"password must be at most {self.max_length} characters")
        if "\x00" in password:
            reasons.append("password must not contain NUL characters")
        folded = password.casefold()
        if folded in self.common_passwords:
            reasons.append("password is in a list of commonly used passwords")
        if folded == canonical_username(username):
            reasons.append("password must not be the username")
        if not reasons:
            context = [*_words(username), *self.context_words]
            reasons = guessability_reasons(password, context)
        if reasons:
            raise PasswordRejected(reasons)
