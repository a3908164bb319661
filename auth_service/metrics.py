"""Prometheus metrics of one worker process, and one scrape that covers every worker.

With several uvicorn workers each is its own process, and a scrape reaches one of them.
prometheus-client's multiprocess mode keeps every worker's samples in files under
`PROMETHEUS_MULTIPROC_DIR` (which `serve` prepares per run before any worker starts,
auth_service/server.py), and
the worker that answers a scrape reads them all: counters and histograms add up, gauges of
a process (memory, CPU, fds) keep one series per `pid`, pool gauges add up over live
workers. Without that variable (tests, one app in one process) the app's own registry is
exposed as it is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from auth_service.repositories import PoolStatus
from auth_service.security.passwords import HashingPool

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "MULTIPROCESS_DIR_ENV",
    "RuntimeMetrics",
    "exposition",
    "multiprocess_directory",
]

log = logging.getLogger(__name__)

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request latency up to and past the 5 s a login may wait for the hashing pool.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10)
# How often each worker publishes its gauges in multiprocess mode (the scraped worker
# publishes its own at the scrape), and every how many samples it pings Redis.
SAMPLE_INTERVAL_SECONDS = 1.0
REDIS_PING_EVERY = 10
_PING_TIMEOUT_SECONDS = 1.0

# ProcessCollector's families, re-published as gauges (one series per worker pid).
_PROCESS_FAMILIES = {
    "process_resident_memory_bytes": "Resident memory of the worker process",
    "process_cpu_seconds_total": "CPU time of the worker process (user + system)",
    "process_open_fds": "Open file descriptors of the worker process",
}


def multiprocess_directory() -> Path | None:
    """The directory of multiprocess mode, when this process runs in it."""
    value = os.environ.get(MULTIPROCESS_DIR_ENV)
    return Path(value) if value else None


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of every worker's metrics (multiprocess mode) or of `registry`."""
    if multiprocess_directory() is None:
        return generate_latest(registry)
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return generate_latest(merged)


class RuntimeMetrics:
    """Gauges of this worker: process, database pool, hashing pool; Redis round trips."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        database_pool: Callable[[], PoolStatus],
        hasher: HashingPool,
        redis_ping: Callable[[], Awaitable[object]] | None,
    ) -> None:
        self._database_pool = database_pool
        self._hasher = hasher
        self._redis_ping = redis_ping
        self._process = ProcessCollector(registry=None)
        self._process_gauges = {
            name: Gauge(name, text, registry=registry, multiprocess_mode="liveall")
            for name, text in _PROCESS_FAMILIES.items()
        }

        def total(name: str, text: str) -> Gauge:
            return Gauge(name, text, registry=registry, multiprocess_mode="livesum")

        self._pool_size = total("auth_database_pool_size", "Database connections kept open")
        self._checked_out = total(
            "auth_database_pool_checked_out", "Database connections in use by requests"
        )
        self._overflow = total(
            "auth_database_pool_overflow", "Database connections opened beyond the pool size"
        )
        self._queued = total(
            "auth_database_queue_length",
            "Database jobs waiting for the SQLite worker (0 on PostgreSQL)",
        )
        self._hash_size = total("auth_hash_pool_size", "argon2 threads")
        self._hash_in_flight = total(
            "auth_password_hash_in_flight", "argon2 jobs running or waiting for a pool thread"
        )
        self._hash_queue = total("auth_hash_queue_length", "argon2 jobs waiting for a pool thread")
        self._redis_seconds = Histogram(
            "auth_redis_roundtrip_seconds",
            "Round trip of a Redis PING",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry,
        )
        self._samples = 0

    def sample_process(self) -> None:
        """Publish this process's memory, CPU, fds, and its pools' sizes and use."""
        for family in self._process.collect():
            gauge = self._process_gauges.get(family.name)
            if gauge is None and family.type == "counter":
                gauge = self._process_gauges.get(family.name + "_total")
            if gauge is not None and family.samples:
                gauge.set(family.samples[0].value)
        pool = self._database_pool()
        self._pool_size.set(pool.size)
        self._checked_out.set(pool.checked_out)
        self._overflow.set(pool.overflow)
        self._queued.set(pool.queued)
        self._hash_size.set(self._hasher.size)
        self._hash_in_flight.set(self._hasher.in_flight)
        self._hash_queue.set(self._hasher.waiting)

    async def sample_redis(self) -> None:
        """Time one PING; an unreachable Redis is left to readiness and the error counts."""
        if self._redis_ping is None:
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
                await self._redis_ping()
        except Exception as exc:
            log.debug("metrics: Redis ping failed: %s", type(exc).__name__)
            return
        self._redis_seconds.observe(time.perf_counter() - started)

    async def sample(self) -> None:
        """Everything, now: what a scrape of this worker does first."""
        self.sample_process()
        await self.sample_redis()

    async def publish_periodically(self) -> None:
        """In multiprocess mode, until cancelled: keep this worker's gauges current."""
        while True:
            self.sample_process()
            if self._samples % REDIS_PING_EVERY == 0:
                await self.sample_redis()
            self._samples += 1
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)

    @staticmethod
    def process_exited() -> None:
        """Drop this worker's live gauges from the multiprocess files."""
        if multiprocess_directory() is not None:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
