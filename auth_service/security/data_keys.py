"""Encryption at rest for secrets the service must read back (TOTP seeds): AES-256-GCM.

The key file holds one base64 key (32 bytes) per line; `#` starts a comment. The first
key encrypts, every key decrypts, so a key is rotated by putting a new one first and
dropping the old line once nothing is sealed under it. Each ciphertext is stored with
the id of its key (a fingerprint, so the file needs no names) and sealed with associated
data naming what it is and whose: a row copied onto another user does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auth_service.security.keys import KeyConfigurationError, write_private_file

__all__ = [
    "DataCipher",
    "Sealed",
    "SealedDataUnreadable",
    "generate_data_key_line",
    "load_data_cipher",
    "load_or_create_development_cipher",
]

log = logging.getLogger(__name__)

_KEY_BYTES = 32
_NONCE_BYTES = 12
DEVELOPMENT_KEY_NAME = "data-encryption.key"


class SealedDataUnreadable(Exception):
    """A ciphertext names a key we do not hold, or does not authenticate."""


@dataclass(frozen=True)
class Sealed:
    """A ciphertext (base64 of nonce || ciphertext || tag) and the id of its key."""

    key_id: str
    ciphertext: str


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"auth-service data key\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class DataCipher:
    """AES-GCM with an active key and older keys kept for decryption."""

    keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyConfigurationError("the data encryption key file holds no key")

    @property
    def active_key_id(self) -> str:
        """The id written beside new ciphertexts."""
        return _key_id(self.keys[0])

    def seal(self, plaintext: bytes, *, context: str) -> Sealed:
        """Encrypt under the active key; `context` (purpose and owner) must match to open."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, plaintext, context.encode("utf-8"))
        return Sealed(self.active_key_id, base64.b64encode(nonce + sealed).decode("ascii"))

    def open(self, sealed: Sealed, *, context: str) -> bytes:
        """Decrypt with the key the ciphertext names; SealedDataUnreadable if impossible."""
        key = next((k for k in self.keys if _key_id(k) == sealed.key_id), None)
        if key is None:
            raise SealedDataUnreadable(f"no data encryption key with id {sealed.key_id}")
        try:
            raw = base64.b64decode(sealed.ciphertext, validate=True)
            return AESGCM(key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8")
            )
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SealedDataUnreadable("the ciphertext does not authenticate") from exc


def generate_data_key_line() -> str:
    """A new key as one line of the key file."""
    return base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii") + "\n"


def _parse(text: str, path: Path) -> DataCipher:
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != _KEY_BYTES:
            raise KeyConfigurationError(
                f"{path}:{number}: not a base64 32-byte key (make one with "
                "`head -c32 /dev/urandom | base64`)"
            )
        keys.append(key)
    if not keys:
        raise KeyConfigurationError(f"{path} holds no data encryption key")
    return DataCipher(tuple(keys))


def load_data_cipher(path: Path) -> DataCipher:
    """The keys of AUTH_DATA_ENCRYPTION_KEY_FILE."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyConfigurationError(f"cannot read the data encryption key file {path}") from exc
    return _parse(text, path)


def load_or_create_development_cipher(data_dir: Path) -> DataCipher:
    """Reuse `<data_dir>/keys/data-encryption.key`, creating it (mode 0600) on first start."""
    path = data_dir / "keys" / DEVELOPMENT_KEY_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        # As for the signing key: a private temp file hard-linked into place, so two
        # processes starting at once end up with the same key.
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write_private_file(temp, generate_data_key_line().encode("ascii"))
        try:
            os.link(temp, path)
            log.warning("DEVELOPMENT SETUP: generated a data encryption key at %s", path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return load_data_cipher(path)
