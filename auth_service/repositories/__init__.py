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
    EmailTokenRow,
    MfaTokenRow,
    OutboxRow,
    PendingRequestRow,
    ProfileRow,
    RecentRevocations,
    RefreshFamily,
    RefreshTokenRow,
    SessionRow,
    TotpFactorRow,
    UserEmail,
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
    "EmailTokenRepository",
    "EmailTokenRow",
    "HashSampleRepository",
    "MfaRepository",
    "MfaTokenRow",
    "OutboxRepository",
    "OutboxRow",
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
    "TotpFactorRow",
    "UserEmail",
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
        email: str | None = None,
        email_canonical: str | None = None,
    ) -> ProfileRow:
        """Insert a user (with an unverified address, if given); UsernameTaken if an equal
        or confusable name exists."""
        ...

    async def email_of(self, user_id: str) -> UserEmail | None:
        """A user's address and state by id (also the `email` claims of /userinfo and ID
        tokens: `email`, `email_verified`)."""
        ...

    async def email_by_username(self, canonical_name: str) -> UserEmail | None:
        """A user's address and state by case-folded username."""
        ...

    async def by_verified_email(self, email_canonical: str) -> UserEmail | None:
        """The one user who verified this canonical address, if any."""
        ...

    async def set_email(
        self, user_id: str, *, email: str, email_canonical: str, now: datetime
    ) -> None:
        """Replace the user's address with an unverified one."""
        ...

    async def mark_email_verified(
        self, user_id: str, *, email_canonical: str, now: datetime
    ) -> bool:
        """Mark the address verified if it is still the user's, unverified; EmailTaken if
        another account verified it first."""
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

    async def bump_credential_version(self, user_id: str, *, now: datetime) -> int | None:
        """Make logins in flight unable to open a session (their version is stale); the new
        version, None if no active user. Locks the row until the transaction ends."""
        ...

    async def erase(self, user_id: str, *, now: datetime) -> None:
        """Mark a (disabled) user deleted and drop its personal data: the password hash,
        scopes, and the addresses and agents of its sessions. The row keeps the name
        (reserved) and the token cut-off (revocation) until purged."""
        ...

    async def purge_deleted(self, *, before: datetime) -> int:
        """Delete users erased before `before` (their names free again); how many."""
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

    async def purge_ended(self, *, before: datetime) -> int:
        """Delete sessions, with their refresh tokens, revoked or past their absolute
        expiry before `before`; how many."""
        ...


class EmailTokenRepository(Protocol):
    """Link tokens (verification, password reset), stored only as their hash."""

    async def issue(self, row: EmailTokenRow) -> None:
        """Store a new token's hash."""
        ...

    async def void(self, user_id: str, *, purpose: str, now: datetime) -> None:
        """Spend every unused token of the user for `purpose` (a newer one replaces them)."""
        ...

    async def find(self, token_hash: str, *, purpose: str, now: datetime) -> EmailTokenRow | None:
        """The token if unused and unexpired, without spending it (a form shows it)."""
        ...

    async def consume(
        self, token_hash: str, *, purpose: str, now: datetime
    ) -> EmailTokenRow | None:
        """Spend the token (compare-and-set: one caller wins) if unused and unexpired."""
        ...

    async def purge(self, *, before: datetime) -> int:
        """Delete tokens that expired before `before`; how many."""
        ...


class OutboxRepository(Protocol):
    """Mail to send, durable from the transaction of the change it reports."""

    async def enqueue(self, row: OutboxRow) -> None:
        """Add a mail intent (inside the caller's transaction)."""
        ...

    async def claim(
        self, *, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxRow]:
        """Lease up to `limit` due rows nobody holds (PostgreSQL: FOR UPDATE SKIP LOCKED;
        SQLite: its single writer), counting an attempt on each."""
        ...

    async def done(self, row_id: str, *, claim: str) -> bool:
        """Delete a row sent or dropped under this claim; False if the lease was lost."""
        ...

    async def defer(self, row_id: str, *, claim: str, until: datetime, error: str) -> None:
        """Release the lease and retry no earlier than `until`."""
        ...

    async def pending(self) -> int:
        """Rows not yet sent (metrics, tests)."""
        ...


