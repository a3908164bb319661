"""Harness of the relying-party tests: a real provider process, the real CLI, Chromium.

The provider is `auth-service serve` on 127.0.0.1 and the port the kernel picks (issuer
`http://127.0.0.1:PORT`, read back once it listens) with a migrated temp SQLite file; users
and clients are made with the real `auth-service` commands. The browser is Debian's
Chromium driven by Playwright. Relying parties written by others (Authlib, npm's
openid-client, Apache mod_auth_openidc) are what the tests exercise; this module only
starts things, logs in through the provider's real pages, and listens on loopback where a
relying party's redirect lands.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, sync_playwright
from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from tests.conftest import (
    IN_CI,
    PASSWORD,
    POSTGRES_ADMIN_DSN,
    REDIS_TEST_URL,
    _postgres_admin,
    _service_missing,
    delete_keys,
)
from tests.processes import Replica, run_cli, running_service, service_env

__all__ = [
    "BACKENDS",
    "PASSWORD",
    "CallbackServer",
    "Provider",
    "browser_context",
    "chromium",
    "finish_at",
    "log_in",
    "needs",
    "running_provider",
]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("AUTH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 20_000
# The element a relying party's landing page (or an error page of its own) carries.
DONE_ID = "rp-done"
ERROR_ID = "rp-error"


def needs(present: bool, what: str) -> None:
    """Skip without `what` locally; under CI=true its absence fails the test."""
    if present:
        return
    message = f"{what} is missing (`make test` installs it with scripts/ensure-oidc-rps)"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


@dataclass
class Provider:
    """The running provider and how to run its CLI against the same data."""

    service: Replica
    env: dict[str, str]
    directory: Path

    @property
    def issuer(self) -> str:
        return self.service.url

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def cli(self, *args: str) -> str:
        return run_cli(self.env, self.directory, *args)

    def add_user(self, username: str, password: str = PASSWORD) -> str:
        """`auth-service create-user`; the new user's id (the `sub` a provider must assert)."""
        printed = run_cli(
            {**self.env, "AUTH_NEW_USER_PASSWORD": password},
            self.directory,
            "create-user",
            username,
        )
        user_id: str = json.loads(printed)["id"]
        return user_id

    def add_client(self, name: str, *options: str) -> dict[str, str]:
        """`auth-service clients add NAME OPTIONS`; its JSON (client_id, client_secret)."""
        printed: dict[str, str] = json.loads(self.cli("clients", "add", name, *options))
        return printed


BACKENDS = ["sqlite-memory", "postgres-redis"]


_T = TypeVar("_T")


def _run_coroutine(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run on a thread of its own: Playwright's sync API keeps an event loop
    running on this one while the browser fixture lives, and asyncio.run refuses to start
    inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@contextmanager
def _backend_settings(backend: str) -> Iterator[dict[str, str]]:
    """AUTH_* settings of one backend pair; PostgreSQL gets a database of its own, dropped
    afterwards, and Redis (the revocation store then) a key prefix of its own, deleted
    afterwards."""
    if backend == "sqlite-memory":
        yield {}
        return
    name = f"auth_rp_{os.getpid()}_{secrets.token_hex(4)}"
    prefix = f"authtest:rp:{secrets.token_hex(6)}:"
    try:
        _run_coroutine(_postgres_admin(f'CREATE DATABASE "{name}"'))
        _run_coroutine(_ping_redis())
    except (OSError, asyncpg.PostgresError, RedisError, TimeoutError) as exc:
        _service_missing("PostgreSQL and Redis", exc)
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield {
            "AUTH_DATABASE_URL": f"{base}/{name}",
            "AUTH_REDIS_URL": REDIS_TEST_URL,
            "AUTH_REDIS_KEY_PREFIX": prefix,
        }
    finally:
        _run_coroutine(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        _run_coroutine(delete_keys(REDIS_TEST_URL, prefix))


async def _ping_redis() -> None:
    client = redis_asyncio.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


@contextmanager
def running_provider(
    directory: Path, backend: str = "sqlite-memory", **settings: str
) -> Iterator[Provider]:
    """A migrated provider on a kernel-picked loopback port, stopped by PID afterwards."""
    with _backend_settings(backend) as backend_settings:
        env = service_env(
            directory,
            AUTH_HASH_POOL_SIZE="2",
            AUTH_LOG_LEVEL="WARNING",
            **backend_settings,
            **settings,
        )
        with running_service("provider", env, directory, start_timeout=60.0) as service:
            yield Provider(service, env, directory)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium (never a Playwright download)."""
    needs(shutil.which(CHROMIUM) is not None, CHROMIUM)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh cookie jar: one user agent, one SSO session at most."""
    context = browser.new_context()
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def _landing(page: Page) -> Locator:
    return page.locator(f"#{DONE_ID}, #{ERROR_ID}")


def finish_at(page: Page) -> str:
    """Wait for the relying party's landing page; its #rp-done text (fails on #rp-error)."""
    landing = _landing(page).first
    landing.wait_for()
    error = page.locator(f"#{ERROR_ID}")
    assert error.count() == 0, f"the relying party failed at {page.url}: {error.inner_text()}"
    return landing.inner_text()


@dataclass
class LoginTrace:
    """What the browser went through between the relying party and its landing page."""

    login_page: bool = False
    consent_page: bool = False
    consent_scopes: str = ""


def log_in(
    page: Page, username: str, password: str = PASSWORD, *, decision: str = "allow"
) -> LoginTrace:
    """On the provider's pages: fill the login form if shown, answer consent if asked
    (the button named `decision` with value `decision`).

    Stops once the relying party's landing page (#rp-done or #rp-error) is displayed.
    """
    trace = LoginTrace()
    form = page.locator("form:has(input[name=password])")
    allow = page.locator(f"button[name=decision][value={decision}]")
    for _ in range(4):
        step = form.or_(allow).or_(_landing(page)).first
        step.wait_for()
        if form.count() and form.first.is_visible():
            assert not trace.login_page, f"the login page came back: {page.content()[:2000]}"
            trace.login_page = True
            form.first.locator("input[name=username]").fill(username)
            form.first.locator("input[name=password]").fill(password)
            form.first.locator("[type=submit]").first.click()
            form.first.wait_for(state="detached")
        elif allow.count() and allow.first.is_visible():
            assert not trace.consent_page, "the consent page came back"
            trace.consent_page = True
            trace.consent_scopes = page.locator("body").inner_text()
            allow.first.click()
            allow.first.wait_for(state="detached")
        else:
            return trace
    pytest.fail(f"never reached the relying party; stuck at {page.url}")


@dataclass
class Arrival:
    """One request that reached the callback server."""

    path: str
    query: dict[str, str]
    url: str


@dataclass
class CallbackServer:
    """A loopback HTTP server where authorization responses land; records each arrival.

    It answers every GET with a page carrying #rp-done, so `finish_at` sees it.
    """

    host: str = "localhost"
    arrivals: list[Arrival] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def last(self, path: str) -> Arrival:
        matching = [arrival for arrival in self.arrivals if arrival.path == path]
        assert matching, f"nothing arrived at {path}: {self.arrivals}"
        return matching[-1]

    @contextmanager
    def running(self) -> Iterator[CallbackServer]:
        record: Callable[[Arrival], None] = self.arrivals.append
        base = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                record(Arrival(parts.path, query, f"{base.base}{self.path}"))
                body = f'<!doctype html><p id="{DONE_ID}">arrived at {parts.path}</p>'.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
