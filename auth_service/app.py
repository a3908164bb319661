"""create_app(settings): the only place the running service is assembled.

Nothing is built at import time; the lifespan creates the database, keys, hasher and token
service, puts them on `app.state`, and disposes of them at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from auth_service import __version__
from auth_service.api.deps import client_ip
from auth_service.api.docs import DocsSameOriginOnly
from auth_service.api.errors import install_error_handlers
from auth_service.api.management import PortDispatch
from auth_service.api.middleware import BodySizeLimit, RequestContext
from auth_service.api.pages import CsrfGuard, Pages, SessionCookie
from auth_service.api.routes import (
    account,
    account_pages,
    accounts,
    admin,
    authorize,
    health,
    login_code,
    mfa,
    oidc,
    pages,
    sessions,
    token,
    users,
    wellknown,
)
from auth_service.audit import Audit
from auth_service.config import Settings
from auth_service.db.engine import create_engine, is_sqlite
from auth_service.mail import Mailer
from auth_service.mail.files import FileMailer
from auth_service.mail.smtp import SmtpMailer, parse_smtp_url
from auth_service.metrics import RuntimeMetrics, multiprocess_directory
from auth_service.repositories import Database
from auth_service.repositories.postgres import PgDatabase
from auth_service.repositories.sqlite import SqliteDatabase
from auth_service.security.data_keys import (
    DataCipher,
    load_data_cipher,
    load_or_create_development_cipher,
)
from auth_service.security.keyring import KeyDirectory, KeyRing
from auth_service.security.keys import (
    SigningKey,
    jwks_document,
    load_or_create_development_key,
    load_signing_key,
)
from auth_service.security.passwords import Argon2Parameters, HashingPool
from auth_service.security.policy import PasswordPolicy, context_words, load_common_passwords
from auth_service.security.tokens import ID_TOKEN_ALGORITHMS, TokenService, utc_now
from auth_service.services import hash_population
from auth_service.services.context import (
    AccountMailPolicy,
    AccountPolicy,
    ServiceContext,
    SessionPolicy,
)
from auth_service.services.discovery import openid_configuration, server_metadata
from auth_service.services.housekeeping import Housekeeper
from auth_service.services.keys import KeyWatcher
from auth_service.services.outbox import OutboxWorker, RetryPolicy
from auth_service.services.profiles import ProfileCache
from auth_service.services.revocation import watch_generation
from auth_service.services.throttling import ThrottlePolicy, Throttler
from auth_service.stores.redis_client import connect as connect_redis
from auth_service.stores.redis_client import connect_sentinel
from auth_service.stores.revocation import (
    MemoryStore,
    RedisStore,
    RevocationStore,
    announce_change,
)
from auth_service.stores.throttle import MemoryThrottleStore, RedisThrottleStore, ThrottleStore
from auth_service.tracing import Tracing, load_tracing

__all__ = ["Runtime", "create_app", "create_serving_app", "open_runtime"]

log = logging.getLogger(__name__)

PROFILE_CACHE_ENTRIES = 4096
PROFILE_CACHE_TTL = timedelta(seconds=60)
# Replaced by any process on the same data dir that revoked something (the CLI): the
# in-process revocation store of a running server then reseeds from SQL.
REVOCATION_CHANGE_MARKER = "revocations.changed"


@dataclass(frozen=True)
class DiscoveryDocuments:
    """JWKS and metadata, serialised once, with their cache headers."""

    jwks: bytes
    jwks_headers: dict[str, str]
    metadata: bytes
    metadata_headers: dict[str, str]
    openid_configuration: bytes


def _key_watcher(settings: Settings, clock: Callable[[], datetime]) -> KeyWatcher | None:
    if settings.keys_dir is None or settings.signing_key_file is not None:
        return None
    rotate = settings.key_rotation_interval_seconds
    return KeyWatcher(
        KeyDirectory(settings.keys_dir, clock),
        algorithm=settings.signing_algorithm,
        clock=clock,
        poll_interval=timedelta(seconds=settings.key_poll_interval_seconds),
        rotate_every=timedelta(seconds=rotate) if rotate else None,
        # A next key signs only after every cached JWKS can have picked it up.
        published_for=timedelta(seconds=settings.jwks_max_age_seconds),
        tokens_live_for=settings.access_token_horizon,
        also=ID_TOKEN_ALGORITHMS,
    )


def _load_keys(settings: Settings, watcher: KeyWatcher | None) -> KeyRing:
    if watcher is not None:
        return watcher.load()
    algorithm = settings.signing_algorithm
    others = [other for other in ID_TOKEN_ALGORITHMS if other != algorithm]
    signers: list[SigningKey] = []
    if settings.signing_key_file is not None:
        key = load_signing_key(settings.signing_key_file.read_bytes(), algorithm)
        if settings.id_token_signing_key_file is not None:
            pem = settings.id_token_signing_key_file.read_bytes()
            signers = [load_signing_key(pem, others[0])]
        elif settings.environment != "production":
            signers = [load_or_create_development_key(settings.data_dir, others[0])]
        else:
            log.warning(
                "no %s key for ID tokens (AUTH_ID_TOKEN_SIGNING_KEY_FILE): they are signed %s only",
                others[0],
                algorithm,
            )
    else:
        key = load_or_create_development_key(settings.data_dir, algorithm)
        signers = [load_or_create_development_key(settings.data_dir, a) for a in others]
    return KeyRing(active=key, published=(key, *signers), signers=tuple(signers))


def _data_cipher(settings: Settings) -> DataCipher:
    """The key file's keys, or the development key generated into the data dir."""
    if settings.data_encryption_key_file is not None:
        return load_data_cipher(settings.data_encryption_key_file)
    return load_or_create_development_cipher(settings.data_dir)


