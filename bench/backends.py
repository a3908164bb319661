"""The two backends the bench runs on, each set up fresh and removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import asyncpg  # no stubs; we only connect and execute
import redis

__all__ = ["BACKENDS", "embedded_backend", "postgres_redis_backend"]

POSTGRES_ADMIN_DSN = os.environ.get(
    "BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _postgres(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _delete_redis_keys(prefix: str) -> int:
    """Delete every key under the bench's prefix (bounded SCAN); return how many."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    deleted = 0
    try:
        cursor = 0
        for _ in range(100_000):
            cursor, keys = client.scan(cursor=cursor, match=f"{prefix}*", count=1000)
            if keys:
                deleted += int(client.delete(*keys))
            if cursor == 0:
                break
    finally:
        client.close()
    return deleted


@contextlib.contextmanager
def embedded_backend(workdir: Path) -> Iterator[dict[str, str]]:
    """SQLite + in-process store in a temp data dir (the embedded default)."""
    yield {"AUTH_DATA_DIR": str(workdir / "data")}


@contextlib.contextmanager
def postgres_redis_backend(workdir: Path) -> Iterator[dict[str, str]]:
    """Its own PostgreSQL database and Redis key prefix, both removed on exit."""
    token = secrets.token_hex(4)
    database = f"auth_bench_{token}"
    prefix = f"auth_bench_{token}:"
    redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
    asyncio.run(_postgres(f'CREATE DATABASE "{database}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield {
            "AUTH_DATA_DIR": str(workdir / "data"),
            "AUTH_DATABASE_URL": f"{base}/{database}",
            "AUTH_REDIS_URL": REDIS_URL,
            "AUTH_REDIS_KEY_PREFIX": prefix,
        }
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        _delete_redis_keys(prefix)


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[dict[str, str]]]] = {
    "embedded": embedded_backend,
    "postgres_redis": postgres_redis_backend,
}
