"""One Redis connection pool per process, shared by the revocation and throttle stores."""

from __future__ import annotations

from redis import asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["connect"]


def connect(url: str, *, timeout_seconds: float = 1.0) -> redis_asyncio.Redis:
    """A client that fails fast (the callers fail closed) and survives a Redis restart."""
    return redis_asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry_on_timeout=False,
        # After a Redis restart every pooled connection is dead once: retry a closed
        # connection one time on a fresh one, but never wait twice on a timeout.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
