"""Checks the CLI runs before migrating or serving, each failure one line naming a variable.

Settings validate what can be judged from the values alone (config.py); these checks need
the filesystem or the network: the key files can be read and fit the algorithm, the
database answers. `migrate` runs them too, so an entrypoint that migrates and then serves
stops before touching the schema.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.engine import make_url

from auth_service.config import Settings
from auth_service.db.engine import probe_database
from auth_service.security.keyring import KeyDirectory
from auth_service.security.keys import KeyConfigurationError, load_signing_key
from auth_service.security.tokens import utc_now

__all__ = ["DATABASE_PROBE_TIMEOUT_SECONDS", "StartupRefused", "check_database", "check_keys"]

DATABASE_PROBE_TIMEOUT_SECONDS = 10.0


class StartupRefused(Exception):
    """A setting points at something that cannot work; the message names the variable."""


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        reason = "does not exist"
    except IsADirectoryError:
        reason = "is a directory, not a PEM file"
    except PermissionError:
        reason = "is not readable by this user (the container runs as uid 10001)"
    except OSError as exc:
        reason = f"cannot be read ({exc.strerror or exc})"
    raise StartupRefused(f"AUTH_SIGNING_KEY_FILE: {path} {reason}")


def check_keys(settings: Settings) -> None:
    """The configured key file or key directory yields a usable signing key."""
    if settings.signing_key_file is not None:
        path = settings.signing_key_file
        try:
            load_signing_key(_read_key_file(path), settings.signing_algorithm)
        except KeyConfigurationError as exc:
            raise StartupRefused(f"AUTH_SIGNING_KEY_FILE: {path}: {exc}") from None
    elif settings.keys_dir is not None:
        directory = settings.keys_dir
        keys = KeyDirectory(directory, utc_now)
        try:
            # An empty or missing directory is fine: the first start creates its first key.
            if keys.records():
                keys.load()
        except KeyConfigurationError as exc:
            raise StartupRefused(f"AUTH_KEYS_DIR: {directory}: {exc}") from None
        except OSError as exc:
            reason = f"{exc.strerror}: {exc.filename}" if exc.strerror else str(exc)
            raise StartupRefused(f"AUTH_KEYS_DIR: {directory}: {reason}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise StartupRefused(
                f"AUTH_KEYS_DIR: {directory}: keyset.json is not a key list ({exc})"
            ) from None


def _where(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def check_database(settings: Settings) -> None:
    """The database answers a trivial query within a bounded time (never a traceback)."""
    url = settings.effective_database_url
    try:
        asyncio.run(probe_database(url, timeout_seconds=DATABASE_PROBE_TIMEOUT_SECONDS))
    except Exception as exc:  # any failure to connect is reported the same way
        text = str(getattr(exc, "orig", None) or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise StartupRefused(
            f"AUTH_DATABASE_URL: cannot connect to {_where(url)}: {reason}"
        ) from None
