"""One Redis connection pool per process, shared by the revocation and throttle stores."""

from __future__ import annotations

from typing import Any

from redis import asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["connect", "connect_sentinel"]


def _client_options(timeout_seconds: float) -> dict[str, Any]:
    """Fail fast (the callers fail closed), survive a restart: shared by both ways in."""
    return {
        "decode_responses": True,
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry_on_timeout": False,
        # After a Redis restart or failover every pooled connection is dead once: retry a
        # closed connection one time on a fresh one, but never wait twice on a timeout.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }


def connect(url: str, *, timeout_seconds: float = 1.0) -> redis_asyncio.Redis:
    """A client that fails fast (the callers fail closed) and survives a Redis restart."""
    return redis_asyncio.Redis.from_url(url, **_client_options(timeout_seconds))


class SentinelRedis(redis_asyncio.Redis):
    """A client of Sentinel's current primary that also closes its Sentinel connections."""

    owned_sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the primary's pool, then the connections to the Sentinels."""
        await super().aclose(close_connection_pool)
        if self.owned_sentinel is not None:
            await self.owned_sentinel.aclose()


def connect_sentinel(
    sentinels: list[tuple[str, int]], master: str, *, timeout_seconds: float = 1.0
) -> redis_asyncio.Redis:
    """A client that asks Sentinel for the primary on every new connection.

    A connection to a demoted primary (READONLY) or a dead one is dropped, and the next
    one goes to whichever server Sentinel names then: a failover needs no restart.
    """
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        sentinels,
        sentinel_kwargs={
            "socket_timeout": timeout_seconds,
            "socket_connect_timeout": timeout_seconds,
        },
    )
    client: SentinelRedis = sentinel.master_for(
        master, redis_class=SentinelRedis, **_client_options(timeout_seconds)
    )
    client.owned_sentinel = sentinel
    return client
