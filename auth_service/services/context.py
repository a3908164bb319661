"""The collaborators every use case needs, assembled once by the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_service.security.passwords import PasswordHasher
from auth_service.security.policy import PasswordPolicy
from auth_service.security.tokens import TokenService

__all__ = ["ServiceContext"]


@dataclass(frozen=True)
class ServiceContext:
    """Database sessions, hashing, password policy, token signing, clock and client defaults."""

    sessions: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    policy: PasswordPolicy
    tokens: TokenService
    clock: Callable[[], datetime]
    default_client_id: str
