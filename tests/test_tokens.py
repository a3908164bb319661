"""TokenService: minting and verifying RFC 9068 access tokens, hardened per RFC 8725.

Every rejection must be the one domain error `InvalidToken`, whatever the token looks like.
Hostile tokens are crafted by hand (base64url segments) or signed with our own private key
so that exactly one property is wrong at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwt

from auth_service.errors import InvalidToken
from auth_service.security.keys import SigningKey, generate_private_key_pem, load_signing_key
from auth_service.security.tokens import MAX_TOKEN_LENGTH, AccessClaims, TokenService
from tests import jws_variants
from tests.conftest import password_grant, register

ISSUER = "https://auth.example.test"
AUDIENCE = "api"
TTL = 900
LEEWAY = 10
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "sid")


# --- helpers -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def craft(header: Any, payload: Any, signature: bytes = b"") -> str:
    """A compact JWS built by hand, with whatever header, payload and signature."""
    return f"{segment(header)}.{segment(payload)}.{b64url(signature)}"


def craft_hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """A correctly HMAC-SHA256-signed token (python-jose refuses PEM secrets, so by hand)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def hand_signed(key: SigningKey, header: Any, payload: Any) -> str:
    """A token signed by `key` with exactly this header (python-jose adds `typ` otherwise)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    # python-jose's EC keys return the raw r||s form that JWS uses.
    token = f"{signing_input}.{b64url(key.private_key.sign(signing_input.encode('ascii')))}"
    return jws_variants.low_s(token) if key.algorithm == "ES256" else token


def sign(
    key: SigningKey,
    claims: Any,
    *,
    kid: str | None = None,
    typ: str = "at+jwt",
    algorithm: str | None = None,
    **extra_headers: Any,
) -> str:
    """Sign `claims` with `key`'s private key; header fields as given."""
    headers: dict[str, Any] = {"kid": key.kid if kid is None else kid, "typ": typ, **extra_headers}
    token = jwt.encode(
        claims, key.private_key, algorithm=algorithm or key.algorithm, headers=headers
    )
    # python-jose leaves s as OpenSSL made it; verifiers here accept only the low-S form.
    return jws_variants.low_s(token) if (algorithm or key.algorithm) == "ES256" else token


def claims_at(now: datetime, **overrides: Any) -> dict[str, Any]:
    """A complete, valid claim set issued at `now`."""
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-123",
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + TTL,
        "jti": "jti-0123456789abcdef",
        "client_id": "public",
        "scope": "profile email",
        "sid": "session-1",
    }
    claims.update(overrides)
    return claims


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def es256_key() -> SigningKey:
    return load_signing_key(generate_private_key_pem("ES256"), "ES256")


@pytest.fixture(scope="module")
def rs256_key() -> SigningKey:
    return load_signing_key(generate_private_key_pem("RS256"), "RS256")


@pytest.fixture(scope="module")
def attacker_key() -> SigningKey:
    return load_signing_key(generate_private_key_pem("ES256"), "ES256")


@pytest.fixture
def now() -> datetime:
    """The current time, whole seconds (python-jose compares some claims to the wall clock)."""
    return datetime.now(UTC).replace(microsecond=0)


def make_service(
    key: SigningKey,
    at: datetime,
    *,
    verification_keys: tuple[SigningKey, ...] = (),
    leeway: int = LEEWAY,
) -> TokenService:
    return TokenService(
        signing_key=key,
        verification_keys=verification_keys,
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl_seconds=TTL,
        leeway_seconds=leeway,
        clock=fixed(at),
    )


@pytest.fixture
def service(es256_key: SigningKey, now: datetime) -> TokenService:
    return make_service(es256_key, now)


def mint(service: TokenService) -> str:
    return service.mint_access_token(
        subject="user-123", scopes=["profile"], session_id="session-1", client_id="public"
    ).token


