"""/docs in a real headless Chromium: Authorize runs the password grant, Try it out sends the
bearer token, and nothing is loaded from anywhere but the service on 127.0.0.1.

The service is a real `auth-service serve` process on a free loopback port with a migrated
temp SQLite file; the browser is Debian's `chromium` driven by Playwright (never a
Playwright-downloaded build). Without the browser the tests skip, and fail under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from tests.conftest import IN_CI, PASSWORD
from tests.processes import running_service, service_env

pytestmark = pytest.mark.slow

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
USERNAME = "swagger-user"
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated `auth-service serve` process on a free 127.0.0.1 port, stopped by PID."""
    data_dir = tmp_path_factory.mktemp("swagger-service")
    env = service_env(data_dir, AUTH_HASH_POOL_SIZE="2", AUTH_LOG_LEVEL="WARNING")
    with running_service("swagger", env, data_dir) as service:
        yield service.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; missing, it skips locally and fails under CI=true."""
    if shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname == "127.0.0.1"


class LoopbackOnly:
    """Records every request a page makes (page.on("request")), and aborts at the network
    layer any that would leave 127.0.0.1, recording those as having escaped."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self.blocked_by_csp: list[str] = []
        self.escaped: list[str] = []
        page.on("request", self._record)
        page.on("requestfailed", self._failed)
        page.route("**/*", self._guard)

    @property
    def urls(self) -> list[str]:
        return [request.url for request in self.requests]

    def _record(self, request: Request) -> None:
        self.requests.append(request)

    def _failed(self, request: Request) -> None:
        if request.failure == "csp":
            self.blocked_by_csp.append(request.url)

    def _guard(self, route: Route) -> None:
        if _is_loopback(route.request.url):
            route.continue_()
        else:
            self.escaped.append(route.request.url)
            route.abort()

    def foreign(self) -> list[str]:
        """Every request the page tried to make to anywhere but 127.0.0.1."""
        return [url for url in self.urls if not _is_loopback(url)]

    def sent_elsewhere(self) -> list[str]:
        """Foreign requests the browser would have sent: all but those the docs pages'
        Content-Security-Policy stopped inside the browser, before any network access."""
        unsent = set(self.blocked_by_csp)
        return [url for url in self.foreign() if url not in unsent] + self.escaped


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_point_only_at_local_assets(service_url: str, path: str) -> None:
    page = httpx.get(f"{service_url}{path}", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self';")
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets, page.text
    assert all(asset.startswith("/static-offline-docs/") for asset in assets), assets
    for asset in assets:
        assert httpx.get(f"{service_url}{asset}", timeout=5).status_code == 200, asset


def test_swagger_ui_is_version_5_for_openapi_3_1(service_url: str) -> None:
    assert httpx.get(f"{service_url}/openapi.json", timeout=5).json()["openapi"].startswith("3.1")
    bundle = httpx.get(f"{service_url}/static-offline-docs/swagger-ui-bundle.js", timeout=10)
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.', bundle.text)
    assert version is not None
    assert int(version.group(1)) >= 5, "Swagger UI 4 cannot render OpenAPI 3.1"


def test_swagger_authorize_then_try_it_out_on_users_me(service_url: str, page: Page) -> None:
    registered = httpx.post(
        f"{service_url}/register",
        json={"username": USERNAME, "password": PASSWORD},
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    network = LoopbackOnly(page)

    page.goto(f"{service_url}/docs")
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator("#oauth_username").fill(USERNAME)
    dialog.locator("#oauth_password").fill(PASSWORD)
    dialog.locator("button.modal-btn.authorize").click()
    # A successful grant turns the dialog's Authorize button into Logout.
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.locator("button.btn-done").click()
    expect(dialog).to_have_count(0)

    operation = page.locator(".opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/users/me"]')
    )
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    response = operation.locator(".live-responses-table .response").first
    expect(response.locator(".response-col_status")).to_have_text("200")
    body = response.locator(".response-col_description pre").first
    expect(body).to_contain_text(f'"username": "{USERNAME}"')

    token_calls = [r for r in network.requests if urlsplit(r.url).path == "/token"]
    assert [r.method for r in token_calls] == ["POST"]
    assert "grant_type=password" in (token_calls[0].post_data or "")
    me_calls = [r for r in network.requests if urlsplit(r.url).path == "/users/me"]
    assert me_calls, network.urls
    assert me_calls[-1].headers.get("authorization", "").startswith("Bearer ")
    assert network.foreign() == []
    assert network.escaped == []


def test_redoc_loads_without_leaving_loopback(service_url: str, page: Page) -> None:
    network = LoopbackOnly(page)
    page.goto(f"{service_url}/redoc")
    expect(page.locator("h1").first).to_contain_text("auth_service")
    page.wait_for_load_state("networkidle")
    # The ReDoc bundle hard-codes its logo on a CDN: the policy keeps it from being fetched.
    assert network.sent_elsewhere() == []
    assert all(_is_loopback(url) for url in network.urls if url not in network.blocked_by_csp)
