"""Checks the CLI runs before migrating or serving, each failure one line naming a variable.

Settings validate what can be judged from the values alone (config.py); these checks need
the filesystem or the network: the key files can be read and fit the algorithm, the
database (and, for `serve`, Redis) answers. `migrate` runs them too, so an entrypoint that
migrates and then serves stops before touching the schema.

A database or Redis that does not answer yet is waited for: a container started before
its database, or pointed at a closed port, would otherwise exit at once and be restarted
in a tight loop by its orchestrator. `serve` and `migrate` retry with exponential backoff
for AUTH_STARTUP_WAIT_SECONDS, log one line per failed attempt, then exit with one line.
Bad credentials or a missing database are refused at once: waiting cannot fix them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from auth_service.config import Settings
from auth_service.db.engine import is_sqlite, probe_database
from auth_service.security.keyring import KeyDirectory
from auth_service.security.keys import KeyConfigurationError, load_signing_key
from auth_service.security.tokens import utc_now
from auth_service.stores.redis_client import connect as connect_redis

__all__ = [
    "Backoff",
    "DependencyUnreachableError",
    "StartupRefused",
    "check_keys",
    "wait_for_database",
    "wait_for_redis",
    "wait_until_reachable",
]

log = logging.getLogger(__name__)


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
            records = keys.records()
            if records:
                present = {r.algorithm for r in records}
                keys.load(
                    settings.signing_algorithm if settings.signing_algorithm in present else None
                )
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


# --- waiting for the database and Redis ---------------------------------------------------

# Connection errors that may clear up by themselves (server starting, port not yet open).
_TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, DBAPIError, RedisError)
# SQLSTATE classes no retry can fix: bad credentials (28), no such database (3D).
_PERMANENT_SQLSTATE_CLASSES = ("28", "3D")


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: `first`, times `factor` each time, at most `longest`."""

    first: float = 0.25
    factor: float = 2.0
    longest: float = 5.0
    attempt_timeout: float = 5.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        return float(min(self.longest, self.first * self.factor ** (attempt - 1)))


class DependencyUnreachableError(StartupRefused):
    """The database or Redis did not accept a connection within the startup bound."""

    def __init__(
        self, what: str, bound_seconds: float, cause: BaseException, *, permanent: bool = False
    ) -> None:
        self.what = what
        reason = _one_line(cause)
        if permanent:  # retrying cannot help: say so at once
            super().__init__(f"{what}: {reason}")
        else:
            super().__init__(
                f"{what} within {bound_seconds:g} s (AUTH_STARTUP_WAIT_SECONDS): {reason}"
            )


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _is_permanent(exc: BaseException) -> bool:
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    return isinstance(sqlstate, str) and sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES


async def wait_until_reachable(
    what: str,
    probe: Callable[[], Awaitable[None]],
    *,
    bound_seconds: float,
    backoff: Backoff = Backoff(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Run `probe` until it succeeds; the number of attempts, or DependencyUnreachableError.

    `what` names the variable and the address, e.g. "AUTH_DATABASE_URL: cannot connect to
    db:5432/auth"; it starts every log line and the final error.
    """
    deadline = clock() + bound_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(backoff.attempt_timeout):
                await probe()
        except _TRANSIENT as exc:
            if _is_permanent(exc):
                raise DependencyUnreachableError(what, 0, exc, permanent=True) from exc
            remaining = deadline - clock()
            if remaining <= 0:
                raise DependencyUnreachableError(what, bound_seconds, exc) from exc
            pause = min(backoff.delay(attempt), remaining)
            log.warning(
                "waiting: %s: %s; attempt %d, next in %.2g s", what, _one_line(exc), attempt, pause
            )
            await sleep(pause)
        else:
            if attempt > 1:
                log.info("%s: connected after %d attempts", what.split(":")[0], attempt)
            return attempt


def _redis_where(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"


async def wait_for_database(url: str, *, bound_seconds: float) -> None:
    """Wait until the database answers `SELECT 1` (SQLite files need no wait)."""
    if is_sqlite(url):
        return

    async def probe() -> None:
        await probe_database(url, timeout_seconds=Backoff().attempt_timeout)

    what = f"AUTH_DATABASE_URL: cannot connect to {_where(url)}"
    await wait_until_reachable(what, probe, bound_seconds=bound_seconds)


async def wait_for_redis(url: str, *, bound_seconds: float) -> None:
    """Wait until Redis answers PING."""

    async def probe() -> None:
        client = connect_redis(url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    what = f"AUTH_REDIS_URL: cannot connect to {_redis_where(url)}"
    await wait_until_reachable(what, probe, bound_seconds=bound_seconds)