# --- valid tokens --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_minted_token_round_trips(
    algorithm: str, es256_key: SigningKey, rs256_key: SigningKey, now: datetime
) -> None:
    key = es256_key if algorithm == "ES256" else rs256_key
    service = make_service(key, now)
    issued = service.mint_access_token(
        subject="user-123",
        scopes=["profile", "email", "profile"],
        session_id="session-1",
        client_id="public",
    )
    claims = service.verify_access_token(issued.token)

    assert claims == issued.claims
    assert claims == AccessClaims(
        subject="user-123",
        scopes=frozenset({"email", "profile"}),
        session_id="session-1",
        client_id="public",
        token_id=issued.claims.token_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=TTL),
    )
    assert issued.expires_in == TTL
    assert jwt.get_unverified_header(issued.token) == {
        "alg": algorithm,
        "typ": "at+jwt",
        "kid": key.kid,
    }
    raw = jwt.get_unverified_claims(issued.token)
    assert raw == {
        "iss": ISSUER,
        "sub": "user-123",
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(now.timestamp()) + TTL,
        "jti": issued.claims.token_id,
        "client_id": "public",
        "scope": "email profile",
        "sid": "session-1",
        "cred_ver": 0,
    }
    assert len(b64url_decode(raw["jti"])) >= 16  # >= 128 random bits


def test_each_token_gets_a_fresh_jti(service: TokenService) -> None:
    ids = {service.verify_access_token(mint(service)).token_id for _ in range(5)}
    assert len(ids) == 5


def test_hand_crafted_token_with_valid_signature_is_accepted(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    # Control for the crafted attacks below: the by-hand encoding itself is sound.
    header = {"alg": "ES256", "typ": "at+jwt", "kid": es256_key.kid}
    token = hand_signed(es256_key, header, claims_at(now))
    assert service.verify_access_token(token).subject == "user-123"


@pytest.mark.parametrize("typ", ["application/at+jwt", "AT+JWT"])
def test_rfc9068_typ_spellings_are_accepted(
    typ: str, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    token = sign(es256_key, claims_at(now), typ=typ)
    assert service.verify_access_token(token).subject == "user-123"


# --- header attacks ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
@pytest.mark.parametrize("signature", [b"", b"anything"])
def test_alg_none_is_rejected(
    alg: str, signature: bytes, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": es256_key.kid}
    with pytest.raises(InvalidToken):
        service.verify_access_token(craft(header, claims_at(now), signature))


def _public_secrets(key: SigningKey) -> dict[str, bytes]:
    crypto_public = key.public_key.prepared_key  # a cryptography public key object
    pem = crypto_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "spki-pem": pem,
        "spki-pem-stripped": pem.strip(),
        "spki-der": crypto_public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(key.public_jwk).encode("utf-8"),
        "jwk-json-compact": json.dumps(key.public_jwk, separators=(",", ":")).encode("utf-8"),
    }


@pytest.mark.parametrize(
    "secret_kind", ["spki-pem", "spki-pem-stripped", "spki-der", "jwk-json", "jwk-json-compact"]
)
@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_hs256_signed_with_public_key_as_hmac_secret_is_rejected(
    secret_kind: str,
    algorithm: str,
    es256_key: SigningKey,
    rs256_key: SigningKey,
    now: datetime,
) -> None:
    key = es256_key if algorithm == "ES256" else rs256_key
    service = make_service(key, now)
    secret = _public_secrets(key)[secret_kind]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    with pytest.raises(InvalidToken):
        service.verify_access_token(craft_hs256(header, claims_at(now), secret))


def test_rs256_token_is_rejected_when_the_kid_names_an_es256_key(
    service: TokenService, es256_key: SigningKey, rs256_key: SigningKey, now: datetime
) -> None:
    token = sign(rs256_key, claims_at(now), kid=es256_key.kid)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


def test_alg_must_match_the_key_named_by_kid_even_when_both_keys_are_trusted(
    es256_key: SigningKey, rs256_key: SigningKey, now: datetime
) -> None:
    service = make_service(es256_key, now, verification_keys=(rs256_key,))
    # Signed by a trusted RSA key, but claims to be from the EC key.
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(rs256_key, claims_at(now), kid=es256_key.kid))
    # Signed by the EC key but labelled RS256 under the RSA kid.
    header = {"alg": "RS256", "typ": "at+jwt", "kid": rs256_key.kid}
    forged = hand_signed(es256_key, header, claims_at(now))
    with pytest.raises(InvalidToken):
        service.verify_access_token(forged)
    # Control: each key with its own kid and alg is fine.
    assert service.verify_access_token(sign(rs256_key, claims_at(now))).subject == "user-123"


def test_jwe_shaped_five_segment_token_is_rejected(
    service: TokenService, es256_key: SigningKey
) -> None:
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "typ": "at+jwt", "kid": es256_key.kid}
    token = ".".join([segment(header), b64url(b"k" * 32), b64url(b"iv"), b64url(b"ct"), "tag"])
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


