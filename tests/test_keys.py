"""Signing keys: RFC 7638 thumbprints as kid, JWKS with public members only, key checks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jose import jwk

from auth_service.security.keys import (
    KeyConfigurationError,
    SigningKey,
    generate_private_key_pem,
    jwk_thumbprint,
    jwks_document,
    load_or_create_development_key,
    load_signing_key,
)

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
    "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4v"
    "MQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def pem_of(
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def b64url_uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else (value.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode("ascii")


def independent_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 computed here, without the code under test."""
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def es256_pem() -> bytes:
    return generate_private_key_pem("ES256")


@pytest.fixture(scope="module")
def rs256_pem() -> bytes:
    return generate_private_key_pem("RS256")


@pytest.fixture(scope="module")
def keys(es256_pem: bytes, rs256_pem: bytes) -> dict[str, SigningKey]:
    return {
        "ES256": load_signing_key(es256_pem, "ES256"),
        "RS256": load_signing_key(rs256_pem, "RS256"),
    }


# --- thumbprints ---------------------------------------------------------------------


def test_rfc7638_example_thumbprint() -> None:
    example = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk_thumbprint(example) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members_and_member_order() -> None:
    reordered = {"use": "sig", "e": "AQAB", "kid": "x", "n": RFC7638_N, "kty": "RSA"}
    assert jwk_thumbprint(reordered) == RFC7638_THUMBPRINT
    # ...but a change to a required member changes it.
    assert jwk_thumbprint({"kty": "RSA", "n": RFC7638_N, "e": "AQAC"}) != RFC7638_THUMBPRINT


def test_ec_kid_is_the_rfc7638_thumbprint(keys: dict[str, SigningKey]) -> None:
    key = keys["ES256"]
    numbers = key.public_key.prepared_key.public_numbers()
    expected = independent_thumbprint(
        {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url_uint(numbers.x, 32),
            "y": b64url_uint(numbers.y, 32),
        }
    )
    assert key.kid == expected
    assert key.public_jwk["kid"] == expected


def test_rsa_kid_is_the_rfc7638_thumbprint(keys: dict[str, SigningKey]) -> None:
    key = keys["RS256"]
    numbers = key.public_key.prepared_key.public_numbers()
    expected = independent_thumbprint(
        {"e": b64url_uint(numbers.e), "kty": "RSA", "n": b64url_uint(numbers.n)}
    )
    assert expected != ""
    assert key.kid == expected
    assert key.public_jwk["kid"] == expected


def test_kid_is_stable_for_the_same_key_and_differs_between_keys(es256_pem: bytes) -> None:
    assert load_signing_key(es256_pem, "ES256").kid == load_signing_key(es256_pem, "ES256").kid
    other = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    assert other.kid != load_signing_key(es256_pem, "ES256").kid


# --- JWKS ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "members"),
    [
        ("ES256", {"kty", "crv", "x", "y", "kid", "alg", "use"}),
        ("RS256", {"kty", "n", "e", "kid", "alg", "use"}),
    ],
)
def test_jwks_document_has_public_members_only(
    algorithm: str, members: set[str], keys: dict[str, SigningKey]
) -> None:
    key = keys[algorithm]
    document = jwks_document([key])
    assert list(document) == ["keys"]
    [published] = document["keys"]
    assert set(published) == members
    assert not PRIVATE_MEMBERS & set(published)
    assert published["alg"] == algorithm
    assert published["use"] == "sig"
    assert published["kid"] == key.kid
    assert all(isinstance(value, str) for value in published.values())
    # The private key does have those members: the filter is what removes them.
    assert {"d"} <= set(key.private_key.to_dict())


def test_jwks_document_lists_every_key_in_order(keys: dict[str, SigningKey]) -> None:
    document = jwks_document([keys["ES256"], keys["RS256"]])
    assert [entry["kid"] for entry in document["keys"]] == [keys["ES256"].kid, keys["RS256"].kid]
    serialized = json.dumps(document)
    for member in PRIVATE_MEMBERS:
        assert f'"{member}"' not in serialized


def test_jwks_document_returns_copies(keys: dict[str, SigningKey]) -> None:
    document = jwks_document([keys["ES256"]])
    document["keys"][0]["d"] = "leaked"
    assert "d" not in keys["ES256"].public_jwk
    assert "d" not in jwks_document([keys["ES256"]])["keys"][0]


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_published_jwk_verifies_signatures_of_the_private_key(
    algorithm: str, keys: dict[str, SigningKey]
) -> None:
    key = keys[algorithm]
    [published] = jwks_document([key])["keys"]
    verifier = jwk.construct(published, algorithm)
    signature = key.private_key.sign(b"message")
    assert verifier.verify(b"message", signature) is True
    assert verifier.verify(b"other message", signature) is False


