"""Apache httpd with Debian's mod_auth_openidc protecting a location, Chromium logging in.

Apache is run by the test (its own config file in a temp directory, a loopback port, stopped
by PID; never the system service). `/protected/` is proxied to a loopback echo server the
test runs, so what mod_auth_openidc passes on (OIDC_CLAIM_* headers from the validated ID
token and userinfo, the access token) is what the page shows. The relying party is on
`localhost`, the provider on `127.0.0.1`; the client is confidential (client_secret_basic),
first-party, and uses PKCE S256.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tests.processes import free_port
from tests.rp_support import (
    DONE_ID,
    Provider,
    browser_context,
    chromium,
    finish_at,
    log_in,
    needs,
    running_provider,
)

pytestmark = pytest.mark.slow

USERNAME = "apache-user"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
START_TIMEOUT_SECONDS = 20.0
CONFIG = """\
ServerRoot "{root}"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile "{root}/apache.pid"
DefaultRuntimeDir "{root}"
Mutex file:{root} default
ErrorLog "{root}/error.log"
LogLevel warn auth_openidc:info
LogFormat "%h \\"%r\\" %>s" brief
CustomLog "{root}/access.log" brief
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule auth_openidc_module {modules}/mod_auth_openidc.so

OIDCProviderMetadataURL {discovery}
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI http://localhost:{port}/protected/redirect_uri
OIDCCryptoPassphrase {passphrase}
OIDCScope "openid profile"
OIDCPKCEMethod S256
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCPassClaimsAs headers
OIDCPassIDTokenAs claims

<Location /protected/>
    AuthType openid-connect
    Require valid-user
    ProxyPass http://127.0.0.1:{echo_port}/
</Location>
<Location /logged-out>
    Require all granted
    ProxyPass http://127.0.0.1:{echo_port}/logged-out
</Location>
"""


@dataclass
class Apache:
    """One httpd run by the test: its port, directory and process."""

    port: int
    root: Path
    client_id: str
    process: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.root / name).read_text(errors="replace")
            for name in ("error.log", "access.log", "stdout.log")
            if (self.root / name).exists()
        )


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with the request's headers as JSON in #rp-done: what Apache passed on."""

    def do_GET(self) -> None:
        headers = {name: value for name, value in self.headers.items()}
        text = json.dumps({"path": self.path, "headers": headers}, indent=2)
        body = f'<!doctype html><pre id="{DONE_ID}">{escape(text)}</pre>'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with running_provider(tmp_path_factory.mktemp("rp-apache")) as running:
        yield running


@pytest.fixture(scope="module")
def user_id(provider: Provider) -> str:
    return provider.add_user(USERNAME)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _wait_until_listening(apache: Apache) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if apache.process.poll() is not None:
            pytest.fail(f"apache2 exited with {apache.process.returncode}:\n{apache.logs()}")
        try:
            httpx.get(f"http://127.0.0.1:{apache.port}/", timeout=1)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"apache2 did not listen in time:\n{apache.logs()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def apache(
    provider: Provider, echo_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Apache]:
    """httpd -DFOREGROUND on its own config, a first-party confidential client for it."""
    needs(Path(APACHE).exists(), "apache2 (Debian)")
    needs((MODULES / "mod_auth_openidc.so").exists(), "libapache2-mod-auth-openidc (Debian)")
    port = free_port()
    root = tmp_path_factory.mktemp("apache")
    registered = provider.add_client(
        "apache-rp",
        "--confidential",
        "--first-party",
        "--grants",
        "authorization_code",
        "refresh_token",
        "--redirect-uris",
        f"http://localhost:{port}/protected/redirect_uri",
        "--post-logout-redirect-uris",
        f"http://localhost:{port}/logged-out",
        "--scopes",
        "openid",
        "profile",
    )
    config = root / "httpd.conf"
    config.write_text(
        CONFIG.format(
            root=root,
            port=port,
            modules=MODULES,
            # As root, httpd serves as www-data (it refuses to serve as root).
            user="User www-data\nGroup www-data" if os.geteuid() == 0 else "",
            discovery=provider.discovery_url,
            client_id=registered["client_id"],
            client_secret=registered["client_secret"],
            passphrase=secrets.token_hex(16),
            echo_port=echo_port,
        )
    )
    checked = subprocess.run(
        [APACHE, "-t", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    with (root / "stdout.log").open("wb") as output:
        process = subprocess.Popen(
            [APACHE, "-f", str(config), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = Apache(port, root, registered["client_id"], process)
    try:
        _wait_until_listening(running)
        yield running
    finally:
        process.terminate()  # SIGTERM to the parent: it stops its children
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _echoed(text: str) -> dict[str, str]:
    headers: dict[str, str] = json.loads(text)["headers"]
    return {name.lower(): value for name, value in headers.items()}


def test_mod_auth_openidc_logs_in_and_passes_the_claims(
    apache: Apache, provider: Provider, user_id: str, browser: Browser
) -> None:
    with browser_context(browser) as context:
        page = context.new_page()
        page.goto(f"{apache.base}/protected/page")
        trace = log_in(page, USERNAME)
        try:
            headers = _echoed(finish_at(page))
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{apache.logs()}") from failure
        assert trace.login_page
        assert not trace.consent_page, "a --first-party client skips consent"
        assert page.url == f"{apache.base}/protected/page"
        # mod_auth_openidc validated the ID token (and called userinfo) before passing these.
        assert headers["oidc_claim_sub"] == user_id
        assert headers["oidc_claim_iss"] == provider.issuer
        assert headers["oidc_claim_aud"] == apache.client_id
        assert headers["oidc_claim_preferred_username"] == USERNAME
        assert headers["oidc_claim_amr"] == "pwd"
        assert headers.get("oidc_access_token"), headers
        # The access token it got is one the provider's userinfo accepts.
        info = httpx.get(
            f"{provider.issuer}/userinfo",
            headers={"Authorization": f"Bearer {headers['oidc_access_token']}"},
            timeout=5,
        )
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == user_id

        # Logout through mod_auth_openidc: it ends its own session, then sends the browser
        # to the end_session_endpoint with the id_token_hint, which returns it here.
        page.goto(f"{apache.base}/protected/redirect_uri?logout={apache.base}/logged-out")
        finish_at(page)
        assert page.url.startswith(f"{apache.base}/logged-out"), page.url
        # The provider's session is over too: the protected page asks for the password again.
        page.goto(f"{apache.base}/protected/again")
        trace = log_in(page, USERNAME)
        assert trace.login_page, "after logout the provider must ask for the password"
        assert _echoed(finish_at(page))["oidc_claim_sub"] == user_id
