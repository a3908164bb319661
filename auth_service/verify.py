"""Verify auth_service access tokens inside another service, without calling us per request.

Importable on its own: it needs only python-jose and httpx (and FastAPI for
`require_token`), nothing else from this package. Two lines protect a route:

    verifier = TokenVerifier("https://auth.example.com", audience="api")
    @app.get("/x")
    async def x(token: VerifiedToken = Depends(require_token(verifier, scopes=["profile"]))): ...

The verifier discovers the JWKS through RFC 8414 metadata, caches it as long as its
Cache-Control allows, and refetches at most once per `min_refetch_seconds` when a token
names an unknown `kid` (key rotation needs no restart; bogus kids cannot hammer the
issuer). It pins the algorithms, requires `typ: at+jwt`, `iss`, `aud`, `exp`, `nbf`, `iat`
(with leeway), `sub`, `jti`, and the scopes asked for. It accepts one string per token:
unpadded base64url segments with zero unused bits, and low-S ES256 signatures (s <= n/2).

A service-to-service (client_credentials) token verifies the same way: its `subject` and
`client_id` are the calling client's id and `is_client` is true; check it where a route
must act for a user.
Step-up (RFC 9470): `require_token(verifier, acr_values=[MFA_ACR], max_age=300)` also
demands a token whose login used a second factor (`acr`, or `amr` values with `amr=`)
no longer than `max_age` seconds ago (`auth_time`); otherwise it answers 401 with
`error="insufficient_user_authentication"` and the `acr_values` / `max_age` the client
must ask for when it logs the user in again.

Local verification cannot see a logout until the token expires (15 minutes by default).
Pass an `Introspector` to ask the issuer's /introspect as well (results cached for a few
seconds): logout then bites within that cache time, for one HTTP round trip per new token.
"""

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

__all__ = [
    "MFA_ACR",
    "PASSWORD_ACR",
    "InsufficientScopeError",
    "InsufficientUserAuthenticationError",
    "Introspector",
    "TokenError",
    "TokenVerifier",
    "VerificationUnavailable",
    "VerifiedToken",
    "require_token",
]

# The checks below up to JOSE_OPTIONS are the issuer's too: security/tokens.py imports
# them from here (this module imports nothing else from the package, so it ships alone).
# The `acr` values auth_service issues (auth_service/security/authn.py; a test keeps them equal).
PASSWORD_ACR = "urn:auth-service:acr:password"  # noqa: S105 - a URN, no secret
MFA_ACR = "urn:auth-service:acr:mfa"
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_TOKEN_LENGTH = 8192
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# The order n of the P-256 group (FIPS 186-4 D.1.2.3): (r, s) and (r, n - s) both verify.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# Time claims are checked against the verifier's own clock with leeway. python-jose turns
# require_exp/nbf/iat into checks against its clock without leeway, so their presence is
# checked separately.
JOSE_OPTIONS = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_at_hash": False,
    **{f"require_{claim}": True for claim in ("aud", "iss", "sub", "jti")},
}
_MAX_AGE = re.compile(r"max-age=(\d+)")


class TokenError(Exception):
    """The token is not acceptable (RFC 6750 `invalid_token`)."""


