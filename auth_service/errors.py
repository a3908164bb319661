"""Domain exceptions, one class per failure kind, each with a stable machine-readable code.

Nothing here knows HTTP: `auth_service.api.errors` is the one place that maps these to
RFC 6749 / RFC 6750 responses. Descriptions are safe to show to clients; they never
contain secrets, and credential failures never say whether a username exists.
"""

from __future__ import annotations

__all__ = [
    "AuthServiceError",
    "AuthorizationFailed",
    "AuthorizationRequestExpired",
    "ClientExists",
    "CsrfRejected",
    "DatabaseUnavailable",
    "HashingBusy",
    "InsufficientScope",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidGrant",
    "InvalidRedirectUri",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "InvalidUsername",
    "MissingToken",
    "OAuthError",
    "PageFailure",
    "PasswordRejected",
    "SchemaBehind",
    "ServiceUnavailable",
    "SessionNotFound",
    "StoreUnavailable",
    "TooManyAttempts",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UntrustedAuthorizationRequest",
    "UserDeletionRefused",
    "UserNotFound",
    "UsernameTaken",
    "WrongCurrentPassword",
]


class AuthServiceError(Exception):
    """Base of every expected failure; `code` is stable, `description` is client-safe."""

    code = "server_error"
    default_description = "the request failed"

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)


# --- RFC 6749 §5.2 token endpoint errors ---------------------------------------------


class OAuthError(AuthServiceError):
    """A token endpoint failure with an RFC 6749 §5.2 error code."""


class InvalidRequest(OAuthError):
    code = "invalid_request"
    default_description = "the request is missing a parameter or is malformed"


class InvalidClient(OAuthError):
    code = "invalid_client"
    default_description = "client authentication failed"


class InvalidGrant(OAuthError):
    code = "invalid_grant"
    default_description = "invalid username or password"


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    default_description = "the grant type is not supported"


class UnauthorizedClient(OAuthError):
    code = "unauthorized_client"
    default_description = "this client may not use this grant type"


class InvalidScope(OAuthError):
    code = "invalid_scope"
    default_description = "the requested scope is invalid or not allowed"


# --- RFC 6750 protected resource errors ----------------------------------------------


class MissingToken(AuthServiceError):
    """No bearer credentials at all: 401 without an error code (RFC 6750 §3.1)."""

    code = "missing_token"
    default_description = "authentication required"


class InvalidToken(AuthServiceError):
    code = "invalid_token"
    default_description = "the access token is invalid"


class InsufficientScope(AuthServiceError):
    code = "insufficient_scope"
    default_description = "the access token lacks the required scope"

    def __init__(self, required_scope: str) -> None:
        self.required_scope = required_scope
        super().__init__(f"this resource needs the scope '{required_scope}'")


# --- account and session management -------------------------------------------------


class SessionNotFound(AuthServiceError):
    """No such session among the caller's own (someone else's looks the same)."""

    code = "not_found"
    default_description = "no such session"


class WrongCurrentPassword(AuthServiceError):
    code = "invalid_current_password"
    default_description = "the current password is not correct"


class UserNotFound(AuthServiceError):
    """Only for administrators: ordinary callers never learn whether a user exists."""

    code = "not_found"
    default_description = "no such user"


class UserDeletionRefused(AuthServiceError):
    """Only for administrators: the user is active, or its tokens may still be live."""

    code = "conflict"
    default_description = "the user cannot be deleted yet"


class ClientExists(AuthServiceError):
    code = "client_exists"
    default_description = "a client with that id is already registered"


# --- browser pages (answered with an HTML error page, never a redirect) --------------


class PageFailure(AuthServiceError):
    """A failure of a browser-facing page: shown to the person, never sent to a client."""

    title = "Request refused"
    status = 400


class UntrustedAuthorizationRequest(PageFailure):
    """An authorization request whose client or redirect URI cannot be trusted: redirecting
    there would make this service an open redirector (RFC 6749 §4.1.2.1)."""

    code = "invalid_request"
    default_description = "the client or its redirect URI is not registered"
    title = "Invalid sign-in request"


class CsrfRejected(PageFailure):
    """A form POST without this browser's token for that form (or from another site)."""

    code = "invalid_request"
    default_description = "the form expired or was not sent from this site; go back and retry"
    title = "Form expired"
    status = 403


class AuthorizationRequestExpired(PageFailure):
    """A pending sign-in (login or consent page) that is unknown or older than its lifetime."""

    code = "invalid_request"
    default_description = "this sign-in request has expired; go back to the application and retry"
    title = "Sign-in expired"


class AuthorizationFailed(AuthServiceError):
    """An authorization request refused after its client and redirect URI were verified:
    the error goes back to the client at `location` (RFC 6749 §4.1.2.1, RFC 9207), with
    its code (invalid_request, login_required, access_denied, ...)."""

    def __init__(self, code: str, description: str, *, location: str) -> None:
        self.code = code
        self.location = location
        super().__init__(description)


class InvalidRedirectUri(AuthServiceError):
    """A redirect URI that cannot be registered (RFC 7591 §3.2.2)."""

    code = "invalid_redirect_uri"
    default_description = "the redirect URI cannot be registered"


class InvalidClientMetadata(AuthServiceError):
    """Client settings that contradict each other or the rules (RFC 7591 §3.2.2)."""

    code = "invalid_client_metadata"
    default_description = "the client's settings are not acceptable"


# --- registration --------------------------------------------------------------------


class UsernameTaken(AuthServiceError):
    code = "username_taken"
    default_description = "that username is already registered"


class _RejectedWithReasons(AuthServiceError):
    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class InvalidUsername(_RejectedWithReasons):
    code = "invalid_username"


class PasswordRejected(_RejectedWithReasons):
    code = "invalid_password"


class TooManyAttempts(AuthServiceError):
    """Throttled: the same answer whether or not the username exists."""

    code = "too_many_requests"
    default_description = "too many attempts, retry later"

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        super().__init__()


# --- capacity ------------------------------------------------------------------------


class ServiceUnavailable(AuthServiceError):
    code = "temporarily_unavailable"
    default_description = "the service is temporarily unavailable, retry later"
    retry_after_seconds = 1


class StoreUnavailable(ServiceUnavailable):
    """The revocation store (Redis) did not answer: fail closed rather than trust a token."""

    default_description = "revocation state is unreachable, retry shortly"


class DatabaseUnavailable(ServiceUnavailable):
    """The database connection was lost or refused: retryable, never a 500."""

    default_description = "the database is unavailable, retry shortly"


class HashingBusy(ServiceUnavailable):
    """Every password-hashing slot stayed busy for the whole wait: shed load, keep memory."""

    default_description = "too many password checks in progress, retry shortly"


class SchemaBehind(AuthServiceError):
    """The database lacks migrations this code needs: `serve` refuses to start."""

    code = "schema_behind"
    default_description = "the database schema is behind the code: run `auth-service migrate`"