# --- development key file ------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_development_key_is_created_once_with_mode_0600(algorithm: str, tmp_path: Path) -> None:
    path = tmp_path / "keys" / f"signing-{algorithm.lower()}.pem"
    assert not path.exists()

    first = load_or_create_development_key(tmp_path, algorithm)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not stat.S_IMODE(path.parent.stat().st_mode) & 0o077
    content = path.read_bytes()
    assert first.kid == load_signing_key(content, algorithm).kid
    assert first.algorithm == algorithm

    second = load_or_create_development_key(tmp_path, algorithm)
    assert second.kid == first.kid
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left


def test_existing_development_key_file_is_reused(tmp_path: Path, es256_pem: bytes) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signing-es256.pem").write_bytes(es256_pem)
    key = load_or_create_development_key(tmp_path, "ES256")
    assert key.kid == load_signing_key(es256_pem, "ES256").kid


def test_development_keys_per_algorithm_are_separate_files(tmp_path: Path) -> None:
    es = load_or_create_development_key(tmp_path, "ES256")
    assert os.listdir(tmp_path / "keys") == ["signing-es256.pem"]
    rs = load_or_create_development_key(tmp_path, "RS256")
    assert sorted(os.listdir(tmp_path / "keys")) == ["signing-es256.pem", "signing-rs256.pem"]
    assert (es.algorithm, rs.algorithm) == ("ES256", "RS256")
    assert es.kid != rs.kid
    assert load_or_create_development_key(tmp_path, "ES256").kid == es.kid


def test_unusable_development_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signing-es256.pem").write_bytes(b"not a key")
    with pytest.raises(KeyConfigurationError):
        load_or_create_development_key(tmp_path, "ES256")


# --- key checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pem_algorithm", "configured"),
    [("ES256", "RS256"), ("RS256", "ES256")],
)
def test_key_type_that_does_not_fit_the_algorithm_is_refused(
    pem_algorithm: str, configured: str, es256_pem: bytes, rs256_pem: bytes
) -> None:
    pem = es256_pem if pem_algorithm == "ES256" else rs256_pem
    with pytest.raises(KeyConfigurationError):
        load_signing_key(pem, configured)


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP256K1(), ec.SECP521R1()])
def test_es256_needs_curve_p256(curve: ec.EllipticCurve) -> None:
    with pytest.raises(KeyConfigurationError):
        load_signing_key(pem_of(ec.generate_private_key(curve)), "ES256")


def test_ed25519_key_is_refused_for_es256() -> None:
    with pytest.raises(KeyConfigurationError):
        load_signing_key(pem_of(ed25519.Ed25519PrivateKey.generate()), "ES256")


@pytest.mark.parametrize("algorithm", ["HS256", "none", "ES384", "PS256", "EdDSA", ""])
def test_unsupported_algorithm_is_refused(algorithm: str, es256_pem: bytes) -> None:
    with pytest.raises(KeyConfigurationError):
        load_signing_key(es256_pem, algorithm)
    with pytest.raises(KeyConfigurationError):
        generate_private_key_pem(algorithm)


def test_rsa_key_below_2048_bits_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyConfigurationError):
        load_signing_key(pem_of(small), "RS256")


def test_rsa_key_of_2048_bits_is_accepted() -> None:
    key = load_signing_key(
        pem_of(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "RS256"
    )
    assert key.algorithm == "RS256"
    assert key.public_jwk["kty"] == "RSA"


def test_generated_keys_have_the_documented_sizes(es256_pem: bytes, rs256_pem: bytes) -> None:
    es = serialization.load_pem_private_key(es256_pem, password=None)
    rs = serialization.load_pem_private_key(rs256_pem, password=None)
    assert isinstance(es, ec.EllipticCurvePrivateKey)
    assert isinstance(es.curve, ec.SECP256R1)
    assert isinstance(rs, rsa.RSAPrivateKey)
    assert rs.key_size == 3072
    assert es256_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def _public_pem(pem: bytes) -> bytes:
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "make_pem",
    [
        pytest.param(lambda pem: b"", id="empty"),
        pytest.param(lambda pem: b"garbage", id="garbage"),
        pytest.param(lambda pem: pem[: len(pem) // 2], id="truncated"),
        pytest.param(lambda pem: pem.replace(b"M", b"%"), id="corrupted"),
        pytest.param(
            lambda pem: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            id="bad-der",
        ),
        pytest.param(_public_pem, id="public-key"),
    ],
)
def test_garbage_pem_is_refused(make_pem: Callable[[bytes], bytes], es256_pem: bytes) -> None:
    with pytest.raises(KeyConfigurationError):
        load_signing_key(make_pem(es256_pem), "ES256")


def test_encrypted_pem_is_refused() -> None:
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(KeyConfigurationError):
        load_signing_key(encrypted, "ES256")


def test_key_configuration_error_is_a_value_error() -> None:
    assert issubclass(KeyConfigurationError, ValueError)