def test_valid_token_with_extra_segments_is_rejected(service: TokenService) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(mint(service) + ".AAAA.BBBB")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "...",
        "..",
        "....",
        "é.é.é",
        "\x00.\x00.\x00",
        "eyJ.eyJ.sig",
        "Bearer x.y.z",
        b64url(b"\xff\xfe\xfd") + ".e30.",
        b64url(b"not json") + ".e30.",
        segment([1, 2]) + ".e30.",
        segment("at+jwt") + ".e30.",
        segment(None) + ".e30.",
        segment({"alg": "ES256", "typ": ["at+jwt"]}) + ".e30.",
        segment({"alg": "ES256", "typ": 1}) + ".e30.",
    ],
)
def test_garbage_is_rejected(token: str, service: TokenService) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


@pytest.mark.parametrize("kid", [["x"], {"kid": "x"}, 5, None, ""])
def test_header_with_non_string_or_empty_kid_is_rejected(
    kid: Any, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    token = hand_signed(es256_key, header, claims_at(now))
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", "at+jwt+x", ""])
def test_token_without_access_token_typ_is_rejected(
    typ: str, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now), typ=typ))


def test_token_without_typ_is_rejected(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    header = {"alg": "ES256", "kid": es256_key.kid}
    with pytest.raises(InvalidToken):
        service.verify_access_token(hand_signed(es256_key, header, claims_at(now)))


def test_unknown_kid_is_rejected(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now), kid="some-other-key"))


def test_missing_kid_is_rejected(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    header = {"alg": "ES256", "typ": "at+jwt"}
    with pytest.raises(InvalidToken):
        service.verify_access_token(hand_signed(es256_key, header, claims_at(now)))


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "exp"])
def test_crit_header_is_rejected(
    crit: Any, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    token = sign(es256_key, claims_at(now), crit=crit, exp=1, b64=True)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


def _attacker_headers(attacker: SigningKey) -> list[dict[str, Any]]:
    return [
        {"jwk": attacker.public_jwk},
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": attacker.public_jwk, "jku": "https://attacker.example/jwks.json"},
    ]


@pytest.mark.parametrize("variant", range(4))
def test_embedded_attacker_key_with_attacker_kid_is_rejected(
    variant: int, service: TokenService, attacker_key: SigningKey, now: datetime
) -> None:
    extra = _attacker_headers(attacker_key)[variant]
    token = sign(attacker_key, claims_at(now), **extra)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


@pytest.mark.parametrize("variant", range(4))
def test_embedded_attacker_key_with_our_kid_fails_the_signature(
    variant: int,
    service: TokenService,
    es256_key: SigningKey,
    attacker_key: SigningKey,
    now: datetime,
) -> None:
    extra = _attacker_headers(attacker_key)[variant]
    token = sign(attacker_key, claims_at(now), kid=es256_key.kid, **extra)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


def test_our_key_with_ignored_jku_header_still_verifies(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    # jku is ignored, not fatal: the signature by our key is what counts.
    token = sign(es256_key, claims_at(now), jku="https://attacker.example/jwks.json")
    assert service.verify_access_token(token).subject == "user-123"


# --- tampering -----------------------------------------------------------------------


def test_tampered_payload_is_rejected(service: TokenService, now: datetime) -> None:
    header, _, signature = mint(service).split(".")
    forged_claims = claims_at(now, sub="admin", scope="admin")
    with pytest.raises(InvalidToken):
        service.verify_access_token(f"{header}.{segment(forged_claims)}.{signature}")


def test_tampered_header_is_rejected(service: TokenService, es256_key: SigningKey) -> None:
    _, payload, signature = mint(service).split(".")
    header = segment({"alg": "ES256", "typ": "at+jwt", "kid": es256_key.kid, "x": 1})
    with pytest.raises(InvalidToken):
        service.verify_access_token(f"{header}.{payload}.{signature}")


def test_tampered_signature_is_rejected(service: TokenService) -> None:
    header, payload, signature = mint(service).split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 0x01
    with pytest.raises(InvalidToken):
        service.verify_access_token(f"{header}.{payload}.{b64url(bytes(raw))}")


def test_stripped_signature_is_rejected(service: TokenService) -> None:
    header, payload, _ = mint(service).split(".")
    with pytest.raises(InvalidToken):
        service.verify_access_token(f"{header}.{payload}.")


# --- claims --------------------------------------------------------------------------


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_required_claim_is_enforced(
    claim: str, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    claims = claims_at(now)
    assert service.verify_access_token(sign(es256_key, claims)).subject == "user-123"
    del claims[claim]
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims))


@pytest.mark.parametrize("payload", [[1, 2], "claims", 42, None])
def test_signed_payload_that_is_not_an_object_is_rejected(
    payload: Any, service: TokenService, es256_key: SigningKey
) -> None:
    header = {"alg": "ES256", "typ": "at+jwt", "kid": es256_key.kid}
    token = hand_signed(es256_key, header, payload)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


@pytest.mark.parametrize("iss", ["https://evil.example", ISSUER + "/", ISSUER.upper(), ""])
def test_wrong_issuer_is_rejected(
    iss: str, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now, iss=iss)))


