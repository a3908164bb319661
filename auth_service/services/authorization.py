"""The authorization endpoint (RFC 6749 §4.1, OpenID Connect Core §3.1.2): validate a
request, decide whether the browser must log in or consent, and issue the code.

Until the client and its redirect URI are verified nothing is sent anywhere: the person
sees an HTML error page (UntrustedAuthorizationRequest). After that every refusal goes
back to the redirect URI with `error`, `state` and `iss` (AuthorizationFailed). A request
waiting for a login or a consent is stored server side; the pages carry only its id.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from urllib.parse import urlencode

from auth_service.errors import (
    AuthorizationFailed,
    AuthorizationRequestExpired,
    InvalidToken,
    UntrustedAuthorizationRequest,
)
from auth_service.repositories import AuthorizationCodeRow, BrowserSessionFound, PendingRequestRow
from auth_service.security.tokens import new_token_id
from auth_service.services.account_client import ACCOUNT_CLIENT_ID, account_client
from auth_service.services.clients import Client, find_client
from auth_service.services.context import ServiceContext
from auth_service.services.redirect_uris import redirect_uri_allowed
from auth_service.services.scopes import (
    DEFAULT_SCOPES,
    EMAIL_SCOPE,
    IDENTITY_SCOPES,
    SUPPORTED_SCOPES,
)

__all__ = [
    "CODE_LIFETIME",
    "AuthorizationRequest",
    "NeedsConsent",
    "NeedsLogin",
    "Outcome",
    "Pending",
    "RedirectTo",
    "decide",
    "deny",
    "hash_code",
    "load_pending",
    "record_consent",
    "record_login",
    "validate",
]

CODE_LIFETIME = timedelta(seconds=60)
PENDING_LIFETIME = timedelta(minutes=10)
# RFC 7636 §4.1: 43-128 unreserved characters (an S256 challenge is 43).
PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_PROMPTS = frozenset({"none", "login", "consent", "select_account"})
_MAX_STATE, _MAX_NONCE, _MAX_HINT = 2048, 512, 256


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated request, and the steps this browser has done for it."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    prompt: tuple[str, ...]
    max_age: int | None
    login_hint: str | None
    hint_subject: str | None
    # The browser session that logged in / consented for this very request.
    login_session: str | None = None
    consent_session: str | None = None
    # A password checked for a user with a second factor (services/login.py): who, the
    # credential version read with it, when, and the SHA-256 of the browser's binding.
    mfa_user: str | None = None
    mfa_credential_version: int | None = None
    mfa_since: float | None = None
    mfa_binding: str | None = None

    def to_json(self) -> str:
        """The stored form of a pending request."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> AuthorizationRequest:
        """A stored request back (lists become tuples)."""
        values = json.loads(raw)
        values["scopes"] = tuple(values["scopes"])
        values["prompt"] = tuple(values["prompt"])
        return cls(**values)


@dataclass(frozen=True)
class RedirectTo:
    """Answer: send the browser back to the client (a code, or an error)."""

    location: str


@dataclass(frozen=True)
class NeedsLogin:
    """Answer: show the login page for the pending request `request_id`."""

    request_id: str


@dataclass(frozen=True)
class NeedsConsent:
    """Answer: show the consent page for the pending request `request_id`."""

    request_id: str


Outcome = RedirectTo | NeedsLogin | NeedsConsent


@dataclass(frozen=True)
class Pending:
    """A pending request with its client, as the login and consent pages need it."""

    request_id: str
    request: AuthorizationRequest
    client: Client


