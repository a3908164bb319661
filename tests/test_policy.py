"""Username normalisation and the NIST SP 800-63B-4 password policy."""

from __future__ import annotations

import pytest

from auth_service.errors import InvalidUsername, PasswordRejected
from auth_service.security.policy import (
    USERNAME_MAX_LENGTH,
    USERNAME_MIN_LENGTH,
    PasswordPolicy,
    canonical_username,
    context_words,
    load_common_passwords,
    lookup_key,
    normalize_password,
    normalize_username,
    username_skeleton,
)

TOO_SHORT_USERNAME = "username must be at least 3 characters"
TOO_LONG_USERNAME = "username must be at most 64 characters"
BAD_CHARSET = "username may contain only letters, digits and . _ @ + -"
COMMON = "password is in a list of commonly used passwords"
IS_USERNAME = "password must not be the username"
HAS_NUL = "password must not contain NUL characters"


@pytest.fixture(scope="module")
def common_passwords() -> frozenset[str]:
    return load_common_passwords()


@pytest.fixture(scope="module")
def policy(common_passwords: frozenset[str]) -> PasswordPolicy:
    return PasswordPolicy(min_length=15, max_length=1024, common_passwords=common_passwords)


def reasons_for(policy: PasswordPolicy, password: str, username: str = "alice") -> list[str]:
    with pytest.raises(PasswordRejected) as caught:
        policy.check(password, username=username)
    assert caught.value.code == "invalid_password"
    assert caught.value.description == "; ".join(caught.value.reasons)
    return caught.value.reasons


def username_reasons(raw: str) -> list[str]:
    with pytest.raises(InvalidUsername) as caught:
        normalize_username(raw)
    assert caught.value.code == "invalid_username"
    return caught.value.reasons


# --- usernames -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice", "alice"),
        ("  alice\t\n", "alice"),
        ("\u3000alice\u00a0", "alice"),  # ideographic and no-break spaces
        ("Alice", "Alice"),  # display form keeps its case
        ("Ａｌｉｃｅ", "Alice"),  # fullwidth letters, NFKC
        ("ﬀﬁx", "fffix"),  # ligatures, NFKC
        ("bob①", "bob1"),  # circled digit, NFKC
        ("e\u0301mile", "\u00e9mile"),  # combining accent composed
        ("first.last+tag@example.org", "first.last+tag@example.org"),
        ("under_score-dash", "under_score-dash"),
        ("Zoë", "Zoë"),
        ("名前です", "名前です"),
    ],
)
def test_normalize_username_accepts_and_normalises(raw: str, expected: str) -> None:
    assert normalize_username(raw) == expected


def test_username_length_bounds_are_inclusive() -> None:
    assert (USERNAME_MIN_LENGTH, USERNAME_MAX_LENGTH) == (3, 64)
    assert normalize_username("abc") == "abc"
    assert normalize_username("a" * 64) == "a" * 64
    assert username_reasons("ab") == [TOO_SHORT_USERNAME]
    assert username_reasons("a" * 65) == [TOO_LONG_USERNAME]


def test_username_length_is_measured_after_trimming_and_nfkc() -> None:
    assert username_reasons("  ab  ") == [TOO_SHORT_USERNAME]
    # Two ligature characters become four letters: long enough after NFKC.
    assert normalize_username("ﬀﬀ") == "ffff"
    # 64 fullwidth letters stay 64 characters.
    assert normalize_username("Ａ" * 64) == "A" * 64
    # "㎒" (1 character) expands to "MHz" (3): 63 of them are 189 characters.
    assert username_reasons("㎒" * 63) == [TOO_LONG_USERNAME]


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_username_reports_only_the_length(raw: str) -> None:
    assert username_reasons(raw) == [TOO_SHORT_USERNAME]


@pytest.mark.parametrize(
    "raw",
    [
        "bad name",
        "semi;colon",
        "quote'name",
        "slash/name",
        "angle<b>",
        "nul\x00name",
        "new\nline",
        "emoji🙂x",
        "zero\u200bwidth",
        "percent%",
    ],
)
def test_username_charset_is_enforced(raw: str) -> None:
    assert username_reasons(raw) == [BAD_CHARSET]