@pytest.mark.parametrize("aud", ["other-api", "API", ["other-api"], [], ""])
def test_wrong_audience_is_rejected(
    aud: Any, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now, aud=aud)))


def test_issuer_and_audience_are_checked_against_the_verifier_configuration(
    es256_key: SigningKey, now: datetime
) -> None:
    token = mint(make_service(es256_key, now))
    other = TokenService(
        signing_key=es256_key,
        verification_keys=(),
        issuer="https://other-issuer.example",
        audience=AUDIENCE,
        ttl_seconds=TTL,
        leeway_seconds=LEEWAY,
        clock=fixed(now),
    )
    with pytest.raises(InvalidToken):
        other.verify_access_token(token)


def test_expired_token_is_rejected(es256_key: SigningKey, now: datetime) -> None:
    token = mint(make_service(es256_key, now))
    later = make_service(es256_key, now + timedelta(seconds=TTL + LEEWAY))
    with pytest.raises(InvalidToken):
        later.verify_access_token(token)


def test_token_just_inside_the_expiry_leeway_is_accepted(
    es256_key: SigningKey, now: datetime
) -> None:
    token = mint(make_service(es256_key, now))
    later = make_service(es256_key, now + timedelta(seconds=TTL + LEEWAY - 1))
    assert later.verify_access_token(token).subject == "user-123"


def test_token_minted_in_the_past_is_expired(es256_key: SigningKey, now: datetime) -> None:
    token = mint(make_service(es256_key, now - timedelta(seconds=TTL + LEEWAY + 60)))
    with pytest.raises(InvalidToken):
        make_service(es256_key, now).verify_access_token(token)


def test_token_expired_by_less_than_the_leeway_is_accepted(
    es256_key: SigningKey, now: datetime
) -> None:
    # Minted by a replica whose clock is behind: exp is 5 s ago, the leeway is 10 s.
    token = mint(make_service(es256_key, now - timedelta(seconds=TTL + 5)))
    claims = make_service(es256_key, now).verify_access_token(token)
    assert claims.expires_at == now - timedelta(seconds=5)


def test_nbf_in_the_future_beyond_the_leeway_is_rejected(
    es256_key: SigningKey, now: datetime
) -> None:
    token = mint(make_service(es256_key, now + timedelta(seconds=LEEWAY + 1)))
    with pytest.raises(InvalidToken):
        make_service(es256_key, now).verify_access_token(token)


def test_nbf_at_the_edge_of_the_leeway_is_accepted(es256_key: SigningKey, now: datetime) -> None:
    token = mint(make_service(es256_key, now))
    earlier = make_service(es256_key, now - timedelta(seconds=LEEWAY))
    assert earlier.verify_access_token(token).subject == "user-123"
    too_early = make_service(es256_key, now - timedelta(seconds=LEEWAY + 1))
    with pytest.raises(InvalidToken):
        too_early.verify_access_token(token)


def test_nbf_in_the_future_within_the_leeway_is_accepted(
    es256_key: SigningKey, now: datetime
) -> None:
    # Minted by a replica whose clock is 5 s ahead; the verifier allows 10 s of skew.
    token = mint(make_service(es256_key, now + timedelta(seconds=5)))
    claims = make_service(es256_key, now).verify_access_token(token)
    assert claims.issued_at == now + timedelta(seconds=5)