def _account_policy(settings: Settings) -> AccountPolicy:
    return AccountPolicy(
        cipher=_data_cipher(settings),
        totp_issuer=settings.totp_issuer_name,
        mfa_token_ttl=timedelta(seconds=settings.mfa_token_ttl_seconds),
        deleted_username_hold=timedelta(seconds=settings.deleted_username_hold_seconds),
    )


def _redis_client(settings: Settings) -> Redis | None:
    """The shared Redis: by URL, through Sentinel, or none (development)."""
    if settings.redis_sentinels is not None and settings.redis_sentinel_master:
        return connect_sentinel(settings.redis_sentinel_addresses, settings.redis_sentinel_master)
    return connect_redis(settings.redis_url) if settings.redis_url else None


def _stores(
    settings: Settings, redis: Redis | None, clock: Callable[[], datetime]
) -> tuple[RevocationStore, ThrottleStore]:
    if redis is None:
        marker = settings.data_dir / REVOCATION_CHANGE_MARKER
        if not marker.exists():
            announce_change(marker)  # exists from now on: no failing stat per request
        return MemoryStore(change_marker=marker, clock=clock), MemoryThrottleStore(clock=clock)
    prefix = settings.redis_key_prefix
    return RedisStore(redis, prefix=prefix), RedisThrottleStore(redis, prefix=prefix)


def _throttle_policy(settings: Settings) -> ThrottlePolicy:
    return ThrottlePolicy(
        window=timedelta(seconds=settings.login_throttle_window_seconds),
        pair_limit=settings.login_max_failures_per_pair,
        account_limit=settings.login_max_failures_per_account,
        ip_limit=settings.login_max_failures_per_ip,
        known_pair_lifetime=timedelta(seconds=settings.known_client_lifetime_seconds),
        registration_limit=settings.register_max_per_ip,
        registration_window=timedelta(seconds=settings.register_window_seconds),
        in_flight_wait=timedelta(seconds=settings.hash_wait_timeout_seconds),
    )


def _discovery_documents(settings: Settings, ring: KeyRing) -> DiscoveryDocuments:
    cache = {"Cache-Control": f"public, max-age={settings.jwks_max_age_seconds}"}
    id_token_algorithms = [a for a in ID_TOKEN_ALGORITHMS if ring.signer(a) is not None]
    metadata = server_metadata(issuer=settings.effective_issuer)
    configuration = openid_configuration(
        issuer=settings.effective_issuer, id_token_algorithms=id_token_algorithms
    )
    return DiscoveryDocuments(
        jwks=json.dumps(jwks_document(ring.published)).encode(),
        jwks_headers=cache,
        metadata=json.dumps(metadata).encode(),
        metadata_headers=cache,
        openid_configuration=json.dumps(configuration).encode(),
    )