def test_username_reports_every_reason() -> None:
    assert username_reasons("a!") == [TOO_SHORT_USERNAME, BAD_CHARSET]
    assert username_reasons("a b" * 30) == [TOO_LONG_USERNAME, BAD_CHARSET]


@pytest.mark.parametrize(
    ("display", "canonical"),
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("Straße", "strasse"),
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
        ("already-lower", "already-lower"),
    ],
)
def test_canonical_username_casefolds(display: str, canonical: str) -> None:
    assert canonical_username(display) == canonical


def test_usernames_that_differ_by_case_or_width_share_a_canonical_form() -> None:
    forms = {
        canonical_username(normalize_username(raw)) for raw in ("Alice", " ALICE ", "ａｌｉｃｅ")
    }
    assert forms == {"alice"}


# --- passwords -----------------------------------------------------------------------


def test_normalize_password_applies_nfkc_without_trimming() -> None:
    assert normalize_password("ｐａｓｓ ") == "pass "
    assert normalize_password("e\u0301") == "\u00e9"
    assert normalize_password("  spaces  ") == "  spaces  "


def test_load_common_passwords_has_the_shipped_list(common_passwords: frozenset[str]) -> None:
    assert len(common_passwords) > 10_000
    assert {"password", "123456", "qwerty"} <= common_passwords
    assert all(entry == entry.lower() for entry in common_passwords if entry.isascii())


def test_multi_word_common_passwords_are_kept_whole(
    policy: PasswordPolicy, common_passwords: frozenset[str]
) -> None:
    # The shipped file has one entry per line; some entries contain spaces.
    assert {"friend of emily", "friend of joan"} <= common_passwords
    assert reasons_for(policy, "friend of emily") == [COMMON]


def test_long_password_is_accepted(policy: PasswordPolicy) -> None:
    policy.check("correct horse battery staple", username="alice")  # raises if refused


def test_length_bounds_are_inclusive(common_passwords: frozenset[str]) -> None:
    policy = PasswordPolicy(min_length=15, max_length=64, common_passwords=common_passwords)
    # Unguessable strings of exactly the bounds (repeats like "kkkk…" are refused now).
    strong = "Xq7!rT2@mW9#pLz4vB8$nK3^hF6&jD1*cG5(sA0)eY2+uR7=oI9;wQ4:tZ8<yM1>"
    policy.check(strong[:15], username="alice")  # raises if refused
    policy.check(strong[:64], username="alice")  # raises if refused


def test_too_short_password_is_rejected_at_the_default_minimum(policy: PasswordPolicy) -> None:
    assert reasons_for(policy, "Xq7!rT2@mW9#pL") == ["password must be at least 15 characters"]


def test_too_long_password_is_rejected(common_passwords: frozenset[str]) -> None:
    policy = PasswordPolicy(min_length=15, max_length=64, common_passwords=common_passwords)
    assert reasons_for(policy, "k" * 65) == ["password must be at most 64 characters"]


def test_length_counts_code_points_not_bytes(policy: PasswordPolicy) -> None:
    # 14 four-byte emoji are 56 bytes but only 14 characters.
    assert reasons_for(policy, "🔐" * 14) == ["password must be at least 15 characters"]
    policy.check("🔐🐴🔋📎🌵🦉🧭🎻🍄🚲🪁🧊🦔🌶🎲", username="alice")  # raises if refused


def test_common_password_of_at_least_15_characters_is_rejected(
    policy: PasswordPolicy, common_passwords: frozenset[str]
) -> None:
    long_common = sorted(p for p in common_passwords if len(p) >= 15 and "\x00" not in p)
    assert long_common, "the shipped list should contain long entries"
    for password in long_common[:5]:
        assert reasons_for(policy, password) == [COMMON]


def test_common_password_check_is_case_insensitive(
    policy: PasswordPolicy, common_passwords: frozenset[str]
) -> None:
    assert "1q2w3e4r5t6y7u8i" in common_passwords
    assert reasons_for(policy, "1Q2W3E4R5T6Y7U8I") == [COMMON]


