"""Confusable usernames (Unicode UTS #39) through ICU's SpoofChecker, the reference code.

Two checks: a name may not mix scripts beyond ICU's "highly restrictive" level (one
script, or Latin with Han/Hiragana/Katakana, Han/Bopomofo or Han/Hangul), nor digits of
different numbering systems; and names are unique on their case-folded skeleton, so
`alice` and `ALİCE`, Latin `cope` and its all-Cyrillic lookalike (U+0441 U+043E U+0440
U+0435), `jim` and `jirn`, `bob1` and `bobl` share one key. Nothing else imports `icu`.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

import icu

__all__ = ["MIXED_DIGITS", "MIXED_SCRIPTS", "script_reasons", "skeleton"]

MIXED_SCRIPTS = "username must not mix scripts (such as Latin with Cyrillic or Greek)"
MIXED_DIGITS = "username must not mix digits from different scripts"
_COMBINING_DOT_ABOVE = "\u0307"


@functools.cache
def _checker() -> Any:
    """One configured SpoofChecker (its check and skeleton calls are thread-safe)."""
    checker = icu.SpoofChecker()
    checker.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS)
    checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
    return checker


@functools.cache
def _soft_dotted() -> Any:
    return icu.UnicodeSet("[:Soft_Dotted:]")


def script_reasons(name: str) -> list[str]:
    """Why `name` (NFKC) mixes scripts or digit systems; empty when it does not."""
    failed = int(_checker().check(name))
    reasons = []
    if failed & int(icu.USpoofChecks.RESTRICTION_LEVEL):
        reasons.append(MIXED_SCRIPTS)
    if failed & int(icu.USpoofChecks.MIXED_NUMBERS):
        reasons.append(MIXED_DIGITS)
    return reasons


def skeleton(name: str) -> str:
    """The case-insensitive UTS #39 skeleton: equal for names that look alike."""
    decomposed = unicodedata.normalize("NFD", name.casefold())
    # UTS #39 §5.4: a dot above on a soft-dotted letter is invisible; İ folds to i + U+0307.
    kept: list[str] = []
    for char in decomposed:
        if char == _COMBINING_DOT_ABOVE and kept and _soft_dotted().contains(kept[-1]):
            continue
        kept.append(char)
    return str(_checker().getSkeleton(0, "".join(kept)))