def test_iat_in_the_future_beyond_the_leeway_is_rejected(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    claims = claims_at(now, iat=int(now.timestamp()) + LEEWAY + 1)
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims))


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "make_value",
    [
        pytest.param(lambda t: t + 0.5, id="float"),
        pytest.param(lambda t: str(t), id="numeric-string"),
        pytest.param(lambda t: None, id="null"),
        pytest.param(lambda t: [t], id="list"),
        pytest.param(lambda t: True, id="bool"),
        pytest.param(lambda t: {"t": t}, id="object"),
    ],
)
def test_non_integer_time_claims_are_rejected(
    claim: str,
    make_value: Callable[[int], Any],
    service: TokenService,
    es256_key: SigningKey,
    now: datetime,
) -> None:
    claims = claims_at(now)
    claims[claim] = make_value(claims[claim])
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims))


@pytest.mark.parametrize("exp", [10**20, 2**64, 10**400], ids=["1e20", "2^64", "1e400"])
def test_out_of_range_exp_is_rejected(
    exp: int, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    # An integer, in the future, but beyond what datetime can represent.
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now, exp=exp)))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", 123),
        ("sub", ""),
        ("jti", ""),
        ("jti", 7),
        ("client_id", None),
        ("client_id", ""),
        ("scope", ["profile"]),
        ("sid", ""),
        ("sid", {"id": "s"}),
    ],
)
def test_malformed_string_claims_are_rejected(
    claim: str, value: Any, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now, **{claim: value})))