class RevocationRepository(Protocol):
    """The durable SQL side of revocation (the shared store is stores/revocation.py)."""

    async def record_access_token(self, *, jti: str, expires_at: datetime, now: datetime) -> None:
        """Remember a revoked access token until it expires (idempotent)."""
        ...

    async def generation(self) -> int:
        """How many revocations SQL has recorded: triggers bump it in the transaction of
        each (a session revoked, an access token recorded, a user's tokens cut off)."""
        ...

    async def recent(self, *, since: datetime) -> RecentRevocations:
        """Sessions revoked and users disabled since `since`, and unexpired revoked tokens."""
        ...

    async def purge_expired(self, *, before: datetime) -> int:
        """Forget revoked access tokens that expired before `before`; how many."""
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

    async def remove(self, client_id: str) -> str | None:
        """Delete a client; the token epoch it had, or None when there was none."""
        ...

    async def replace_credentials(self, old: ClientRow, new: ClientRow) -> bool:
        """Compare-and-set: store `new`'s secret hash, JWKS, disabled time and token epoch
        if `old`'s epoch is still current; False if it moved (or the client is gone)."""
        ...

    async def revoke_epoch(self, client_id: str, epoch: str, *, now: datetime) -> None:
        """Record a client's former token epoch as revoked (reseeds read it)."""
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

    async def revoke_all_of(self, user_id: str, *, now: datetime) -> list[str]:
        """End every open browser session of a user (a password reset); their ids."""
        ...

    async def linked_sessions(self, session_id: str) -> list[str]:
        """The unrevoked sessions (refresh families) opened through a browser session."""
        ...

    async def purge_expired(self, *, before: datetime, now: datetime) -> int:
        """Delete sessions expired before `before`, unless a session opened through one
        is still open at `now`; how many."""
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

    async def purge_expired(self, *, before: datetime) -> int:
        """Delete pending requests and codes (spent or not) expired before `before`."""
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


class MfaRepository(Protocol):
    """Second factors: TOTP factors, recovery codes, and MFA tokens between login steps.

    Every "once" (a code's time step, a recovery code, an MFA token) is a compare-and-set
    in one statement: of concurrent uses exactly one succeeds.
    """

    async def factor(self, user_id: str) -> TotpFactorRow | None:
        """The user's factor, pending or confirmed."""
        ...

    async def put_pending(
        self, user_id: str, *, key_id: str, ciphertext: str, now: datetime
    ) -> bool:
        """Store a pending factor (replacing a pending one); False if one is confirmed."""
        ...

    async def confirm(self, user_id: str, *, step: int, now: datetime) -> bool:
        """Confirm the pending factor with the code of `step`."""
        ...

    async def use_step(self, user_id: str, *, step: int) -> bool:
        """Accept a code of `step` only if no code of it or a later step was accepted."""
        ...

    async def remove(self, user_id: str) -> bool:
        """Delete the factor, recovery codes and MFA tokens; False if there was no factor."""
        ...

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: list[str], *, now: datetime
    ) -> None:
        """Drop the user's recovery codes and store these (hashes only)."""
        ...

    async def use_recovery_code(self, user_id: str, code_hash: str, *, now: datetime) -> bool:
        """Spend an unused recovery code of the user."""
        ...

    async def unused_recovery_codes(self, user_id: str) -> int:
        """How many recovery codes the user has left."""
        ...

    async def add_token(
        self, token_hash: str, *, row: MfaTokenRow, expires_at: datetime, now: datetime
    ) -> None:
        """Store a new MFA token (dropping the user's expired and spent ones)."""
        ...

    async def peek_token(self, token_hash: str, *, now: datetime) -> MfaTokenRow | None:
        """An unexpired, unspent MFA token, without spending it."""
        ...

    async def claim_token(self, token_hash: str, *, now: datetime) -> MfaTokenRow | None:
        """Spend an unexpired MFA token; None if it is not live."""
        ...

    async def purge_tokens(self, *, before: datetime) -> int:
        """Delete MFA tokens (spent or not) expired before `before`; how many."""
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
    @property
    def mfa(self) -> MfaRepository: ...
    @property
    def email_tokens(self) -> EmailTokenRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...


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