def test_common_password_with_min_length_8(common_passwords: frozenset[str]) -> None:
    policy = PasswordPolicy(min_length=8, max_length=1024, common_passwords=common_passwords)
    assert reasons_for(policy, "password") == [COMMON]
    assert reasons_for(policy, "PassWord") == [COMMON]
    # Only the whole string is checked: a common word inside a passphrase is fine.
    policy.check("password is not my password", username="alice")  # raises if refused


def test_password_equal_to_the_username_is_rejected() -> None:
    policy = PasswordPolicy(min_length=8, max_length=1024, common_passwords=frozenset())
    assert reasons_for(policy, "averylongusername", "averylongusername") == [IS_USERNAME]
    assert reasons_for(policy, "AVeryLongUserName", "averylongusername") == [IS_USERNAME]
    assert reasons_for(policy, "averylongusername", "AVeryLongUsername") == [IS_USERNAME]
    assert reasons_for(policy, "Straße-and-more", "STRASSE-AND-MORE") == [IS_USERNAME]
    # Not equal, but built on it: NIST's context-specific words, caught by the estimator.
    assert "password is built on the username or the service name" in reasons_for(
        policy, "averylongusername!", "averylongusername"
    )


def test_nul_character_is_refused(policy: PasswordPolicy) -> None:
    assert reasons_for(policy, "correct horse\x00battery staple") == [HAS_NUL]


def test_every_broken_rule_is_listed(common_passwords: frozenset[str]) -> None:
    policy = PasswordPolicy(min_length=15, max_length=1024, common_passwords=common_passwords)
    assert reasons_for(policy, "password", "password") == [
        "password must be at least 15 characters",
        COMMON,
        IS_USERNAME,
    ]
    assert reasons_for(policy, "bob\x00", "bob\x00") == [
        "password must be at least 15 characters",
        HAS_NUL,
        IS_USERNAME,
    ]
    tight = PasswordPolicy(min_length=8, max_length=64, common_passwords=common_passwords)
    assert reasons_for(tight, "x\x00" * 40, "x\x00" * 40) == [
        "password must be at most 64 characters",
        HAS_NUL,
        IS_USERNAME,
    ]


@pytest.mark.parametrize(
    "passphrase",
    [
        "Дрова в печи трещат тихо",
        "私のパスワードはとても長いです",
        "ceci n'est pas un mot de passe ✓",
        "🐴🔋📎 correct horse battery staple",
        "كلمة المرور الطويلة جدا هنا",
    ],
)
def test_long_unicode_passphrase_is_accepted(policy: PasswordPolicy, passphrase: str) -> None:
    assert len(passphrase) >= 15
    policy.check(normalize_password(passphrase), username="alice")  # raises if refused


def test_no_composition_rules(policy: PasswordPolicy) -> None:
    # All lower-case letters and spaces, no digits or symbols: fine under NIST 800-63B-4.
    policy.check("just some lowercase words", username="alice")  # raises if refused


# --- one normalisation and one length check for every path (issue 12, item 16) ----------


def test_prepare_normalises_once_and_bounds_the_normalised_length(
    common_passwords: frozenset[str],
) -> None:
    policy = PasswordPolicy(min_length=15, max_length=64, common_passwords=common_passwords)
    decomposed = "e\u0301" * 64  # 128 code points typed, 64 after NFKC
    assert policy.prepare(decomposed) == "\u00e9" * 64
    assert policy.prepare("e\u0301" * 65) is None
    # U+FDFA is one code point typed and 18 after NFKC: the normalised form counts.
    assert policy.prepare("\ufdfa" * 4) is None


def test_accept_checks_the_prepared_form(policy: PasswordPolicy) -> None:
    typed = "cre\u0301me bru\u0302le\u0301e au chocolat noir"
    assert policy.accept(typed, username="alice") == normalize_password(typed)


