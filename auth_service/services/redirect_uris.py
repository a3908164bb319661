"""Redirect URIs: what may be registered, and whether a presented one is registered.

Matching is exact string comparison (RFC 9700 §4.1.3, OAuth 2.1 §2.3.1): no wildcards, no
prefixes, no normalisation. The one exception is RFC 8252 §7.3: a native app listening on
an ephemeral port of the loopback interface registers `http://127.0.0.1/path` or
`http://[::1]/path`, and any port then matches; `localhost` does not get that rule
(RFC 8252 §8.3: it may resolve elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from auth_service.errors import InvalidRedirectUri

__all__ = ["check_redirect_uri", "redirect_uri_allowed"]

# Scheme, loopback IP literal, optional port, then the rest (path and query), which must
# begin with "/" or "?" or be empty: nothing (no "@", ":", "\\") may follow the host.
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?(?=[/?]|\Z)(.*)", re.S)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
# A port as a client may present it: 1-65535, no leading zero.
_PORT = re.compile(r"[1-9][0-9]{0,4}\Z")
_MAX_LENGTH = 2000


def _loopback_parts(uri: str) -> tuple[str, str | None, str] | None:
    match = _LOOPBACK.fullmatch(uri)
    return (match[1], match[2], match[3]) if match else None


def redirect_uri_allowed(registered: Iterable[str], presented: str) -> bool:
    """True when `presented` is byte-for-byte one of `registered`, or differs from a
    registered loopback IP literal URI only in its port (RFC 8252 §7.3)."""
    candidates = list(registered)
    if presented in candidates:
        return True
    offered = _loopback_parts(presented)
    if offered is None:
        return False
    host, port, rest = offered
    if port is not None and not (_PORT.match(port) and int(port) <= 65535):
        return False
    for uri in candidates:
        parts = _loopback_parts(uri)
        if parts is not None and parts[0] == host and parts[2] == rest:
            return True
    return False


def check_redirect_uri(uri: str) -> str:
    """Return `uri` if it may be registered: absolute, no fragment, no userinfo, no
    whitespace; http(s) with a host. Else InvalidRedirectUri."""
    if not uri or len(uri) > _MAX_LENGTH or any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise InvalidRedirectUri(f"not a usable redirect URI: {uri!r}")
    if "#" in uri:
        raise InvalidRedirectUri(f"a redirect URI must not have a fragment: {uri!r}")
    if "\\" in uri:
        raise InvalidRedirectUri(f"a redirect URI must not contain a backslash: {uri!r}")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise InvalidRedirectUri(f"not a usable redirect URI: {uri!r}") from exc
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if not _SCHEME.match(scheme):
        raise InvalidRedirectUri(f"a redirect URI must be absolute: {uri!r}")
    if scheme.lower() in {"http", "https"}:
        if scheme != scheme.lower() or not uri[len(scheme) :].startswith("://"):
            raise InvalidRedirectUri(f"write the scheme as http:// or https://: {uri!r}")
        if not parts.hostname:
            raise InvalidRedirectUri(f"an http(s) redirect URI needs a host: {uri!r}")
    elif scheme.lower() in {"javascript", "data", "vbscript", "file"}:
        raise InvalidRedirectUri(f"that scheme cannot be a redirect URI: {uri!r}")
    if "@" in parts.netloc:
        raise InvalidRedirectUri(f"a redirect URI must not carry userinfo: {uri!r}")
    return uri