def hash_code(code: str) -> str:
    """The stored form of an authorization code."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _with_query(uri: str, values: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in values.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def failure(
    ctx: ServiceContext, request: AuthorizationRequest, code: str, description: str
) -> AuthorizationFailed:
    """An error for the client at its verified redirect URI (RFC 6749 §4.1.2.1, RFC 9207)."""
    return _failure(ctx, request.redirect_uri, request.state, code, description)


def _failure(
    ctx: ServiceContext, redirect_uri: str, state: str | None, code: str, description: str
) -> AuthorizationFailed:
    location = _with_query(
        redirect_uri,
        {"error": code, "error_description": description, "state": state, "iss": ctx.tokens.issuer},
    )
    return AuthorizationFailed(code, description, location=location)


async def _trusted_client(
    ctx: ServiceContext, params: Mapping[str, str], repeated: frozenset[str]
) -> tuple[Client, str]:
    """The client and redirect URI, verified; else the error page (never a redirect)."""
    client_id = params.get("client_id")
    if not client_id or "client_id" in repeated:
        raise UntrustedAuthorizationRequest("the request does not name exactly one client")
    client = await find_client(ctx, client_id)
    if client is None:
        raise UntrustedAuthorizationRequest("the client is not registered")
    redirect_uri = params.get("redirect_uri")
    if (
        not redirect_uri
        or "redirect_uri" in repeated
        or not redirect_uri_allowed(client.redirect_uris, redirect_uri)
    ):
        raise UntrustedAuthorizationRequest("the redirect URI is not registered for this client")
    return client, redirect_uri


def _scopes(raw: str | None, client: Client) -> tuple[str, ...] | None:
    """Known scopes the client may ask for, in request order; unknown ones are ignored
    (Core §3.1.2.1); None when every named scope was refused."""
    if raw is None:
        return tuple(sorted(DEFAULT_SCOPES & client.scopes))
    known = [s for s in dict.fromkeys(raw.split()) if s in SUPPORTED_SCOPES]
    allowed = tuple(s for s in known if s in client.scopes)
    return allowed if allowed or not known else None


async def validate(
    ctx: ServiceContext, params: Mapping[str, str], repeated: frozenset[str]
) -> tuple[Client, AuthorizationRequest]:
    """Check an authorization request (query or form parameters, empty ones omitted)."""
    client, redirect_uri = await _trusted_client(ctx, params, repeated)
    state = params.get("state")
    if state is not None and len(state) > _MAX_STATE:
        state = None

    def fail(code: str, description: str) -> AuthorizationFailed:
        return _failure(ctx, redirect_uri, state, code, description)

    if repeated:
        raise fail("invalid_request", "a parameter is repeated")
    if "request" in params:
        raise fail("request_not_supported", "request objects are not supported")
    if "request_uri" in params:
        raise fail("request_uri_not_supported", "request_uri is not supported")
    response_type = params.get("response_type")
    if response_type is None:
        raise fail("invalid_request", "response_type is required")
    if response_type != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if params.get("response_mode", "query") != "query":
        raise fail("invalid_request", "only response_mode=query is supported")
    if "authorization_code" not in client.grant_types:
        raise fail("unauthorized_client", "this client may not use the authorization code flow")
    scopes = _scopes(params.get("scope"), client)
    if scopes is None:
        raise fail("invalid_scope", "none of the requested scopes is allowed for this client")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if method is not None:
            raise fail("invalid_request", "code_challenge_method without code_challenge")
        if client.require_pkce:
            raise fail("invalid_request", "this client must use PKCE (code_challenge, S256)")
    elif (method or "plain") != "S256":
        raise fail("invalid_request", "only code_challenge_method=S256 is supported")
    elif not PKCE_VALUE.fullmatch(challenge):
        raise fail("invalid_request", "code_challenge is malformed")
    prompt = tuple(dict.fromkeys((params.get("prompt") or "").split()))
    if not set(prompt) <= _PROMPTS:
        raise fail("invalid_request", "unsupported prompt value")
    if "none" in prompt and len(prompt) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined with other values")
    raw_max_age = params.get("max_age")
    if raw_max_age is not None and not (raw_max_age.isascii() and raw_max_age.isdigit()):
        raise fail("invalid_request", "max_age must be a non-negative integer")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > _MAX_NONCE:
        raise fail("invalid_request", "nonce is too long")
    hint_subject = None
    if (raw_hint := params.get("id_token_hint")) is not None:
        try:
            hint = ctx.tokens.verify_id_token_hint(raw_hint)
        except InvalidToken:
            raise fail("invalid_request", "id_token_hint is not a valid ID token") from None
        if client.client_id not in hint.audiences:
            raise fail("invalid_request", "id_token_hint was issued to another client")
        hint_subject = hint.subject
    login_hint = params.get("login_hint")
    request = AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        nonce=nonce,
        code_challenge=challenge,
        prompt=prompt,
        max_age=int(raw_max_age[:9]) if raw_max_age is not None else None,
        login_hint=login_hint[:_MAX_HINT] if login_hint else None,
        hint_subject=hint_subject,
    )
    return client, request


def _needs_login(
    ctx: ServiceContext, request: AuthorizationRequest, browser: BrowserSessionFound | None
) -> bool:
    if browser is None:
        return True
    session = browser.session
    if request.login_session == session.id:
        return False  # this browser just logged in for this request
    if "login" in request.prompt:
        return True
    if request.hint_subject is not None and request.hint_subject != session.user_id:
        return True
    if request.max_age is not None:
        age = (ctx.clock() - session.auth_time).total_seconds()
        return age > request.max_age
    return False


def _needs_consent(
    client: Client, request: AuthorizationRequest, browser: BrowserSessionFound
) -> bool:
    if request.consent_session == browser.session.id:
        return False  # asked for this very request
    if "consent" in request.prompt:
        return True
    if client.first_party:
        return False
    remembered = set((browser.consented_scopes or "").split())
    return not set(request.scopes) <= remembered


async def _park(ctx: ServiceContext, request: AuthorizationRequest, request_id: str | None) -> str:
    """Store (or update) the pending request; its id."""
    if request_id is not None:
        await ctx.db.authorizations.update_request(request_id, request.to_json())
        return request_id
    now = ctx.clock()
    request_id = new_token_id()
    row = PendingRequestRow(
        id=request_id,
        client_id=request.client_id,
        parameters=request.to_json(),
        created_at=now,
        expires_at=now + PENDING_LIFETIME,
    )
    await ctx.db.authorizations.save_request(row)
    return request_id


async def decide(
    ctx: ServiceContext,
    client: Client,
    request: AuthorizationRequest,
    browser: BrowserSessionFound | None,
    *,
    request_id: str | None = None,
) -> Outcome:
    """Log in, consent, or the code: what this request needs next from this browser."""
    if _needs_login(ctx, request, browser):
        if "none" in request.prompt:
            raise failure(ctx, request, "login_required", "the user must sign in")
        return NeedsLogin(await _park(ctx, request, request_id))
    assert browser is not None
    if request.client_id == ACCOUNT_CLIENT_ID:
        if request_id is not None:
            await ctx.db.authorizations.drop_request(request_id)
        return RedirectTo(request.redirect_uri)  # the account page: signed in, no code
    if _needs_consent(client, request, browser):
        if "none" in request.prompt:
            raise failure(ctx, request, "consent_required", "the user must allow this client")
        return NeedsConsent(await _park(ctx, request, request_id))
    code = await _issue_code(ctx, request, browser)
    if request_id is not None:
        await ctx.db.authorizations.drop_request(request_id)
    location = _with_query(
        request.redirect_uri, {"code": code, "state": request.state, "iss": ctx.tokens.issuer}
    )
    ctx.audit.record("authorize", user_id=browser.session.user_id, client_id=client.client_id)
    return RedirectTo(location)


async def _issue_code(
    ctx: ServiceContext, request: AuthorizationRequest, browser: BrowserSessionFound
) -> str:
    """A 256-bit code bound to everything its exchange must match; stored hashed."""
    now = ctx.clock()
    session = browser.session
    held = set(browser.user_scopes.split())
    scopes = [s for s in request.scopes if s in IDENTITY_SCOPES or s in held]
    code = secrets.token_urlsafe(32)
    email = browser.email if EMAIL_SCOPE in scopes else None
    row = AuthorizationCodeRow(
        code_hash=hash_code(code),
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        scope=" ".join(sorted(scopes)),
        nonce=request.nonce,
        code_challenge=request.code_challenge,
        user_id=session.user_id,
        credential_version=browser.user_credential_version,
        user_scopes=browser.user_scopes,
        browser_session_id=session.id,
        session_id=new_token_id(),  # the session its exchange opens (revoked on replay)
        auth_time=session.auth_time,
        amr=session.amr,
        acr=session.acr,
        created_at=now,
        expires_at=now + CODE_LIFETIME,
        email=email,
        email_verified=email is not None and browser.email_verified,
    )
    await ctx.db.authorizations.add_code(row)
    return code


async def load_pending(ctx: ServiceContext, request_id: str | None) -> Pending:
    """A pending request and its client; the expired-page error if gone or too old."""
    if not request_id or len(request_id) > 64:
        raise AuthorizationRequestExpired
    row = await ctx.db.authorizations.pending_request(request_id)
    if row is None or ctx.clock() >= row.expires_at:
        raise AuthorizationRequestExpired
    request = AuthorizationRequest.from_json(row.parameters)
    if request.client_id == ACCOUNT_CLIENT_ID:
        return Pending(request_id, request, account_client(ctx))
    client = await find_client(ctx, request.client_id)
    if client is None or not redirect_uri_allowed(client.redirect_uris, request.redirect_uri):
        raise UntrustedAuthorizationRequest("the client or its redirect URI is gone")
    return Pending(request_id, request, client)


async def record_login(ctx: ServiceContext, pending: Pending, browser_session_id: str) -> None:
    """Note that this browser session logged in for the pending request."""
    done = replace(
        pending.request,
        login_session=browser_session_id,
        mfa_user=None,
        mfa_credential_version=None,
        mfa_since=None,
        mfa_binding=None,
    )
    await ctx.db.authorizations.update_request(pending.request_id, done.to_json())


async def record_consent(
    ctx: ServiceContext, pending: Pending, browser: BrowserSessionFound
) -> None:
    """The user allowed the client: remember it (per user, client and scopes) and note it
    on the pending request, so prompt=consent does not ask twice."""
    scopes = set((browser.consented_scopes or "").split()) | set(pending.request.scopes)
    await ctx.db.authorizations.remember_consent(
        user_id=browser.session.user_id,
        client_id=pending.client.client_id,
        scopes=" ".join(sorted(scopes)),
        now=ctx.clock(),
    )
    done = replace(pending.request, consent_session=browser.session.id)
    await ctx.db.authorizations.update_request(pending.request_id, done.to_json())


async def deny(ctx: ServiceContext, pending: Pending) -> AuthorizationFailed:
    """The user refused: forget the request; access_denied for the client."""
    await ctx.db.authorizations.drop_request(pending.request_id)
    ctx.audit.record("consent", outcome="denied", client_id=pending.client.client_id)
    return failure(ctx, pending.request, "access_denied", "the user denied the request")