# --- guessability: repetition, sequences, keyboard walks, context words ---------------


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("passwordpassword", "repeats"),
        ("1234567890123456", "common"),
        ("qwertyuiopasdfgh", "common"),
        ("password1234567", "common"),
        ("abcdefghijklmnop", "sequence"),
        ("aaaaaaaaaaaaaaaa", "repeats"),
        ("zxcvbnm,./asdfghjkl", "keyboard"),
        ("🔐" * 15, "repeats"),
        ("a" * 1024, "repeats"),
    ],
)
def test_guessable_long_passwords_are_refused_with_the_reason(
    policy: PasswordPolicy, password: str, why: str
) -> None:
    reasons = reasons_for(policy, password)
    assert reasons[0] == "password is too easy to guess"
    assert any(why in reason for reason in reasons), reasons


def test_password_built_on_the_username_is_refused() -> None:
    policy = PasswordPolicy(min_length=15, max_length=1024, common_passwords=frozenset())
    reasons = reasons_for(policy, "Margaret.Hamilton1", "margaret.hamilton")
    assert any("username or the service name" in reason for reason in reasons), reasons
    # The same password is fine for someone else.
    policy.check("Margaret.Hamilton1", username="bob")  # raises if refused


def test_password_built_on_the_service_name_is_refused() -> None:
    policy = PasswordPolicy(
        min_length=15,
        max_length=1024,
        common_passwords=frozenset(),
        context_words=("auth-service", "auth.example.com"),
    )
    reasons = reasons_for(policy, "auth-service-2026", "bob")
    assert any("username or the service name" in reason for reason in reasons), reasons


def test_estimator_work_is_bounded_for_long_passwords(policy: PasswordPolicy) -> None:
    # Only a prefix is estimated: a strong start is enough, a weak one is refused.
    policy.check("correct horse battery staple " + "x" * 990, username="alice")  # raises if refused
    assert reasons_for(policy, "1" * 1024)[0] == "password is too easy to guess"


# --- confusable usernames (UTS #39) --------------------------------------------------

MIXED_SCRIPTS = "username must not mix scripts (such as Latin with Cyrillic or Greek)"
MIXED_DIGITS = "username must not mix digits from different scripts"


@pytest.mark.parametrize("raw", ["\u0430lice", "abc\u0414\u0440", "p\u0430yp\u0430l"])
def test_mixed_script_usernames_are_refused(raw: str) -> None:
    assert username_reasons(raw) == [MIXED_SCRIPTS]


def test_usernames_mixing_digit_systems_are_refused() -> None:
    assert MIXED_DIGITS in username_reasons("bob1\u0663")


@pytest.mark.parametrize(
    "raw", ["Дрова", "παπ", "名前です", "tokyo東京とうきょう", "kim김", "user_名", "Zoë"]
)
def test_single_script_and_customary_combinations_are_accepted(raw: str) -> None:
    assert normalize_username(raw) == raw


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("alice", "ALİCE"),  # dotted capital I casefolds to i + combining dot above
        ("alice", "ALICE"),
        ("cope", "\u0441\u043e\u0440\u0435"),  # all-Cyrillic lookalike, single script
        ("jim", "jirn"),
        ("bob1", "bobl"),
        ("Straße", "strasse"),
    ],
)
def test_confusable_usernames_share_a_skeleton(first: str, second: str) -> None:
    assert username_skeleton(normalize_username(first)) == username_skeleton(
        normalize_username(second)
    )


def test_distinct_usernames_keep_distinct_skeletons() -> None:
    names = ["alice", "alicia", "bob", "b0b", "名前です", "Дрова"]
    assert len({username_skeleton(normalize_username(name)) for name in names}) == len(names)


def test_login_lookup_key_ignores_the_registration_only_script_rule() -> None:
    # Accounts created before the script rule must still be found by the name they use.
    assert lookup_key("\u0430lice") == "\u0430lice"


def test_context_words_name_the_service_and_its_host() -> None:
    words = context_words("https://login.acme-corp.example:8443/base")
    assert {"auth-service", "login.acme-corp.example", "login", "acme-corp"} <= set(words)
    assert context_words("http://127.0.0.1:8000") == context_words("http://[::1]:8000")
