"""The one place where domain errors become HTTP responses (RFC 6749 §5.2, RFC 6750 §3).

Only domain errors are mapped: the database layer raises DatabaseUnavailable for a lost
or refused database itself (db/unavailable.py), so no driver error is known here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from auth_service.errors import (
    AuthorizationFailed,
    AuthServiceError,
    DatabaseUnavailable,
    EmailTaken,
    HashingBusy,
    InsufficientScope,
    InvalidClient,
    InvalidEmail,
    InvalidLink,
    InvalidOtp,
    InvalidToken,
    InvalidUsername,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    MfaNotPending,
    MfaRequired,
    MissingToken,
    OAuthError,
    PageFailure,
    PasswordRejected,
    RejectedWithReasons,
    ServiceUnavailable,
    SessionNotFound,
    StoreUnavailable,
    TooManyAttempts,
    UserDeletionRefused,
    UsernameTaken,
    UserNotFound,
    WrongCurrentPassword,
)

__all__ = ["BEARER_REALM", "NO_STORE", "install_error_handlers"]

log = logging.getLogger(__name__)

BEARER_REALM = "auth_service"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")


def _bearer_challenge(error: AuthServiceError | None) -> str:
    challenge = f'Bearer realm="{BEARER_REALM}"'
    if error is None:
        return challenge
    challenge += f', error="{error.code}", error_description="{_quoted(error.description)}"'
    if isinstance(error, InsufficientScope):
        challenge += f', scope="{_quoted(error.required_scope)}"'
    return challenge


def _no_headers(_: AuthServiceError) -> dict[str, str]:
    return {}


def _bearer_headers(exc: AuthServiceError) -> dict[str, str]:
    return {"WWW-Authenticate": _bearer_challenge(exc)}


def _basic_headers(_: AuthServiceError) -> dict[str, str]:
    return {**NO_STORE, "WWW-Authenticate": f'Basic realm="{BEARER_REALM}"'}


def _no_store_headers(_: AuthServiceError) -> dict[str, str]:
    return dict(NO_STORE)


def _throttled_headers(exc: AuthServiceError) -> dict[str, str]:
    assert isinstance(exc, TooManyAttempts)
    return {**NO_STORE, "Retry-After": str(exc.retry_after_seconds)}


def _retry_headers(exc: AuthServiceError) -> dict[str, str]:
    assert isinstance(exc, ServiceUnavailable)
    return {"Retry-After": str(exc.retry_after_seconds)}


@dataclass(frozen=True, slots=True)
class _Answer:
    """How one kind of domain error is answered: its status and its headers."""

    status: int
    headers: Callable[[AuthServiceError], dict[str, str]] = _no_headers


# Resolved along the exception's MRO: the most specific class listed wins, whatever the
# order here (InvalidClient before its base OAuthError; unlisted kinds, AuthServiceError).
_ANSWERS: dict[type[AuthServiceError], _Answer] = {
    AuthServiceError: _Answer(500),
    OAuthError: _Answer(400, _no_store_headers),  # RFC 6749 §5.2
    InvalidClient: _Answer(401, _basic_headers),
    InvalidToken: _Answer(401, _bearer_headers),  # RFC 6750 §3.1
    InsufficientScope: _Answer(403, _bearer_headers),
    UsernameTaken: _Answer(409),
    UserDeletionRefused: _Answer(409),
    EmailTaken: _Answer(409),
    InvalidLink: _Answer(400, _no_store_headers),
    InvalidEmail: _Answer(422),
    MfaAlreadyEnabled: _Answer(409),
    MfaNotPending: _Answer(409),
    MfaNotEnabled: _Answer(404),
    InvalidOtp: _Answer(400),
    SessionNotFound: _Answer(404),
    UserNotFound: _Answer(404),
    WrongCurrentPassword: _Answer(400),
    InvalidUsername: _Answer(422),
    PasswordRejected: _Answer(422),
    TooManyAttempts: _Answer(429, _throttled_headers),
    ServiceUnavailable: _Answer(503, _retry_headers),
}


def _answer(kind: type[AuthServiceError]) -> _Answer:
    return next(_ANSWERS[cls] for cls in kind.__mro__ if cls in _ANSWERS)


def error_response(exc: AuthServiceError) -> JSONResponse:
    """Status, body and headers for a domain error."""
    if isinstance(exc, MissingToken):  # RFC 6750 §3.1: no error code without credentials
        return JSONResponse(
            {"error_description": exc.description},
            status_code=401,
            headers={"WWW-Authenticate": _bearer_challenge(None)},
        )
    answer = _answer(type(exc))
    body: dict[str, object] = {"error": exc.code, "error_description": exc.description}
    if isinstance(exc, MfaRequired):
        body["mfa_token"] = exc.mfa_token
    elif isinstance(exc, RejectedWithReasons):
        body["reasons"] = exc.reasons
    return JSONResponse(body, status_code=answer.status, headers=answer.headers(exc))


def _count_hash_rejection(request: Request, _: AuthServiceError) -> None:
    services = getattr(request.app.state, "services", None)
    if services is not None:
        services.audit.hash_rejections.inc()


def _count_redis_error(request: Request, _: AuthServiceError) -> None:
    _count_dependency_error(request, "redis")


def _count_database_error(request: Request, exc: AuthServiceError) -> None:
    cause = exc.__cause__
    log.warning("database unavailable: %s", type(cause).__name__ if cause else "connection lost")
    _count_dependency_error(request, "database")


# What an error is counted as before it is answered (its MRO again: the first listed).
_SIDE_EFFECTS: dict[type[AuthServiceError], Callable[[Request, AuthServiceError], None]] = {
    StoreUnavailable: _count_redis_error,
    DatabaseUnavailable: _count_database_error,
    HashingBusy: _count_hash_rejection,
}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthServiceError)
    for kind in type(exc).__mro__:
        if (count := _SIDE_EFFECTS.get(kind)) is not None:
            count(request, exc)
            break
    return error_response(exc)


def _count_dependency_error(request: Request, dependency: str) -> None:
    services = getattr(request.app.state, "services", None)  # absent before startup
    if services is not None:
        services.audit.dependency_errors.labels(dependency).inc()


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    # Pydantic's errors echo the input (which may be a password): keep location and message.
    assert isinstance(exc, RequestValidationError)
    reasons = [
        ".".join(str(part) for part in error.get("loc", ())) + ": " + str(error.get("msg", ""))
        for error in exc.errors()
    ]
    body = {"error": "invalid_request", "error_description": "the request body is invalid"}
    return JSONResponse({**body, "reasons": reasons}, status_code=422)


def _allowed_methods(request: Request) -> str:
    """Every method of every route on this path (Starlette names the first route's only)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route_methods
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else "invalid_request"
    headers = exc.headers
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers = {**(headers or {}), "Allow": allowed}
    return JSONResponse(
        {"error": code, "error_description": str(exc.detail)},
        status_code=exc.status_code,
        headers=headers,
    )


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        {"error": "server_error", "error_description": "internal error"}, status_code=500
    )


async def _page_error(request: Request, exc: Exception) -> Response:
    # Browser pages answer with the HTML error page and never redirect anywhere.
    assert isinstance(exc, PageFailure)
    pages = getattr(request.app.state, "pages", None)
    if pages is None:  # before startup
        return error_response(exc)
    response: Response = pages.error(
        title=exc.title, message=exc.description, code=exc.code, status_code=exc.status
    )
    return response


async def _authorization_error(request: Request, exc: Exception) -> Response:
    # The client and redirect URI were verified: the error goes back to the client.
    assert isinstance(exc, AuthorizationFailed)
    status = 302 if request.method == "GET" else 303
    return Response(status_code=status, headers={"Location": exc.location, **NO_STORE})


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping on the app."""
    app.add_exception_handler(AuthorizationFailed, _authorization_error)
    app.add_exception_handler(PageFailure, _page_error)
    app.add_exception_handler(AuthServiceError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