def _announce_development_parts(settings: Settings) -> None:
    if settings.database_url is None:
        log.warning(
            "DEVELOPMENT SETUP: SQLite database at %s (set AUTH_DATABASE_URL for PostgreSQL)",
            settings.effective_database_url,
        )
    if not settings.uses_redis:
        log.warning("DEVELOPMENT SETUP: in-process revocation state (set AUTH_REDIS_URL)")
    if settings.smtp_url is None:
        log.warning(
            "DEVELOPMENT SETUP: mail is written to %s%s (set AUTH_SMTP_URL)",
            settings.data_dir / "mail",
            "" if settings.environment == "production" else ", links logged",
        )
    if settings.signing_key_file is None and settings.keys_dir is None:
        log.warning(
            "DEVELOPMENT SETUP: signing key kept in %s (set AUTH_SIGNING_KEY_FILE)",
            settings.data_dir / "keys",
        )
    if settings.data_encryption_key_file is None:
        log.warning(
            "DEVELOPMENT SETUP: data encryption key kept in %s (set AUTH_DATA_ENCRYPTION_KEY_FILE)",
            settings.data_dir / "keys",
        )


def _database(settings: Settings, tracing: Tracing | None = None) -> Database:
    """The one place the backend is chosen: every repository of PostgreSQL or of SQLite."""
    url = settings.effective_database_url
    if is_sqlite(url):
        span = tracing.sql_span("sqlite") if tracing is not None else None
        return SqliteDatabase(url, span=span)
    span = tracing.sql_span("postgresql") if tracing is not None else None
    return PgDatabase(create_engine(url, pool_size=settings.database_pool_size), span=span)


def _mailer(settings: Settings) -> Mailer:
    """SMTP when AUTH_SMTP_URL is set, else files in the data dir (development)."""
    if settings.smtp_url is not None:
        return SmtpMailer(
            parse_smtp_url(settings.smtp_url),
            sender=settings.mail_from,
            timeout_seconds=settings.smtp_timeout_seconds,
        )
    return FileMailer(
        settings.data_dir / "mail",
        sender=settings.mail_from,
        log_links=settings.environment != "production",
    )


def _mail_policy(settings: Settings) -> AccountMailPolicy:
    return AccountMailPolicy(
        public_url=settings.effective_public_url,
        verification_ttl=timedelta(seconds=settings.email_verification_ttl_seconds),
        reset_ttl=timedelta(seconds=settings.password_reset_ttl_seconds),
        reset_limit_per_address=settings.password_reset_max_per_address,
        reset_limit_per_ip=settings.password_reset_max_per_ip,
        reset_window=timedelta(seconds=settings.password_reset_window_seconds),
    )


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        poll_seconds=settings.mail_poll_seconds,
        lease=timedelta(seconds=settings.mail_lease_seconds),
        max_attempts=settings.mail_max_attempts,
        base_delay=timedelta(seconds=settings.mail_retry_base_seconds),
        max_delay=timedelta(seconds=settings.mail_retry_max_seconds),
    )


