"""How guessable a password is, estimated by zxcvbn (NIST SP 800-63B-4 §3.1.1.2).

zxcvbn finds what a length rule and a blocklist miss: repetition (`passwordpassword`),
sequences (`1234567890123456`), keyboard walks (`qwertyuiopasdfgh`), dictionary words with
digits appended, dates, and context words (the username, the service's name). Only a
prefix is estimated: zxcvbn's work grows quickly with length (a 1,024-character repeat
takes a minute) and registration runs it on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zxcvbn import zxcvbn

__all__ = ["ESTIMATED_PREFIX", "MIN_GUESSES_LOG10", "TOO_GUESSABLE", "guessability_reasons"]

ESTIMATED_PREFIX = 64
# zxcvbn's score 3, "safely unguessable": 10^8 guesses, days of argon2id work per account.
MIN_GUESSES_LOG10 = 8.0
TOO_GUESSABLE = "password is too easy to guess"
_CONTEXT = "password is built on the username or the service name"
_PATTERN_REASONS = {
    "repeat": "password repeats a shorter pattern",
    "sequence": "password contains a sequence such as abc or 6543",
    "spatial": "password follows a keyboard pattern such as qwerty",
    "date": "password contains a date or a recent year",
    "regex": "password contains a date or a recent year",
}


def guessability_reasons(password: str, context_words: Iterable[str]) -> list[str]:
    """Empty when the password is hard enough to guess, else the verdict and its causes."""
    result: dict[str, Any] = zxcvbn(
        password[:ESTIMATED_PREFIX],
        user_inputs=list(context_words),
        max_length=ESTIMATED_PREFIX,
    )
    if float(result["guesses_log10"]) >= MIN_GUESSES_LOG10:
        return []
    reasons = [TOO_GUESSABLE]
    for match in result["sequence"]:
        pattern = match["pattern"]
        if pattern == "dictionary":
            if match["dictionary_name"] == "user_inputs":
                reason = _CONTEXT
            else:
                reason = "password is built on common passwords or words"
        else:
            reason = _PATTERN_REASONS.get(pattern, "")
        if reason and reason not in reasons:
            reasons.append(reason)
    return reasons
