"""The collaborators every use case needs, assembled once by the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auth_service.audit import Audit
from auth_service.repositories import Database
from auth_service.security.passwords import PasswordHasher
from auth_service.security.policy import PasswordPolicy
from auth_service.security.tokens import TokenService
from auth_service.services.profiles import ProfileCache
from auth_service.services.throttling import Throttler
from auth_service.stores.revocation import RevocationStore

__all__ = ["ServiceContext", "SessionPolicy"]


@dataclass(frozen=True)
class SessionPolicy:
    """Session lifetimes, the refresh retry window, and how long a revocation must last."""

    idle_timeout: timedelta
    absolute_lifetime: timedelta
    reuse_grace: timedelta
    # Access tokens live at most this long after they were issued (TTL plus clock leeway):
    # a denylist entry older than that protects nothing and may expire.
    access_token_horizon: timedelta


@dataclass(frozen=True)
class ServiceContext:
    """The database, hashing, password policy, tokens, revocation state and the clock."""

    db: Database
    hasher: PasswordHasher
    policy: PasswordPolicy
    tokens: TokenService
    clock: Callable[[], datetime]
    default_client_id: str
    default_client_enabled: bool
    revocations: RevocationStore
    session_policy: SessionPolicy
    throttler: Throttler
    audit: Audit
    profiles: ProfileCache
    # How long a browser's single sign-on session lasts after its login.
    browser_session_lifetime: timedelta = timedelta(hours=12)
    # One reseed of the revocation store at a time per process.
    reseed_lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)
    # Session revocations committed to SQL while the store was unreachable: delivered to
    # it before this process trusts it again (services/revocation.py).
    undelivered_sessions: set[str] = field(default_factory=set, compare=False)