@dataclass
class Runtime:
    """Everything a running service holds: use-case context (the database too), documents, keys."""

    services: ServiceContext
    documents: DiscoveryDocuments
    key_watcher: KeyWatcher | None
    metrics: RuntimeMetrics
    outbox: OutboxWorker

    def use_keys(self, ring: KeyRing, settings: Settings) -> None:
        """Sign with the ring's active key, verify with and publish all of its keys."""
        self.services.tokens.use_keys(ring.active, ring.published, ring.signers)
        self.documents = _discovery_documents(settings, ring)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    registry: CollectorRegistry | None = None,
    tracing: Tracing | None = None,
) -> AsyncIterator[Runtime]:
    """Build the database, keys, hasher and token service; dispose of them on exit."""
    _announce_development_parts(settings)
    audit = Audit(registry or CollectorRegistry())
    watcher = _key_watcher(settings, clock)
    ring = _load_keys(settings, watcher)
    account_policy = _account_policy(settings)
    db = _database(settings, tracing)
    redis = _redis_client(settings)
    revocations, throttle_store = _stores(settings, redis, clock)
    mailer = _mailer(settings)
    hasher = HashingPool(
        Argon2Parameters(
            memory_kib=settings.password_hash_memory_kib,
            time_cost=settings.password_hash_time_cost,
            parallelism=settings.password_hash_parallelism,
        ),
        workers=settings.hash_pool_size,
        max_waiting=settings.hash_max_waiting,
        wait_timeout_seconds=settings.hash_wait_timeout_seconds,
        observe_seconds=audit.hash_seconds.observe,
        span=tracing.span if tracing is not None else None,
    )
    runtime_metrics = RuntimeMetrics(
        audit.registry,
        database_pool=db.pool_status,
        hasher=hasher,
        redis_ping=redis.ping if redis is not None else None,
    )
    if tracing is not None:
        # SQLAlchemy's instrumentation where an engine remains (PostgreSQL's ping and pool);
        # the repositories' statements get their spans from the database itself.
        tracing.instrument(db.engine if isinstance(db, PgDatabase) else None, redis)
    try:
        await hasher.start()
        if isinstance(revocations, RedisStore):
            await revocations.warn_if_evicting()
        services = ServiceContext(
            db=db,
            hasher=hasher,
            policy=PasswordPolicy(
                min_length=settings.password_min_length,
                max_length=settings.password_max_length,
                common_passwords=load_common_passwords(),
                context_words=context_words(settings.effective_issuer),
            ),
            tokens=TokenService(
                signing_key=ring.active,
                verification_keys=ring.published,
                issuer=settings.effective_issuer,
                audience=settings.audience,
                ttl_seconds=settings.access_token_ttl_seconds,
                leeway_seconds=settings.clock_leeway_seconds,
                clock=clock,
                id_token_signers=ring.signers,
                id_token_ttl_seconds=settings.id_token_ttl_seconds,
            ),
            clock=clock,
            default_client_id=settings.default_client_id,
            default_client_enabled=settings.default_client_enabled,
            revocations=revocations,
            session_policy=SessionPolicy(
                idle_timeout=timedelta(seconds=settings.session_idle_timeout_seconds),
                absolute_lifetime=timedelta(seconds=settings.session_absolute_lifetime_seconds),
                reuse_grace=timedelta(seconds=settings.refresh_reuse_grace_seconds),
                access_token_horizon=settings.access_token_horizon,
            ),
            throttler=Throttler(throttle_store, _throttle_policy(settings)),
            audit=audit,
            profiles=ProfileCache(max_entries=PROFILE_CACHE_ENTRIES, ttl=PROFILE_CACHE_TTL),
            browser_session_lifetime=timedelta(seconds=settings.browser_session_lifetime_seconds),
            accounts=account_policy,
            mail=_mail_policy(settings),
        )
        log.info("issuer %s signs with key %s", settings.effective_issuer, ring.active.kid)
        documents = _discovery_documents(settings, ring)
        outbox = OutboxWorker(services, mailer, _retry_policy(settings))
        yield Runtime(services, documents, watcher, runtime_metrics, outbox)
    finally:
        await mailer.close()
        if tracing is not None:
            tracing.close()
        hasher.close()
        await revocations.close()
        if redis is not None:
            await redis.aclose()
        await db.close()


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    tracer_provider: object | None = None,
) -> FastAPI:
    """The public FastAPI app for `settings`; its lifespan owns every resource.

    `tracer_provider` (an OpenTelemetry TracerProvider) replaces the OTLP exporter when
    AUTH_OTEL_ENABLED is set: tests pass one with an in-memory exporter.
    """

    registry = CollectorRegistry()
    tracing = load_tracing(settings, tracer_provider)
    page_kit = Pages()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_runtime(settings, clock=clock, registry=registry, tracing=tracing) as runtime,
            _publishing(runtime.metrics),
        ):
            app.state.runtime_metrics = runtime.metrics
            app.state.settings = settings
            app.state.services = runtime.services
            app.state.documents = runtime.documents
            app.state.trusted_proxies = tuple(settings.trusted_proxies)
            app.state.pages = page_kit
            app.state.csrf = CsrfGuard(
                issuer=settings.effective_issuer, load_key=runtime.services.db.secrets.ensure
            )
            app.state.session_cookie = SessionCookie(
                issuer=settings.effective_issuer,
                lifetime=runtime.services.browser_session_lifetime,
            )
            await hash_population.try_refresh(runtime.services)
            refreshing = asyncio.create_task(
                hash_population.keep_hash_population_current(
                    runtime.services, hash_population.REFRESH_EVERY
                )
            )
            # Catch a Redis that lost recent revocations in a failover (services/revocation.py).
            checking = asyncio.create_task(
                watch_generation(runtime.services, settings.revocation_check_seconds)
            )
            # Mail queued by any replica (or before a crash) goes out from here.
            sending = asyncio.create_task(runtime.outbox.run())
            sweeping = asyncio.create_task(
                Housekeeper(
                    runtime.services, timedelta(seconds=settings.housekeeping_interval_seconds)
                ).run()
            )
            watching = None
            if runtime.key_watcher is not None:

                def reload(ring: KeyRing) -> None:
                    runtime.use_keys(ring, settings)
                    app.state.documents = runtime.documents

                watching = asyncio.create_task(runtime.key_watcher.run(reload))
            # Everything alive now (modules, routes, keys: most tracked objects) lives until
            # shutdown; unfrozen, every full collection walked it all on the event loop and
            # freed nothing. Unfrozen at shutdown, so it can be freed again.
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                runtime.outbox.stop()
                for task in (refreshing, checking, watching, sending, sweeping):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task

    # /docs and /redoc load Swagger UI 5, ReDoc and the favicon from files shipped in the
    # fastapi-offline wheel (served under /static-offline-docs), never from a CDN;
    # AUTH_DOCS_ENABLED=false serves neither (the OpenAPI document stays).
    app = (FastAPIOffline if settings.docs_enabled else _without_docs)(
        title="auth_service",
        version=__version__,
        summary="Registration, OAuth2 password grant and signed JWT access tokens.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.http_body_timeout_seconds,
    )
    docs_pages = {"/docs", "/redoc", app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"}
    app.add_middleware(DocsSameOriginOnly, paths=frozenset(docs_pages))
    app.add_middleware(RequestContext, client_ip=client_ip, registry=registry)
    if tracing is not None:
        app.add_middleware(tracing.middleware_class(), **tracing.middleware_options())
    # The API routes go into the app's own route list, ahead of the docs routes: matching
    # through included routers costs FastAPI time per request and per router. Routes are
    # tried in order (~1 µs each), so the ones other services call all day come first:
    # the JWKS, /token, /users/me, introspection, /userinfo. No two routes overlap, so the
    # order changes only speed (and the order of openapi.json).
    api_routes = [
        route
        for module in (
            wellknown,
            token,
            users,
            sessions,
            oidc,
            health,
            mfa,
            accounts,
            account_pages,
            account,
            admin,
            pages,
            authorize,
            login_code,
        )
        for route in module.router.routes
    ]
    app.router.routes[:0] = api_routes
    return app


def create_serving_app(settings: Settings) -> PortDispatch:
    """What `serve` runs: the public app, and the management app on its own port."""
    return PortDispatch(create_app(settings), management_port=settings.management_port)


@asynccontextmanager
async def _publishing(metrics: RuntimeMetrics) -> AsyncIterator[None]:
    """In multiprocess mode, keep this worker's gauges current for other workers' scrapes."""
    if multiprocess_directory() is None:
        yield
        return
    publishing = asyncio.create_task(metrics.publish_periodically())
    try:
        yield
    finally:
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
        metrics.process_exited()


def _without_docs(**options: Any) -> FastAPI:
    return FastAPI(docs_url=None, redoc_url=None, **options)
