"""What the bench measures and for how long: concurrencies, the plan, the hashing cost."""

from __future__ import annotations

import os
from dataclasses import dataclass

from auth_service.config import Settings

__all__ = [
    "CONCURRENCY",
    "HOST",
    "PASSWORD",
    "READ_ENDPOINTS",
    "TIMING_ACCOUNTS",
    "USERNAME",
    "HashParams",
    "Plan",
]

HOST = "127.0.0.1"  # loopback only
CONCURRENCY = (1, 4, 16, 64)
READ_ENDPOINTS = ("users_me", "introspect", "jwks", "client_credentials")
PASSWORD = "correct horse battery staple, bench edition"
USERNAME = "bench_user"
TIMING_ACCOUNTS = 40  # names the enumeration-timing logins rotate over


@dataclass(frozen=True)
class Plan:
    """How long each cell runs (seconds); BENCH_QUICK=1 picks the short plan."""

    quick: bool
    warmup_s: float
    cell_s: float
    login_s: float
    ceiling_s: float
    timing_pairs: int
    background_logins: int = 16
    rss_concurrency: int = 200

    @classmethod
    def from_env(cls) -> Plan:
        """The full plan (~3 s per cell), or the quick one when BENCH_QUICK=1."""
        if os.environ.get("BENCH_QUICK") == "1":
            return cls(True, warmup_s=0.1, cell_s=0.3, login_s=1.0, ceiling_s=1.0, timing_pairs=8)
        # A default verify takes ~0.1-0.2 s: login cells and ceilings run long enough to
        # count dozens of them.
        return cls(False, warmup_s=0.5, cell_s=3.0, login_s=6.0, ceiling_s=3.0, timing_pairs=80)


@dataclass(frozen=True)
class HashParams:
    """argon2id cost and pool size exactly as the service reads them (Settings)."""

    memory_kib: int
    time_cost: int
    parallelism: int
    pool_size: int
    workers: int = 1

    @property
    def threads(self) -> int:
        """Hashing threads of the whole service: every worker process has its own pool."""
        return self.pool_size * self.workers

    @classmethod
    def from_settings(cls) -> HashParams:
        """Settings defaults, overridden by any AUTH_* variable the server will also see."""
        settings = Settings(_env_file=None)
        return cls(
            memory_kib=settings.password_hash_memory_kib,
            time_cost=settings.password_hash_time_cost,
            parallelism=settings.password_hash_parallelism,
            pool_size=settings.hash_pool_size,
            workers=settings.workers,
        )
