"""Redirect URI matching: exact strings, plus any port on a loopback IP literal (RFC 8252 §7.3)."""

from __future__ import annotations

import pytest

from auth_service.errors import InvalidRedirectUri
from auth_service.services.redirect_uris import check_redirect_uri, redirect_uri_allowed

APP = "https://app.example/cb"


@pytest.mark.parametrize(
    ("registered", "presented"),
    [
        ([APP], APP),
        (["https://a.example/x", APP], APP),
        (["https://app.example/cb?tenant=1"], "https://app.example/cb?tenant=1"),
        (["com.example.app:/oauth2redirect"], "com.example.app:/oauth2redirect"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:51234/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1/cb"),
        (["http://127.0.0.1:8080/cb"], "http://127.0.0.1:9/cb"),  # registered port: any
        (["http://127.0.0.1:8080/cb"], "http://127.0.0.1/cb"),
        (["http://[::1]/cb"], "http://[::1]:65535/cb"),
        (["http://127.0.0.1"], "http://127.0.0.1:4000"),
        (["http://127.0.0.1/cb?x=1"], "http://127.0.0.1:4000/cb?x=1"),
        (["http://127.0.0.1?x=1"], "http://127.0.0.1:4000?x=1"),
        (["http://localhost:3000/cb"], "http://localhost:3000/cb"),  # exact is exact
    ],
)
def test_allowed(registered: list[str], presented: str) -> None:
    assert redirect_uri_allowed(registered, presented)


@pytest.mark.parametrize(
    ("registered", "presented"),
    [
        ([], APP),
        ([APP], "https://app.example/cb/"),  # trailing slash
        (["https://app.example/cb/"], APP),
        ([APP], "https://APP.example/cb"),  # host case: no normalisation
        ([APP], "HTTPS://app.example/cb"),
        ([APP], "https://app.example/CB"),
        ([APP], "https://app.example/cb?x=1"),  # an added query
        (["https://app.example/cb?x=1"], "https://app.example/cb?x=2"),
        (["https://app.example/cb?x=1"], "https://app.example/cb"),
        ([APP], "https://app.example/cb#frag"),
        ([APP], "https://app.example/cb/../cb"),
        ([APP], "https://app.example/cb%2F"),
        ([APP], "https://app.example:443/cb"),  # default port spelt out
        ([APP], "https://app.example/cbx"),  # prefix
        (["https://app.example/"], APP),  # registered is a prefix of presented
        ([APP], "https://app.example.evil.test/cb"),
        ([APP], "https://app.example@evil.test/cb"),
        ([APP], "https://evil.test@app.example/cb"),
        ([APP], " https://app.example/cb"),
        ([APP], "https://app.example/cb "),
        (["https://*.example/cb"], APP),  # no wildcards
        (["https://app.example/*"], APP),
        # localhost does not get the any-port rule (RFC 8252 §8.3).
        (["http://localhost/cb"], "http://localhost:5000/cb"),
        (["http://localhost:3000/cb"], "http://localhost:3001/cb"),
        # The loopback rule changes the port only.
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000/cb/"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000/other"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000/cb?x=1"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000/cb#x"),
        (["http://127.0.0.1/cb"], "https://127.0.0.1:5000/cb"),
        (["http://127.0.0.1/cb"], "HTTP://127.0.0.1:5000/cb"),
        (["http://127.0.0.1/cb"], "http://[::1]:5000/cb"),  # other address family
        (["http://[::1]/cb"], "http://127.0.0.1:5000/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.2:5000/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1.evil.test:5000/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000@evil.test/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1@evil.test/cb"),
        (["http://127.0.0.1/cb"], "http://user@127.0.0.1:5000/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000\\@evil.test/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:0/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:65536/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:0080/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:+80/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000:6000/cb"),
        (["http://127.0.0.1/cb"], "http://0x7f000001:5000/cb"),
        (["http://127.0.0.1/cb"], "http://[::ffff:127.0.0.1]:5000/cb"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:5000/cb\n"),
        (["http://127.0.0.1/cb"], "http://127.0.0.1:５０００/cb"),  # non-ASCII digits
        # A registered non-loopback host never matches another port.
        (["http://app.example/cb"], "http://app.example:8080/cb"),
    ],
)
def test_refused(registered: list[str], presented: str) -> None:
    assert not redirect_uri_allowed(registered, presented)


@pytest.mark.parametrize(
    "uri",
    [
        APP,
        "http://localhost:3000/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
        "https://app.example/cb?tenant=1",
        "com.example.app:/oauth2redirect",
    ],
)
def test_registrable(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "/cb",
        "app.example/cb",
        "//app.example/cb",
        "https://app.example/cb#",
        "https://app.example/cb#frag",
        "https:///cb",
        "https://app.example/c b",
        "https://app.example/cb\n",
        "https://user:pw@app.example/cb",
        "https://app.example@evil.test/cb",
        "https://app.example:99999/cb",
        "https://app.example:x/cb",
        "HTTPS://app.example/cb",
        "https:app.example/cb",
        "https://app.example\\@evil.test/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://app.example/" + "x" * 2000,
    ],
)
def test_not_registrable(uri: str) -> None:
    with pytest.raises(InvalidRedirectUri):
        check_redirect_uri(uri)