class InsufficientScopeError(Exception):
    """The token is valid but lacks a scope (RFC 6750 `insufficient_scope`)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(f"the token lacks the scope '{scope}'")


class InsufficientUserAuthenticationError(Exception):
    """The token is valid, but its login was too weak or too long ago (RFC 9470)."""

    def __init__(
        self, reason: str, *, acr_values: Sequence[str] = (), max_age: int | None = None
    ) -> None:
        self.acr_values = tuple(acr_values)
        self.max_age = max_age
        super().__init__(reason)


class VerificationUnavailable(Exception):
    """The issuer could not be reached when it had to be (fail closed: 503)."""


@dataclass(frozen=True)
class VerifiedToken:
    """What a verified access token says."""

    subject: str
    scopes: frozenset[str]
    client_id: str
    session_id: str
    token_id: str
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False)
    # How the user logged in (RFC 9068 §2.2.1): epoch seconds, RFC 8176 methods, class.
    auth_time: int | None = None
    amr: frozenset[str] = frozenset()
    acr: str | None = None

    @property
    def is_client(self) -> bool:
        """A client_credentials token (RFC 6749 §4.4): the subject is the calling client
        itself (`sub` == `client_id`), not a user."""
        return self.subject == self.client_id


@dataclass
class Introspector:
    """Revocation awareness through RFC 7662, as a registered confidential client."""

    client_id: str
    client_secret: str
    cache_seconds: float = 5.0
    _cache: dict[str, tuple[bool, float]] = field(default_factory=dict, repr=False)

    async def is_active(
        self, http: httpx.AsyncClient, endpoint: str, token: str, now: float
    ) -> bool:
        """Ask the issuer (or the few-seconds cache) whether the token is still active."""
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            response = await http.post(
                endpoint, data={"token": token}, auth=(self.client_id, self.client_secret)
            )
            response.raise_for_status()
            active = response.json().get("active") is True
        except (httpx.HTTPError, ValueError) as exc:
            raise VerificationUnavailable("token introspection failed") from exc
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[key] = (active, now + self.cache_seconds)
        return active


class TokenVerifier:
    """Verifies access tokens of one issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: Sequence[str] = ("ES256", "RS256"),
        leeway_seconds: int = 10,
        min_refetch_seconds: float = 30.0,
        introspector: Introspector | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        self._min_refetch = min_refetch_seconds
        self._introspector = introspector
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._owns_http = http is None
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, tuple[Key, str]] = {}
        self._fresh_until = 0.0
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # JWKS downloads so far (observable for tests and metrics)

    async def aclose(self) -> None:
        """Close the HTTP client if the verifier created it."""
        if self._owns_http:
            await self._http.aclose()

    async def verify(
        self,
        token: str,
        *,
        scopes: Iterable[str] = (),
        amr: Iterable[str] = (),
        acr_values: Sequence[str] = (),
        max_age: int | None = None,
    ) -> VerifiedToken:
        """The verified token, or TokenError / InsufficientScopeError, or
        InsufficientUserAuthenticationError when the login lacks an `amr` method, has an
        `acr` outside `acr_values`, or is older than `max_age` seconds."""
        header = _header(token)
        key = await self._key(header["kid"], header["alg"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[header["alg"]],
                audience=self.audience,
                issuer=self.issuer,
                options=JOSE_OPTIONS,
            )
        except (JOSEError, ValueError, TypeError) as exc:
            raise TokenError("the token signature or claims are invalid") from exc
        verified = self._check(claims)
        for scope in scopes:
            if scope not in verified.scopes:
                raise InsufficientScopeError(scope)
        self._check_authentication(verified, tuple(amr), tuple(acr_values), max_age)
        if self._introspector is not None:
            endpoint = (await self._discover())["introspection_endpoint"]
            if not await self._introspector.is_active(self._http, endpoint, token, self._clock()):
                raise TokenError("the token has been revoked")
        return verified

    def _check(self, claims: Mapping[str, Any]) -> VerifiedToken:
        times = [claims.get(name) for name in ("exp", "nbf", "iat")]
        strings = [claims.get(name) for name in ("sub", "jti", "scope", "client_id", "sid")]
        if any(type(value) is not int for value in times) or any(
            not isinstance(value, str) for value in strings
        ):
            raise TokenError("the token lacks required claims")
        exp, nbf, iat = (int(value) for value in times)  # type: ignore[arg-type]
        now = self._clock()
        if exp <= now - self._leeway:
            raise TokenError("the token has expired")
        if nbf > now + self._leeway or iat > now + self._leeway:
            raise TokenError("the token is not valid yet")
        sub, jti, scope, client_id, sid = (str(value) for value in strings)
        auth_time, amr, acr = claims.get("auth_time"), claims.get("amr", []), claims.get("acr")
        if (
            (auth_time is not None and type(auth_time) is not int)
            or not isinstance(amr, list)
            or not all(isinstance(method, str) for method in amr)
            or (acr is not None and not isinstance(acr, str))
        ):
            raise TokenError("the token has malformed authentication claims")
        return VerifiedToken(
            sub,
            frozenset(scope.split()),
            client_id,
            sid,
            jti,
            exp,
            claims,
            auth_time=auth_time,
            amr=frozenset(amr),
            acr=acr,
        )

    def _check_authentication(
        self,
        verified: VerifiedToken,
        amr: tuple[str, ...],
        acr_values: tuple[str, ...],
        max_age: int | None,
    ) -> None:
        def refuse(reason: str) -> InsufficientUserAuthenticationError:
            return InsufficientUserAuthenticationError(
                reason, acr_values=acr_values, max_age=max_age
            )

        missing = [method for method in amr if method not in verified.amr]
        if missing:
            raise refuse(f"the login did not use {', '.join(missing)}")
        if acr_values and verified.acr not in acr_values:
            raise refuse("a stronger authentication is required")
        if max_age is not None and (
            verified.auth_time is None or self._clock() - verified.auth_time > max_age
        ):
            raise refuse("a more recent authentication is required")

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/oauth-authorization-server"
            try:
                response = await self._http.get(url)
                response.raise_for_status()
                metadata = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise VerificationUnavailable("issuer metadata unavailable") from exc
            if metadata.get("issuer") != self.issuer:  # RFC 8414 §3.3
                raise VerificationUnavailable("metadata names another issuer")
            self._metadata = metadata
        return self._metadata

    async def _key(self, kid: str, alg: str) -> Key:
        now = self._clock()
        stale = now >= self._fresh_until
        may_refetch = kid not in self._keys and now - self._fetched_at >= self._min_refetch
        if stale or may_refetch:
            async with self._lock:  # one download for a crowd of requests
                if self._fetched_at < now:  # nobody refreshed while we waited
                    await self._fetch_keys()
        key, key_alg = self._keys.get(kid, (None, None))
        if key is None:
            raise TokenError("the token was signed by an unknown key")
        if key_alg != alg:
            raise TokenError("the token algorithm does not match its key")
        return key

    async def _fetch_keys(self) -> None:
        jwks_uri = (await self._discover())["jwks_uri"]
        try:
            response = await self._http.get(jwks_uri)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            if self._keys:  # keep serving with the keys we have
                self._fetched_at = self._clock()
                return
            raise VerificationUnavailable("JWKS unavailable") from exc
        self.fetches += 1
        keys: dict[str, tuple[Key, str]] = {}
        for entry in document.get("keys", []):
            alg, kid = entry.get("alg"), entry.get("kid")
            if (
                alg in self._algorithms
                and isinstance(kid, str)
                and entry.get("use", "sig") == "sig"
            ):
                try:
                    keys[kid] = (jwk.construct(entry, alg), alg)
                except JOSEError:
                    continue
        now = self._clock()
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        max_age = int(match.group(1)) if match else 0
        self._keys = keys
        self._fetched_at = now
        self._fresh_until = now + max(max_age, self._min_refetch)


def _header(token: str) -> dict[str, str]:
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenError("the token is not a signed JWT")
    if not is_canonical(token):
        raise TokenError("the token is not canonically encoded")
    try:
        header = jwt.get_unverified_header(token)
    except (JOSEError, ValueError, TypeError) as exc:
        raise TokenError("the token header is malformed") from exc
    typ, kid, alg = header.get("typ"), header.get("kid"), header.get("alg")
    if "crit" in header or not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise TokenError("the token is not an access token")
    if not isinstance(kid, str) or not isinstance(alg, str):
        raise TokenError("the token header lacks kid or alg")
    if alg == "ES256" and not is_low_s(token):
        raise TokenError("the token signature is not in canonical form")
    return {"kid": kid, "alg": alg}


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def is_canonical(token: str) -> bool:
    """True only for unpadded base64url segments whose unused trailing bits are zero (one
    spelling per token: a cache or denylist keyed by the string cannot be sidestepped)."""
    return all(
        _BASE64URL.fullmatch(segment)
        and len(segment) % 4 != 1
        and b64url_encode(b64url_decode(segment)) == segment
        for segment in token.split(".")
    )


def is_low_s(token: str) -> bool:
    """True for an ES256 signature r||s with s <= n/2 (the one of the two valid forms)."""
    signature = b64url_decode(token.rpartition(".")[2])
    return len(signature) == 64 and int.from_bytes(signature[32:], "big") <= P256_ORDER // 2


def _step_up_challenge(realm: str, exc: InsufficientUserAuthenticationError) -> str:
    """RFC 9470 §3: the error, and what the client must ask for when it logs in again."""
    challenge = f'{realm}, error="insufficient_user_authentication", error_description="{exc}"'
    if exc.acr_values:
        challenge += f', acr_values="{" ".join(exc.acr_values)}"'
    if exc.max_age is not None:
        challenge += f', max_age="{exc.max_age}"'
    return challenge


def require_token(
    verifier: TokenVerifier,
    *,
    scopes: Sequence[str] = (),
    amr: Sequence[str] = (),
    acr_values: Sequence[str] = (),
    max_age: int | None = None,
) -> Callable[..., Any]:
    """A FastAPI dependency: the VerifiedToken, or RFC 6750 401/403 (503 if unverifiable);
    with `amr`, `acr_values` or `max_age`, RFC 9470's 401 insufficient_user_authentication
    for a login too weak or too old."""
    from fastapi import HTTPException, Request

    realm = 'Bearer realm="api"'

    async def dependency(request: Request) -> VerifiedToken:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "authentication required", {"WWW-Authenticate": realm})
        try:
            return await verifier.verify(
                token.strip(), scopes=scopes, amr=amr, acr_values=acr_values, max_age=max_age
            )
        except TokenError as exc:
            challenge = f'{realm}, error="invalid_token", error_description="{exc}"'
            raise HTTPException(401, str(exc), {"WWW-Authenticate": challenge}) from exc
        except InsufficientUserAuthenticationError as exc:
            headers = {"WWW-Authenticate": _step_up_challenge(realm, exc)}
            raise HTTPException(401, str(exc), headers) from exc
        except InsufficientScopeError as exc:
            challenge = f'{realm}, error="insufficient_scope", scope="{exc.scope}"'
            raise HTTPException(403, str(exc), {"WWW-Authenticate": challenge}) from exc
        except VerificationUnavailable as exc:
            raise HTTPException(503, str(exc), {"Retry-After": "5"}) from exc

    return dependency
