"""Wait at start for the database and Redis to accept connections: backoff, then give up.

A container started before its database, or pointed at a closed port, would otherwise exit
at once and be restarted in a tight loop by its orchestrator, writing a traceback each time.
`serve` and `migrate` instead retry with exponential backoff for AUTH_STARTUP_WAIT_SECONDS,
log one line per attempt, and then exit with one line naming what was unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from auth_service.db.engine import create_engine, is_sqlite
from auth_service.stores.redis_client import connect as connect_redis

__all__ = [
    "Backoff",
    "DependencyUnreachableError",
    "wait_for_database",
    "wait_for_redis",
    "wait_until_reachable",
]

log = logging.getLogger(__name__)

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


class DependencyUnreachableError(Exception):
    """The database or Redis did not accept a connection within the startup bound."""

    def __init__(
        self, what: str, bound_seconds: float, cause: BaseException, *, permanent: bool = False
    ) -> None:
        self.what = what
        reason = _one_line(cause)
        if permanent:  # retrying cannot help: say so at once
            super().__init__(f"{what} refused the connection: {reason}")
        else:
            super().__init__(
                f"{what} did not accept connections within {bound_seconds:g} s "
                f"(AUTH_STARTUP_WAIT_SECONDS): {reason}"
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
    """Run `probe` until it succeeds; the number of attempts, or DependencyUnreachableError."""
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
                "waiting for %s: %s; attempt %d, next in %.2g s",
                what,
                _one_line(exc),
                attempt,
                pause,
            )
            await sleep(pause)
        else:
            if attempt > 1:
                log.info("%s accepts connections (after %d attempts)", what, attempt)
            return attempt


def _safe_database_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _safe_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


async def wait_for_database(url: str, *, bound_seconds: float) -> None:
    """Wait until the database answers `SELECT 1` (SQLite files need no wait)."""
    if is_sqlite(url):
        return

    async def probe() -> None:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    what = f"the database at {_safe_database_url(url)} (AUTH_DATABASE_URL)"
    await wait_until_reachable(what, probe, bound_seconds=bound_seconds)


async def wait_for_redis(url: str, *, bound_seconds: float) -> None:
    """Wait until Redis answers PING."""

    async def probe() -> None:
        client = connect_redis(url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    what = f"Redis at {_safe_redis_url(url)} (AUTH_REDIS_URL)"
    await wait_until_reachable(what, probe, bound_seconds=bound_seconds)
