"""The one place where domain errors become HTTP responses (RFC 6749 §5.2, RFC 6750 §3)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from auth_service.db.unavailable import is_connection_loss
from auth_service.errors import (
    AuthorizationFailed,
    AuthServiceError,
    DatabaseUnavailable,
    HashingBusy,
    InsufficientScope,
    InvalidClient,
    InvalidToken,
    InvalidUsername,
    MissingToken,
    OAuthError,
    PageFailure,
    PasswordRejected,
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


def error_response(exc: AuthServiceError) -> JSONResponse:
    """Status, body and headers for a domain error."""
    body: dict[str, object] = {"error": exc.code, "error_description": exc.description}
    headers: dict[str, str] = {}
    if isinstance(exc, MissingToken):
        return JSONResponse(
            {"error_description": exc.description},
            status_code=401,
            headers={"WWW-Authenticate": _bearer_challenge(None)},
        )
    if isinstance(exc, InvalidToken | InsufficientScope):
        status = 403 if isinstance(exc, InsufficientScope) else 401
        headers["WWW-Authenticate"] = _bearer_challenge(exc)
    elif isinstance(exc, InvalidClient):
        status = 401
        headers = {**NO_STORE, "WWW-Authenticate": f'Basic realm="{BEARER_REALM}"'}
    elif isinstance(exc, OAuthError):
        status = 400
        headers = dict(NO_STORE)
    elif isinstance(exc, UsernameTaken | UserDeletionRefused):
        status = 409
    elif isinstance(exc, SessionNotFound | UserNotFound):
        status = 404
    elif isinstance(exc, WrongCurrentPassword):
        status = 400
    elif isinstance(exc, InvalidUsername | PasswordRejected):
        status = 422
        body["reasons"] = exc.reasons
    elif isinstance(exc, TooManyAttempts):
        status = 429
        headers = {**NO_STORE, "Retry-After": str(exc.retry_after_seconds)}
    elif isinstance(exc, ServiceUnavailable):
        status = 503
        headers["Retry-After"] = str(exc.retry_after_seconds)
    else:
        status = 500
    return JSONResponse(body, status_code=status, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthServiceError)
    if isinstance(exc, StoreUnavailable):
        _count_dependency_error(request, "redis")
    elif isinstance(exc, DatabaseUnavailable):
        log.warning("database unavailable: connection lost")
        _count_dependency_error(request, "database")
    elif isinstance(exc, HashingBusy):
        services = getattr(request.app.state, "services", None)
        if services is not None:
            services.audit.hash_rejections.inc()
    return error_response(exc)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # Connection refused, failover, pool timeout: the database is unavailable, not broken.
    log.warning("database unavailable: %s", type(exc).__name__)
    _count_dependency_error(request, "database")
    return error_response(ServiceUnavailable("the database is unavailable, retry shortly"))


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


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if is_connection_loss(exc):
        # A path that met a database refusal untranslated: still 503, never 500.
        return await _database_error(request, exc)
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
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(InterfaceError, _database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, _database_error)
    # asyncpg raises a refused or timed-out connection as a bare OSError, unwrapped by
    # SQLAlchemy; Redis failures are already StoreUnavailable, so the database is left.
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
