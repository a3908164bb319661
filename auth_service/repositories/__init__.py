"""One repository Protocol per aggregate, and the unit of work that groups them.

Services see only these Protocols and the frozen rows (repositories/rows.py). Each has
two implementations holding all SQL of their backend: repositories/postgres (asyncpg on
SQLAlchemy's pool, each hot write one statement) and repositories/sqlite (everything on
the one worker thread, db/sqlite_worker.py). app.py picks one Database when it assembles
the runtime.

A method called on `ctx.db.<aggregate>` is its own transaction (one statement or one
worker job); inside `async with ctx.db.transaction() as tx:` the methods of
`tx.<aggregate>` share one transaction, committed when the block ends and rolled back if
it raises. Inside that block call only `tx`'s repositories.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from auth_service.repositories.rows import (
    AdminUserRow,
    AuthorizationCodeRow,
    BrowserSessionFound,
    BrowserSessionRow,
    ClientRow,
    PendingRequestRow,
    ProfileRow,
    RecentRevocations,
    RefreshFamily,
    RefreshTokenRow,
    SessionRow,
    UserInfoRow,
    UserRecord,
)

__all__ = [
    "AdminUserRow",
    "AuthorizationCodeRow",
    "AuthorizationRepository",
    "BrowserSessionFound",
    "BrowserSessionRepository",
    "BrowserSessionRow",
    "ClientRepository",
    "ClientRow",
    "Database",
    "HashSampleRepository",
    "PendingRequestRow",
    "PoolStatus",
    "ProfileRow",
    "RecentRevocations",
    "RefreshFamily",
    "RefreshTokenRow",
    "Repositories",
    "RevocationRepository",
    "ServiceSecretRepository",
    "SessionRepository",
    "SessionRow",
    "UserInfoRow",
    "UserRecord",
    "UserRepository",
]


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """What the database gauges show: PostgreSQL's pool, or SQLite's one worker."""

    size: int
    checked_out: int
    overflow: int = 0
    queued: int = 0


class UserRepository(Protocol):
    """Accounts: credentials, state, scopes, and the administrators' view."""

    async def by_username(self, canonical_name: str) -> UserRecord | None:
        """A user by case-folded username (the login lookup)."""
        ...

    async def by_id(self, user_id: str) -> UserRecord | None:
        """A user by id (the `sub` of their tokens)."""
        ...

    async def is_active(self, user_id: str) -> bool:
        """True if the user exists and is not disabled."""
        ...

    async def active_profile(self, user_id: str) -> ProfileRow | None:
        """An active user's profile, or None."""
        ...

    async def userinfo(self, user_id: str) -> UserInfoRow | None:
        """What /userinfo may release about an active user, or None."""
        ...

    async def add(
        self,
        *,
        username: str,
        canonical_name: str,
        skeleton: str,
        password_hash: str,
        now: datetime,
    ) -> ProfileRow:
        """Insert a user; UsernameTaken if an equal or confusable name exists."""
        ...

    async def replace_password_hash(
        self, user_id: str, *, expected_hash: str, new_hash: str, now: datetime
    ) -> None:
        """Swap in an upgraded hash unless the password changed meanwhile."""
        ...

    async def change_password_hash(
        self, user_id: str, *, expected_version: int, new_hash: str, now: datetime
    ) -> int | None:
        """Store a new hash and bump the credential version unless it moved since it was
        read (then None); locks the row until the transaction ends."""
        ...

    async def disable(self, user_id: str, *, now: datetime) -> int | None:
        """Block logins, bump the credential version and cut off tokens; the new version,
        None if no such user. Locks the row until the transaction ends."""
        ...

    async def enable(self, user_id: str, *, now: datetime) -> None:
        """Allow logins again (tokens cut off by the disable stay dead)."""
        ...

    async def set_scopes(self, user_id: str, *, scopes: str, now: datetime) -> None:
        """Replace the scopes a user may be granted."""
        ...

    async def delete_disabled(self, user_id: str) -> bool:
        """Delete a disabled user with its sessions and tokens; False if none was."""
        ...

    async def admin_page(
        self, *, disabled_only: bool, after: str | None, limit: int
    ) -> list[AdminUserRow]:
        """Up to `limit` users by canonical name after `after` (a keyset page)."""
        ...

    async def admin_row(self, canonical_name: str) -> AdminUserRow | None:
        """One user by canonical name, as administrators see it."""
        ...


class SessionRepository(Protocol):
    """Login sessions and their refresh tokens."""

    async def open(
        self,
        record: SessionRow,
        *,
        token_hash: str,
        credential_version: int,
        expected_scopes: str | None = None,
    ) -> bool:
        """Insert a session with its first refresh token, atomically, if the user is still
        active at `credential_version` (and, if given, holds exactly `expected_scopes`);
        False (nothing written) if not."""
        ...

    async def find_family(self, token_hash: str) -> RefreshFamily | None:
        """The token, its session and its user's state, or None."""
        ...

    async def rotate(
        self,
        token_hash: str,
        *,
        now: datetime,
        sealed_successor: str,
        successor_hash: str,
        session_id: str,
        idle_expires_at: datetime,
        ip: str | None,
        user_agent: str | None,
    ) -> bool:
        """Claim the token (the compare-and-set that makes it single-use) while its session
        is open and its user active; if won, record the successor and the session's use.
        False if another rotation came first."""
        ...

    async def list_open(self, user_id: str, now: datetime) -> list[SessionRow]:
        """The user's sessions neither revoked nor expired, newest first."""
        ...

    async def count_open(self, user_id: str, now: datetime) -> int:
        """How many of the user's sessions can still be refreshed."""
        ...

    async def matching_ids(
        self, *, user_id: str, only: list[str] | None = None, keep: str | None = None
    ) -> list[str]:
        """The user's sessions to revoke: all open ones, `only` these (revoked ones too, so
        a retry is pushed again), or all open but `keep`."""
        ...

    async def mark_revoked(self, session_ids: list[str], *, now: datetime, reason: str) -> None:
        """Record the revocation durably (the first reason wins)."""
        ...

    async def unrevoked_scopes(self, user_id: str) -> list[tuple[str, str]]:
        """(id, scope) of the user's sessions not revoked, expired ones too."""
        ...


