"""Settings: one typed object read from AUTH_* variables and `.env`, validated at start.

Outside development the settings refuse insecure values (no key files, SQLite, no Redis,
plain-HTTP issuer, hashing below OWASP's minimum) so a misconfigured replica never starts.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "OWASP_MIN_MEMORY_KIB",
    "OWASP_MIN_TIME_COST",
    "RFC9106_MEMORY_KIB",
    "RFC9106_PARALLELISM",
    "RFC9106_TIME_COST",
    "Settings",
    "unknown_variable_warnings",
]

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1 (the floor).
OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME_COST = 2
# The default: RFC 9106 §4's second recommended option (m=64 MiB, t=3, p=4), also what
# argon2-cffi, passlib and pwdlib default to. ~9x the floor's work per hash; p=4 spreads
# one verify over the cores, so a lone login takes ~0.1 s.
RFC9106_MEMORY_KIB = 64 * 1024
RFC9106_TIME_COST = 3
RFC9106_PARALLELISM = 4

Environment = Literal["development", "test", "production"]
SigningAlgorithm = Literal["ES256", "RS256"]


# AUTH_* variables that are not settings but are read elsewhere (entrypoint, CLI, tests).
OTHER_VARIABLES = frozenset({"AUTH_MIGRATE_ON_START", "AUTH_NEW_USER_PASSWORD"})
_DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _default_pool_size() -> int:
    return max(1, os.cpu_count() or 1)


def _database_url_problem(url: str) -> str | None:
    """Why a database URL cannot work, naming the scheme to write; None when it can."""
    if url.startswith(_DATABASE_SCHEMES):
        return None
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme.startswith("sqlite"):
        return "must start with sqlite+aiosqlite:// (the embedded backend's async driver)"
    if scheme.startswith(("postgres", "postgresql")):
        return (
            f"{scheme}:// is not supported: write postgresql+asyncpg:// "
            "(the service's PostgreSQL driver is asyncpg)"
        )
    return "must start with postgresql+asyncpg:// (or sqlite+aiosqlite:// for development)"


class Settings(BaseSettings):
    """Every knob of the service; environment variables are the field names prefixed AUTH_."""

    model_config = SettingsConfigDict(
        env_prefix="AUTH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # The docstring under each field is its description: docs/configuration.md is
        # generated from them (`auth-service config-docs`).
        use_attribute_docstrings=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data: Any) -> Any:
        """`AUTH_X=` (empty) from any source means "not set": the default applies."""
        # Without this, AUTH_REDIS_URL= passed every "is Redis configured" check as "" and
        # two workers started with separate in-memory denylists.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value != ""}
        return data

    # --- deployment -----------------------------------------------------------------
    environment: Environment = "development"
    """development, test or production; production refuses insecure or embedded parts."""
    host: str = "127.0.0.1"
    """The address `serve` listens on (public and management ports)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """The public port; 0: the kernel picks (logged, and written to AUTH_PORTS_FILE)."""
    workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes for `serve` (above 1 needs Redis)."""
    data_dir: Path = Path("./var")
    """Where the embedded parts keep their state: the SQLite file, the development key, locks."""
    log_level: str = "INFO"
    """Python logging level of the service (DEBUG, INFO, WARNING, ...)."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """auto: human-readable (coloured) lines on a terminal, JSON lines otherwise."""
    graceful_shutdown_seconds: int = Field(default=20, ge=1, le=600)
    """After the drain, how long uvicorn waits for requests in flight."""
    drain_seconds: float = Field(default=5.0, ge=0, le=300)
    """On SIGTERM: fail /readyz and keep serving this long before the graceful shutdown, so a
    load balancer sees the replica down first (more than its checks' fall x interval)."""
    housekeeping_interval_seconds: int = Field(default=3600, ge=60, le=86_400)
    """How often each process deletes what expired more than a day (plus the access-token
    lifetime) ago (codes, pending logins, browser and login sessions, link and MFA tokens,
    revoked access tokens) and deleted accounts whose name hold ended."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    """Largest request body accepted; larger ones get 413."""
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Slow clients (serving.py, api/middleware.py): a request head must arrive within the
    header timeout, its body within the body timeout after the head; an idle keep-alive
    connection closes after the keep-alive timeout; past max connections (per worker) requests
    are answered 503."""
    http_body_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    """A request body must arrive within this long after its head, else 408."""
    http_keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=300)
    """An idle keep-alive connection is closed after this long."""
    http_max_connections: int = Field(default=1000, ge=16, le=100_000)
    """Open connections per worker; past this, requests are answered 503."""
    management_port: int = Field(default=9000, ge=0, le=65535)
    """/metrics, /readyz (and /healthz) for operators, on AUTH_HOST; never the public port. 0:
    as for AUTH_PORT."""
    ports_file: Path | None = None
    """After binding, `serve` writes {"port": P, "management_port": M} here (replaced
    atomically): how a supervisor or a test learns the ports the kernel picked for 0."""
    docs_enabled: bool = True
    """/docs and /redoc."""
    otel_enabled: bool = False
    """OpenTelemetry traces over OTLP/HTTP (needs the `otel` extra); the standard
    OTEL_EXPORTER_OTLP_* variables configure the exporter further."""
    otel_endpoint: str | None = None
    """E.g. http://collector:4318/v1/traces."""
    otel_service_name: str = "auth-service"
    """The service.name resource attribute of exported traces."""
    startup_wait_seconds: float = Field(default=60, ge=0, le=3600)
    """How long `serve` and `migrate` retry an unreachable database or Redis at start."""

    # --- storage --------------------------------------------------------------------
    database_url: str | None = None
    """postgresql+asyncpg://... for production; unset: SQLite in the data dir (development)."""
    database_pool_size: int = Field(default=20, ge=1, le=200)
    """PostgreSQL connections each worker keeps open; bursts may open as many again, which are
    closed when returned (a reconnect and re-prepare each): size for the usual load."""
    redis_url: str | None = None
    """Redis for revocations and throttles shared by every replica; unset: in-process state."""
    redis_key_prefix: str = Field(default="auth:", min_length=1, max_length=64)
    """Prefix of every Redis key this service writes (several services can share one Redis)."""
    redis_sentinels: str | None = None
    """Redis through Sentinel instead of AUTH_REDIS_URL: "host:port,host:port,..." and the
    monitored master's name; the client asks Sentinel for the primary after each failover."""
    redis_sentinel_master: str | None = None
    """The master name Sentinel monitors (with AUTH_REDIS_SENTINELS)."""
    revocation_check_seconds: float = Field(default=2.0, gt=0, le=3600)
    """How often each process compares Redis's mirror of SQL's revocation generation with SQL
    (and at once after a Redis error): a mirror behind SQL means Redis lost writes (a failover
    to a lagging replica) and is reseeded before it is trusted again."""

    # --- tokens ---------------------------------------------------------------------
    issuer: str | None = None
    """The `iss` of every token and the metadata issuer; unset: http://HOST:PORT."""
    audience: str = "api"
    """The `aud` of access tokens."""
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    """Lifetime of an access token."""
    clock_leeway_seconds: int = Field(default=10, ge=0, le=300)
    """Clock skew tolerated when checking `exp`, `nbf` and `iat`."""
    signing_algorithm: SigningAlgorithm = "ES256"
    """JWS algorithm of the signing key: ES256 or RS256."""
    signing_key_file: Path | None = None
    """PEM private key that signs tokens; unset (development): a key kept in the data dir."""
    keys_dir: Path | None = None
    """A rotating key set shared by every replica (see `auth-service keys`)."""
    key_poll_interval_seconds: int = Field(default=10, ge=1, le=3600)
    """How often the key directory (AUTH_KEYS_DIR) is checked for changes."""
    key_rotation_interval_seconds: int | None = Field(default=None, ge=60)
    """Rotate the active key this often (with AUTH_KEYS_DIR); unset: never automatically."""
    jwks_max_age_seconds: int = Field(default=300, ge=0, le=86_400)
    """Cache-Control max-age of the JWKS and the metadata document."""
    id_token_ttl_seconds: int = Field(default=300, ge=30, le=86_400)
    """Lifetime of an OpenID Connect ID token (RS256 unless a client asks for ES256)."""
    id_token_signing_key_file: Path | None = None
    """With AUTH_SIGNING_KEY_FILE: the PEM key of the other algorithm (ID tokens are RS256 by
    default, each algorithm has its own key); unset in development: generated in the data dir."""
    browser_session_lifetime_seconds: int = Field(default=12 * 3600, ge=60, le=90 * 86_400)
    """Lifetime of the browser's single sign-on session (the login page's cookie)."""
    default_client_id: str = Field(default="public", min_length=1, max_length=128)
    """The client id of the built-in public client."""
    default_client_enabled: bool = True
    """Requests that name no client act as this public client (Swagger UI, simple apps)."""

    # --- sessions (refresh-token families) ---------------------------------------------
    session_idle_timeout_seconds: int = Field(default=14 * 86_400, ge=60)
    """A session (refresh-token family) unused this long ends."""
    session_absolute_lifetime_seconds: int = Field(default=30 * 86_400, ge=60)
    """A session ends this long after its login, used or not."""
    refresh_reuse_grace_seconds: int = Field(default=10, ge=0, le=300)
    """A refresh token replayed within this long of its rotation (a retry) is not theft."""

    # --- abuse resistance ---------------------------------------------------------------
    login_throttle_window_seconds: int = Field(default=900, ge=1, le=86_400)
    """The window the failed-login counters count over."""
    login_max_failures_per_pair: int = Field(default=10, ge=1, le=100)
    """Failed logins per (account, client IP) within the window before 429."""
    login_max_failures_per_account: int = Field(default=50, ge=1, le=100)
    """NIST: <= 100."""
    login_max_failures_per_ip: int = Field(default=200, ge=1)
    """Failed logins per client IP within the window (unknown pairs) before 429."""
    known_client_lifetime_seconds: int = Field(default=30 * 86_400, ge=60)
    """After a successful login the (account, IP) pair is known this long: no account limit."""
    register_max_per_ip: int = Field(default=20, ge=1)
    """Registrations per client IP within the registration window."""
    register_window_seconds: int = Field(default=3600, ge=1)
    """The window of the registration limit."""
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    """Peers whose X-Forwarded-For is believed (CIDRs, e.g. the load balancer's). Production
    requires it set explicitly: [] says clients connect directly."""

    # --- passwords ------------------------------------------------------------------
    password_min_length: int = Field(default=15, ge=8, le=1024)
    """Shortest password accepted (characters, after NFKC normalisation)."""
    password_max_length: int = Field(default=1024, ge=64, le=1024)
    """Longest password accepted (characters)."""
    password_hash_memory_kib: int = Field(default=RFC9106_MEMORY_KIB, ge=8, le=4 * 1024 * 1024)
    """argon2id memory cost in KiB (default RFC 9106: 64 MiB)."""
    password_hash_time_cost: int = Field(default=RFC9106_TIME_COST, ge=1, le=100)
    """argon2id passes (default RFC 9106: 3)."""
    password_hash_parallelism: int = Field(default=RFC9106_PARALLELISM, ge=1, le=16)
    """argon2id lanes (default RFC 9106: 4)."""
    hash_pool_size: int = Field(default_factory=_default_pool_size, ge=1, le=64)
    """Worker threads that run argon2 off the event loop (default: the CPU count)."""
    hash_max_waiting: int = Field(default=64, ge=0, le=10_000)
    """Hash jobs that may wait for a thread; past this, logins are answered 503."""
    hash_wait_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """How long a hash job may wait for a thread before the request gets 503."""

    # --- second factor and account deletion (docs/mfa.md) ----------------------------
    data_encryption_key_file: Path | None = None
    """AES-256-GCM keys sealing TOTP secrets at rest: one base64 key per line, the first
    encrypts, every line decrypts (rotation). Generated into the data dir in development."""
    totp_issuer_name: str = Field(default="auth_service", min_length=1, max_length=64)
    """The account name shown in authenticator apps next to the username."""
    mfa_token_ttl_seconds: int = Field(default=300, ge=30, le=900)
    """How long the `mfa_token` of a password step stays usable for the second step."""
    deleted_username_hold_seconds: int = Field(default=90 * 86_400, ge=60)
    """How long a deleted account's username stays reserved (nobody inherits it); at least
    the access-token lifetime, so the row carrying its token cut-off outlives its tokens."""

    # --- accounts: email, verification, password reset (docs/accounts.md) -----------
    public_url: str | None = None
    """Where the links in mails point (default: the issuer); never the request's Host."""
    smtp_url: str | None = None
    """smtp://user:pass@host:587?starttls=true (STARTTLS) or smtps://user:pass@host:465
    (implicit TLS); unset: mails are written to <data dir>/mail (links logged only outside
    production)."""
    mail_from: str = Field(default="auth-service <no-reply@localhost>", min_length=3)
    """The From header of every mail."""
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    """How long one SMTP conversation may take before the mail is retried later."""
    mail_poll_seconds: float = Field(default=2.0, gt=0, le=300)
    """How often the outbox worker looks for mail another replica (or a crash) left queued."""
    mail_lease_seconds: int = Field(default=120, ge=5, le=3600)
    """How long a claimed mail belongs to the worker that claimed it."""
    mail_max_attempts: int = Field(default=12, ge=1, le=100)
    """Delivery attempts before a mail is given up (logged)."""
    mail_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    """The first retry delay; each next one doubles, up to AUTH_MAIL_RETRY_MAX_SECONDS."""
    mail_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    """The longest delay between two delivery attempts."""
    email_verification_ttl_seconds: int = Field(default=86_400, ge=300, le=30 * 86_400)
    """How long an email verification link works."""
    password_reset_ttl_seconds: int = Field(default=1800, ge=60, le=86_400)
    """How long a password reset link works (OWASP: short)."""
    password_reset_max_per_address: int = Field(default=3, ge=1, le=1000)
    """Reset requests per window per submitted address or username; past it the request
    still answers 202 but nothing is sent."""
    password_reset_max_per_ip: int = Field(default=30, ge=1, le=100_000)
    """Reset requests per window per client IP (past it: 202, nothing sent)."""
    password_reset_window_seconds: int = Field(default=3600, ge=60, le=86_400)
    """The window of the two reset limits."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_from_json(cls, value: Any) -> Any:
        """AUTH_TRUSTED_PROXIES is a JSON list of CIDRs; say so when it is anything else."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, list):
            raise ValueError(
                'must be a JSON list of CIDRs, e.g. ["10.0.0.0/8"] ([] when clients '
                "connect directly)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str | None) -> str | None:
        """Only the async drivers installed with the service can work."""
        problem = None if value is None else _database_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str | None) -> str | None:
        """smtp:// (plain or STARTTLS) or smtps:// (implicit TLS), with a host."""
        if value is not None:
            scheme, _, rest = value.partition("://")
            if scheme not in ("smtp", "smtps") or not rest.split("?")[0].rsplit("@", 1)[-1]:
                raise ValueError(
                    "must be smtp://[user:pass@]host[:port][?starttls=true] or "
                    "smtps://[user:pass@]host[:port]"
                )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        """redis-py needs a scheme; without one it fails only at the first request."""
        if value is not None and not value.startswith(_REDIS_SCHEMES):
            raise ValueError(
                "needs a scheme: redis://, rediss:// (TLS) or unix://, e.g. redis://redis:6379/0"
            )
        return value

    @property
    def redis_sentinel_addresses(self) -> list[tuple[str, int]]:
        """AUTH_REDIS_SENTINELS as (host, port) pairs; empty when Sentinel is not used."""
        addresses = []
        for item in (self.redis_sentinels or "").split(","):
            host, _, port = item.strip().rpartition(":")
            if item.strip():
                addresses.append((host.strip("[]"), int(port)))
        return addresses

    @property
    def uses_redis(self) -> bool:
        """True when Redis is configured, directly by URL or through Sentinel."""
        return self.redis_url is not None or self.redis_sentinels is not None

    @property
    def effective_database_url(self) -> str:
        """The configured database, or a SQLite file in the data dir (development default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'auth.db').resolve()}"

    @property
    def access_token_horizon(self) -> timedelta:
        """The longest an issued access token can still be accepted (lifetime + leeway)."""
        return timedelta(seconds=self.access_token_ttl_seconds + self.clock_leeway_seconds)

    @property
    def effective_issuer(self) -> str:
        """The `iss` of every token; also the base URL of the metadata document."""
        return (self.issuer or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_public_url(self) -> str:
        """The base of every link in a mail: AUTH_PUBLIC_URL, or the issuer."""
        return (self.public_url or self.effective_issuer).rstrip("/")

    @property
    def is_development_setup(self) -> bool:
        """True when any part runs on an embedded stand-in (SQLite, memory store, own key)."""
        return self.database_url is None or not self.uses_redis or self.signing_key_file is None

    @model_validator(mode="after")
    def _refuse_insecure_values(self) -> Self:
        problems: list[str] = []
        if self.password_min_length > self.password_max_length:
            problems.append("AUTH_PASSWORD_MIN_LENGTH is above AUTH_PASSWORD_MAX_LENGTH")
        if self.password_hash_memory_kib < 8 * self.password_hash_parallelism:
            # argon2 needs 8 KiB per lane; say so here rather than fail when hashing starts.
            problems.append(
                "AUTH_PASSWORD_HASH_MEMORY_KIB must be at least 8 x AUTH_PASSWORD_HASH_PARALLELISM"
            )
        if self.management_port == self.port != 0:  # two 0s are two kernel-picked ports
            problems.append("AUTH_MANAGEMENT_PORT must differ from AUTH_PORT")
        if self.workers > 1 and not self.uses_redis:
            # Each worker would keep its own in-process revocation state: a logout served by
            # one worker would not reach the others.
            problems.append("AUTH_WORKERS above 1 needs AUTH_REDIS_URL (shared revocation state)")
        if self.environment != "test" and (
            self.password_hash_memory_kib < OWASP_MIN_MEMORY_KIB
            or self.password_hash_time_cost < OWASP_MIN_TIME_COST
        ):
            problems.append(
                "argon2 parameters are below OWASP's minimum (memory 19456 KiB, time cost 2)"
            )
        if self.environment == "production":
            if self.signing_key_file is None and self.keys_dir is None:
                problems.append(
                    "production needs AUTH_SIGNING_KEY_FILE (a PEM private key) or AUTH_KEYS_DIR"
                )
            if not self.uses_redis:
                problems.append("production needs AUTH_REDIS_URL (shared revocation state)")
            if self.database_url is None or not self.database_url.startswith("postgresql"):
                problems.append("production needs AUTH_DATABASE_URL pointing at PostgreSQL")
            if not self.effective_issuer.startswith("https://"):
                problems.append("production needs an https:// AUTH_ISSUER")
            if self.data_encryption_key_file is None:
                problems.append(
                    "production needs AUTH_DATA_ENCRYPTION_KEY_FILE (TOTP secrets are "
                    "encrypted at rest with it; see docs/mfa.md)"
                )
            if not self.effective_public_url.startswith("https://"):
                problems.append("production needs an https:// AUTH_PUBLIC_URL (or issuer)")
            if "trusted_proxies" not in self.model_fields_set:
                # Behind the TLS proxy every client would share the proxy's address, and
                # one attacker's guesses would throttle everyone.
                problems.append(
                    "production needs AUTH_TRUSTED_PROXIES set explicitly: a JSON list of "
                    "the TLS proxy's CIDRs, or [] when clients connect directly"
                )
        if self.deleted_username_hold_seconds < self.access_token_horizon.total_seconds():
            problems.append(
                "AUTH_DELETED_USERNAME_HOLD_SECONDS must be at least the access-token "
                "lifetime plus leeway (a deleted account's tokens must expire first)"
            )
        problems.extend(self._sentinel_problems())
        rotation = self.key_rotation_interval_seconds
        if rotation is not None and rotation <= self.jwks_max_age_seconds:
            problems.append(
                "AUTH_KEY_ROTATION_INTERVAL_SECONDS must exceed AUTH_JWKS_MAX_AGE_SECONDS, "
                "or keys would sign before verifiers could have fetched them"
            )
        if problems:
            raise ValueError("refusing insecure configuration: " + "; ".join(problems))
        return self

    def _sentinel_problems(self) -> list[str]:
        """Sentinel needs both of its settings, well-formed, and excludes AUTH_REDIS_URL."""
        if self.redis_sentinels is None and self.redis_sentinel_master is None:
            return []
        if self.redis_sentinels is None or not self.redis_sentinel_master:
            return ["AUTH_REDIS_SENTINELS and AUTH_REDIS_SENTINEL_MASTER go together"]
        if self.redis_url is not None:
            return ["set AUTH_REDIS_URL or AUTH_REDIS_SENTINELS, not both"]
        try:
            addresses = self.redis_sentinel_addresses
        except ValueError:
            addresses = []
        if not addresses or any(not host for host, _ in addresses):
            return ["AUTH_REDIS_SENTINELS must be a comma-separated host:port list"]
        return []


def unknown_variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """One warning per AUTH_* variable that is no setting, naming the closest real one."""
    known = {f"AUTH_{name.upper()}" for name in Settings.model_fields}
    warnings = []
    for name in sorted({key.upper() for key in environ if key.upper().startswith("AUTH_")}):
        if name in known or name in OTHER_VARIABLES or name.startswith("AUTH_TEST_"):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        if close:
            warnings.append(f"{name} is not a setting; did you mean {close[0]}?")
        else:
            warnings.append(f"{name} is not a setting (ignored)")
    return warnings
