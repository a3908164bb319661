"""The collaborators every use case needs, assembled once by the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auth_service.audit import Audit
from auth_service.repositories import Database
from auth_service.security.data_keys import DataCipher
from auth_service.security.passwords import PasswordHasher
from auth_service.security.policy import PasswordPolicy
from auth_service.security.tokens import TokenService
from auth_service.services.profiles import ProfileCache
from auth_service.services.throttling import Throttler
from auth_service.stores.revocation import RevocationStore

__all__ = [
    "AccountMailPolicy",
    "AccountPolicy",
    "GenerationSeen",
    "ServiceContext",
    "SessionPolicy",
]


@dataclass(frozen=True)
class SessionPolicy:
    """Session lifetimes, the refresh retry window, and how long a revocation must last."""

    idle_timeout: timedelta
    absolute_lifetime: timedelta
    reuse_grace: timedelta
    # Access tokens live at most this long after they were issued (TTL plus clock leeway):
    # a denylist entry older than that protects nothing and may expire.
    access_token_horizon: timedelta


@dataclass
class GenerationSeen:
    """SQL's revocation generation at this process's last check (None: not checked yet)."""

    sql: int | None = None


@dataclass(frozen=True)
class AccountPolicy:
    """Second factors and deletion: the cipher sealing TOTP seeds, the name apps show,
    how long an MFA token lives, how long a deleted account's name stays reserved."""

    cipher: DataCipher
    totp_issuer: str
    mfa_token_ttl: timedelta
    deleted_username_hold: timedelta


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
    accounts: AccountPolicy
    # How long a browser's single sign-on session lasts after its login.
    browser_session_lifetime: timedelta = timedelta(hours=12)
    mail: AccountMailPolicy = field(default_factory=lambda: AccountMailPolicy("http://localhost"))
    # Set after a commit that queued mail: this process's outbox worker sends it at once
    # (other replicas' workers find it at their next poll).
    mail_queued: asyncio.Event = field(default_factory=asyncio.Event, compare=False)
    # One reseed of the revocation store at a time per process.
    reseed_lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False)
    # Session revocations committed to SQL while the store was unreachable: delivered to
    # it before this process trusts it again (services/revocation.py).
    undelivered_sessions: set[str] = field(default_factory=set, compare=False)
    # SQL's revocation generation as this process last read it (services/revocation.py).
    generation_seen: GenerationSeen = field(default_factory=lambda: GenerationSeen(), compare=False)
