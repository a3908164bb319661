"""The data encryption key: its file, rotation, development generation, production rules."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from auth_service.config import Settings
from auth_service.security.data_keys import (
    DataCipher,
    SealedDataUnreadable,
    generate_data_key_line,
    load_data_cipher,
    load_or_create_development_cipher,
)
from auth_service.security.keys import KeyConfigurationError
from auth_service.startup import StartupRefused, check_keys


def _cipher(*lines: str, tmp_path: Path) -> DataCipher:
    path = tmp_path / "data.key"
    path.write_text("".join(lines))
    return load_data_cipher(path)


def test_sealed_data_opens_only_in_its_own_context(tmp_path: Path) -> None:
    cipher = _cipher(generate_data_key_line(), tmp_path=tmp_path)
    sealed = cipher.seal(b"JBSWY3DPEHPK3PXP", context="totp-secret:u1")
    assert sealed.key_id == cipher.active_key_id
    assert b"JBSWY3DPEHPK3PXP" not in base64.b64decode(sealed.ciphertext)
    assert cipher.open(sealed, context="totp-secret:u1") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(SealedDataUnreadable):
        cipher.open(sealed, context="totp-secret:u2")  # copied onto another user's row
    assert cipher.seal(b"x", context="c").ciphertext != cipher.seal(b"x", context="c").ciphertext


def test_a_rotated_key_file_still_opens_what_the_old_key_sealed(tmp_path: Path) -> None:
    old, new = generate_data_key_line(), generate_data_key_line()
    before = _cipher("# the first line encrypts\n", old, tmp_path=tmp_path)
    sealed = before.seal(b"seed", context="c")
    after = _cipher(new, old, tmp_path=tmp_path)
    assert after.active_key_id != before.active_key_id
    assert after.open(sealed, context="c") == b"seed"
    assert after.seal(b"seed", context="c").key_id == after.active_key_id
    dropped = _cipher(new, tmp_path=tmp_path)
    with pytest.raises(SealedDataUnreadable, match="no data encryption key"):
        dropped.open(sealed, context="c")


@pytest.mark.parametrize("content", ["", "# nothing\n", "not base64!\n", "c2hvcnQ=\n"])
def test_a_bad_key_file_is_refused(tmp_path: Path, content: str) -> None:
    with pytest.raises(KeyConfigurationError):
        _cipher(content, tmp_path=tmp_path)


def test_development_generates_one_private_key_and_reuses_it(tmp_path: Path) -> None:
    first = load_or_create_development_cipher(tmp_path / "var")
    path = tmp_path / "var" / "keys" / "data-encryption.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_development_cipher(tmp_path / "var").keys == first.keys


def test_production_requires_the_key_file(tmp_path: Path) -> None:
    production = {
        "environment": "production",
        "database_url": "postgresql+asyncpg://db/auth",
        "redis_url": "redis://redis:6379/0",
        "signing_key_file": tmp_path / "signing.pem",
        "issuer": "https://auth.example.com",
        "trusted_proxies": [],
    }
    with pytest.raises(ValidationError, match="AUTH_DATA_ENCRYPTION_KEY_FILE"):
        Settings(_env_file=None, **production)  # type: ignore[arg-type]
    ok = Settings(_env_file=None, data_encryption_key_file=tmp_path / "k", **production)  # type: ignore[arg-type]
    assert ok.data_encryption_key_file == tmp_path / "k"


def test_startup_refuses_an_unreadable_key_file(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_encryption_key_file=tmp_path / "missing")
    with pytest.raises(StartupRefused, match="AUTH_DATA_ENCRYPTION_KEY_FILE"):
        check_keys(settings)
