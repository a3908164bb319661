"""The collaborators every use case needs, assembled once by the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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

__all__ = ["AccountMailPolicy", "ServiceContext", "SessionPolicy"]


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
class AccountMailPolicy:
    """Where mailed links point, how long they live, and how often resets may be asked."""

    public_url: str  # AUTH_PUBLIC_URL or the issuer, never a request's Host header
    verification_ttl: timedelta = timedelta(days=1)
    reset_ttl: timedelta = timedelta(minutes=30)
    reset_limit_per_address: int = 3
    reset_limit_per_ip: int = 30
    reset_window: timedelta = timedelta(hours=1)


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
    mail: AccountMailPolicy = field(default_factory=lambda: AccountMailPolicy("http://localhost"))
    # Set after a commit that queued mail: this process's outbox worker sends it at once
    # (other replicas' workers find it at their next poll).
    mail_queued: asyncio.Event = field(default_factory=asyncio.Event, compare=False)
    # Called with a user id after a password reset ended the user's sessions: where other
    # kinds of session (browser sessions) are ended too. The lead wires them in app.py.
    credential_reset_hooks: list[Callable[[str], Awaitable[None]]] = field(
        default_factory=list, compare=False
    )
    # One reseed of the revocation store at a time per process.
    reseed_lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)
    # Session revocations committed to SQL while the store was unreachable: delivered to
    # it before this process trusts it again (services/revocation.py).
    undelivered_sessions: set[str] = field(default_factory=set, compare=False)