class RevocationRepository(Protocol):
    """The durable SQL side of revocation (the shared store is stores/revocation.py)."""

    async def record_access_token(self, *, jti: str, expires_at: datetime, now: datetime) -> None:
        """Remember a revoked access token until it expires (idempotent)."""
        ...

    async def recent(self, *, since: datetime) -> RecentRevocations:
        """Sessions revoked and users disabled since `since`, and unexpired revoked tokens."""
        ...


class ClientRepository(Protocol):
    """Registered OAuth clients."""

    async def get(self, client_id: str) -> ClientRow | None:
        """One client by id."""
        ...

    async def add(self, client: ClientRow) -> None:
        """Insert a client; ClientExists if the id is taken."""
        ...

    async def all(self) -> list[ClientRow]:
        """Every registered client, by id."""
        ...

    async def remove(self, client_id: str) -> bool:
        """Delete a client; False when there was none."""
        ...


class BrowserSessionRepository(Protocol):
    """Browsers' single sign-on sessions (the login page's cookie, hashed)."""

    async def add(self, row: BrowserSessionRow) -> None:
        """Insert a new browser session."""
        ...

    async def find(self, token_hash: str, *, client_id: str) -> BrowserSessionFound | None:
        """The session of a cookie, its user's state and the user's consent for
        `client_id`, in one statement (revoked and expired sessions too)."""
        ...

    async def get(self, session_id: str) -> BrowserSessionRow | None:
        """A browser session by id (the `sid` of its ID tokens)."""
        ...

    async def reauthenticate(
        self,
        session_id: str,
        *,
        user_id: str,
        token_hash: str,
        auth_time: datetime,
        amr: str,
        acr: str | None,
        expires_at: datetime,
    ) -> bool:
        """A new login by the same user: new cookie hash and auth_time, same id; False if
        the session is not the user's or not open."""
        ...

    async def revoke(self, session_id: str, *, now: datetime) -> str | None:
        """End a browser session; its user's id, or None if it was not open."""
        ...

    async def linked_sessions(self, session_id: str) -> list[str]:
        """The unrevoked sessions (refresh families) opened through a browser session."""
        ...


class AuthorizationRepository(Protocol):
    """Pending authorization requests, authorization codes and remembered consents."""

    async def save_request(self, row: PendingRequestRow) -> None:
        """Store a pending authorization request."""
        ...

    async def pending_request(self, request_id: str) -> PendingRequestRow | None:
        """A pending request by id (expired ones too)."""
        ...

    async def update_request(self, request_id: str, parameters: str) -> None:
        """Record a step done (login, consent) on a pending request."""
        ...

    async def drop_request(self, request_id: str) -> None:
        """Forget a pending request."""
        ...

    async def add_code(self, row: AuthorizationCodeRow) -> None:
        """Store a new authorization code."""
        ...

    async def consume_code(self, code_hash: str, *, now: datetime) -> AuthorizationCodeRow | None:
        """Spend an unspent, unexpired code by compare-and-set; None if that failed."""
        ...

    async def find_code(self, code_hash: str) -> AuthorizationCodeRow | None:
        """A code by hash, spent or not."""
        ...

    async def remember_consent(
        self, *, user_id: str, client_id: str, scopes: str, now: datetime
    ) -> None:
        """Store what the user allowed the client."""
        ...


class ServiceSecretRepository(Protocol):
    """Secrets the service makes for itself, shared by every replica."""

    async def ensure(self, name: str, candidate: str) -> str:
        """The secret `name`, storing `candidate` first if there is none (first writer wins)."""
        ...


class HashSampleRepository(Protocol):
    """Stored password hashes, sampled for the hash-population gauge."""

    async def sample(self, limit: int) -> list[str]:
        """Up to `limit` stored hashes, spread evenly (ids are random)."""
        ...


class Repositories(Protocol):
    """Every aggregate's repository, on one transaction or each call on its own."""

    @property
    def users(self) -> UserRepository: ...
    @property
    def sessions(self) -> SessionRepository: ...
    @property
    def revocations(self) -> RevocationRepository: ...
    @property
    def clients(self) -> ClientRepository: ...
    @property
    def secrets(self) -> ServiceSecretRepository: ...
    @property
    def hash_samples(self) -> HashSampleRepository: ...
    @property
    def browser_sessions(self) -> BrowserSessionRepository: ...
    @property
    def authorizations(self) -> AuthorizationRepository: ...


class Database(Repositories, Protocol):
    """The database as services see it: repositories, and the unit of work."""

    def transaction(self) -> AbstractAsyncContextManager[Repositories]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        ...

    async def ping(self) -> None:
        """One round trip (readiness); raises if the database is out of reach."""
        ...

    async def schema_is_behind(self) -> bool:
        """True when the database lacks a migration of this code (older, or never
        migrated); reading the revision is a round trip, so it raises if out of reach."""
        ...

    def pool_status(self) -> PoolStatus:
        """Connections kept, in use and beyond the pool size, and jobs queued (metrics)."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...