def test_empty_scope_is_allowed(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    claims = service.verify_access_token(sign(es256_key, claims_at(now, scope="")))
    assert claims.scopes == frozenset()


# --- size ----------------------------------------------------------------------------


def _signed_token_of_length(key: SigningKey, now: datetime, at_least: int) -> str:
    """A validly signed token whose length is the first reachable one >= `at_least`."""
    base = len(sign(key, claims_at(now, pad="")))
    for extra in range(max(0, (at_least - base) * 3 // 4 - 8), at_least):
        token = sign(key, claims_at(now, pad="x" * extra))
        if len(token) >= at_least:
            return token
    raise AssertionError("unreachable")


def test_token_longer_than_8192_characters_is_rejected(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    assert MAX_TOKEN_LENGTH == 8192
    token = _signed_token_of_length(es256_key, now, MAX_TOKEN_LENGTH + 1)
    assert MAX_TOKEN_LENGTH < len(token) <= MAX_TOKEN_LENGTH + 4
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


def test_token_just_under_the_length_limit_is_accepted(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    token = _signed_token_of_length(es256_key, now, MAX_TOKEN_LENGTH - 3)
    assert MAX_TOKEN_LENGTH - 3 <= len(token) <= MAX_TOKEN_LENGTH
    assert service.verify_access_token(token).subject == "user-123"


# --- key sets ------------------------------------------------------------------------


def test_token_from_another_service_with_a_different_key_is_rejected(
    service: TokenService, attacker_key: SigningKey, now: datetime
) -> None:
    foreign = make_service(attacker_key, now)
    token = mint(foreign)
    assert foreign.verify_access_token(token).subject == "user-123"
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


@pytest.mark.parametrize("old_algorithm", ["ES256", "RS256"])
def test_key_listed_in_verification_keys_is_accepted(
    old_algorithm: str,
    es256_key: SigningKey,
    rs256_key: SigningKey,
    attacker_key: SigningKey,
    now: datetime,
) -> None:
    old_key = attacker_key if old_algorithm == "ES256" else rs256_key
    token = mint(make_service(old_key, now))

    rotated = make_service(es256_key, now, verification_keys=(old_key,))
    claims = rotated.verify_access_token(token)
    assert claims.subject == "user-123"
    # New tokens are signed with the active key, not the old one.
    assert jwt.get_unverified_header(mint(rotated))["kid"] == es256_key.kid

    without_old = make_service(es256_key, now)
    with pytest.raises(InvalidToken):
        without_old.verify_access_token(token)


# --- the verified-token cache ---------------------------------------------------------


class MovableClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_a_token_verified_before_still_expires(es256_key: SigningKey, now: datetime) -> None:
    clock = MovableClock(now)
    service = TokenService(
        signing_key=es256_key,
        verification_keys=(),
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl_seconds=TTL,
        leeway_seconds=LEEWAY,
        clock=clock,
    )
    token = mint(service)
    assert service.verify_access_token(token).subject == "user-123"
    clock.at = now + timedelta(seconds=TTL + LEEWAY - 1)
    assert service.verify_access_token(token).subject == "user-123"
    clock.at = now + timedelta(seconds=TTL + LEEWAY)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token)


def test_a_token_verified_before_is_refused_once_its_key_is_retired(
    es256_key: SigningKey, attacker_key: SigningKey, now: datetime
) -> None:
    service = make_service(attacker_key, now, verification_keys=(es256_key,))
    old = mint(make_service(es256_key, now))
    assert service.verify_access_token(old).subject == "user-123"
    service.use_keys(attacker_key, ())
    with pytest.raises(InvalidToken):
        service.verify_access_token(old)
    service.use_keys(attacker_key, (es256_key,))  # published again: valid again
    assert service.verify_access_token(old).subject == "user-123"


def test_a_tampered_copy_of_a_verified_token_is_still_refused(service: TokenService) -> None:
    token = mint(service)
    service.verify_access_token(token)
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["scope"] = "profile admin"
    with pytest.raises(InvalidToken):
        service.verify_access_token(f"{header}.{segment(claims)}.{signature}")


def test_the_verified_token_cache_is_bounded(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import auth_service.security.tokens as tokens

    monkeypatch.setattr(tokens, "VERIFIED_CACHE_ENTRIES", 8)
    minted = [mint(service) for _ in range(20)]
    for token in minted:
        service.verify_access_token(token)
    assert len(service._verified) == 8
    assert all(service.verify_access_token(token).subject == "user-123" for token in minted)


def test_credential_version_is_read_and_defaults_to_zero(
    service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    versioned = service.verify_access_token(sign(es256_key, claims_at(now, cred_ver=7)))
    assert versioned.credential_version == 7
    # Tokens minted before the claim existed read as version 0 (dead once disabled).
    assert service.verify_access_token(sign(es256_key, claims_at(now))).credential_version == 0


@pytest.mark.parametrize("value", ["1", -1, 1.5, True, None, 10**20])
def test_malformed_credential_version_is_rejected(
    value: Any, service: TokenService, es256_key: SigningKey, now: datetime
) -> None:
    with pytest.raises(InvalidToken):
        service.verify_access_token(sign(es256_key, claims_at(now, cred_ver=value)))


# --- one token, one string (issue 12, item 16) ----------------------------------------


def _mint_with_both_alphabet_characters(service: TokenService) -> str:
    for _ in range(64):
        token = mint(service)
        if any(char in token for char in "-_"):
            return token
    raise AssertionError("no token with '-' or '_' in 64 tries")


def test_minted_es256_signatures_are_low_s(service: TokenService) -> None:
    for _ in range(32):
        assert jws_variants.es256_s(mint(service)) <= jws_variants.P256_ORDER // 2


@pytest.mark.parametrize(
    "variant",
    [
        jws_variants.padded,
        jws_variants.standard_alphabet,
        jws_variants.loose_trailing_bits,
        jws_variants.flipped_s,
    ],
)
def test_other_spellings_of_a_valid_token_are_rejected(
    service: TokenService, variant: Callable[[str], str]
) -> None:
    token = _mint_with_both_alphabet_characters(service)
    service.verify_access_token(token)
    spelled = variant(token)
    assert spelled != token
    with pytest.raises(InvalidToken):
        service.verify_access_token(spelled)


def test_rs256_token_in_the_standard_alphabet_is_rejected(
    rs256_key: SigningKey, now: datetime
) -> None:
    service = make_service(rs256_key, now)
    token = _mint_with_both_alphabet_characters(service)
    service.verify_access_token(token)
    with pytest.raises(InvalidToken):
        service.verify_access_token(jws_variants.standard_alphabet(token))


@pytest.mark.parametrize(
    "variant",
    [
        jws_variants.padded,
        jws_variants.standard_alphabet,
        jws_variants.loose_trailing_bits,
        jws_variants.flipped_s,
    ],
)
async def test_users_me_refuses_other_spellings_of_a_valid_token(
    client: httpx.AsyncClient, variant: Callable[[str], str]
) -> None:
    await register(client)
    # Only the 86 signature characters are likely to hold '-' or '_' (~94% of tokens do).
    for _ in range(20):
        token = (await password_grant(client)).json()["access_token"]
        if any(char in token for char in "-_"):
            break
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    spelled = variant(token)
    assert spelled != token
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {spelled}"})
    assert response.status_code == 401, response.text
