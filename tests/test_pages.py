"""The page foundation: autoescaped templates, page headers, CSRF tokens, HTML errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from auth_service.api.errors import install_error_handlers
from auth_service.api.pages import CSRF_FIELD, CsrfGuard, Pages, page_headers
from auth_service.api.pages.templating import form_action_source
from auth_service.errors import UntrustedAuthorizationRequest

ISSUER = "http://testserver"


class _Secrets:
    """ServiceSecretRepository.ensure semantics: the first stored value wins."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def ensure(self, name: str, candidate: str) -> str:
        return self.values.setdefault(name, candidate)


def _form_app(issuer: str = ISSUER) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    pages = Pages()
    guard = CsrfGuard(issuer=issuer, load_key=_Secrets().ensure)
    app.state.pages = pages

    @app.get("/form")
    async def form(request: Request, who: str = "", purpose: str = "demo:1") -> Response:
        token, cookie = await guard.issue(request, purpose)
        response = pages.error(title="Demo", message=f"hello {who} {token}", code=None)
        guard.set_cookie(response, cookie)
        return response

    @app.post("/form")
    async def submit(request: Request) -> Response:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        await guard.verify(request, value if isinstance(value, str) else None, "demo:1")
        return HTMLResponse("ok")

    @app.get("/untrusted")
    async def untrusted() -> Response:
        raise UntrustedAuthorizationRequest

    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_form_app())
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


def _token(page: str) -> str:
    match = re.search(r"hello \S* (\S+)</p>", page)
    assert match is not None, page
    return match.group(1)


def test_page_headers_forbid_framing_caching_scripts_and_foreign_forms() -> None:
    headers = page_headers(["https://rp.example:8443/cb", "com.example.app:/cb"])
    assert headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self' https://rp.example:8443 com.example.app:"
    )
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        ("http://127.0.0.1:5000/cb?x=1", "http://127.0.0.1:5000"),
        ("http://[::1]:80/cb", "http://[::1]:80"),
        ("https://rp.example/cb", "https://rp.example"),
        ("javascript;x:alert(1)", None),
    ],
)
def test_form_action_sources(uri: str, source: str | None) -> None:
    assert form_action_source(uri) == source


async def test_templates_escape_what_they_are_given(http: httpx.AsyncClient) -> None:
    response = await http.get("/form", params={"who": "<script>x</script>"})
    assert response.status_code == 400
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"


async def test_a_form_posts_with_its_token_and_cookie(http: httpx.AsyncClient) -> None:
    page = await http.get("/form")
    cookie = page.cookies["auth_csrf"]
    assert "httponly" in page.headers["set-cookie"].lower()
    assert "samesite=lax" in page.headers["set-cookie"].lower()
    ok = await http.post("/form", data={CSRF_FIELD: _token(page.text)})
    assert ok.status_code == 200, ok.text
    # The same browser keeps its cookie: a second form reuses it.
    again = await http.get("/form")
    assert "set-cookie" not in again.headers
    assert http.cookies["auth_csrf"] == cookie


@pytest.mark.parametrize(
    "attack",
    ["no_token", "wrong_token", "no_cookie", "cross_site", "foreign_origin", "other_purpose"],
)
async def test_a_forged_post_gets_the_html_error_page(http: httpx.AsyncClient, attack: str) -> None:
    page = await http.get("/form")
    token = _token(page.text)
    data: dict[str, str] = {CSRF_FIELD: token}
    headers: dict[str, str] = {}
    if attack == "no_token":
        data = {}
    elif attack == "wrong_token":
        data = {CSRF_FIELD: token[:-2] + ("AA" if token[-2:] != "AA" else "BB")}
    elif attack == "no_cookie":
        http.cookies.clear()
    elif attack == "cross_site":
        headers["Sec-Fetch-Site"] = "cross-site"
    elif attack == "foreign_origin":
        headers["Origin"] = "https://evil.example"
    elif attack == "other_purpose":  # a token of another form, for this very browser
        other = await http.get("/form", params={"purpose": "demo:2"})
        data = {CSRF_FIELD: _token(other.text)}
        assert data[CSRF_FIELD] != token
    response = await http.post("/form", data=data, headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Form expired" in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_origin_null_is_accepted_with_a_valid_token(http: httpx.AsyncClient) -> None:
    page = await http.get("/form")
    response = await http.post(
        "/form", data={CSRF_FIELD: _token(page.text)}, headers={"Origin": "null"}
    )
    assert response.status_code == 200


async def test_https_issuer_uses_a_host_prefixed_secure_cookie() -> None:
    transport = httpx.ASGITransport(app=_form_app("https://id.example"))
    async with httpx.AsyncClient(transport=transport, base_url="https://id.example") as client:
        page = await client.get("/form")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-csrf=")
    assert "secure" in cookie.lower()
    assert "path=/" in cookie.lower()
    assert "domain" not in cookie.lower()


async def test_untrusted_request_is_an_html_page_not_a_redirect(http: httpx.AsyncClient) -> None:
    response = await http.get("/untrusted")
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "not registered" in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_the_service_serves_the_stylesheet(client: httpx.AsyncClient) -> None:
    pages = Pages()
    response = await client.get(pages.stylesheet_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.content == pages.stylesheet
