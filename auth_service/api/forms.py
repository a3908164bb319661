"""Strict `application/x-www-form-urlencoded` parsing and client credentials (RFC 6749 §2.3, §3.2).

FastAPI's Form() would answer bad input with its own 422 shape and silently take the last
of repeated parameters; the token endpoint must answer `invalid_request` instead.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, unquote_plus

from fastapi import Request

from auth_service.errors import InvalidClient, InvalidRequest
from auth_service.services.clients import ClientCredentials

__all__ = ["client_credentials", "read_form", "read_parameters"]

_MAX_FIELDS = 16
_FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """Parse the form body; parameters without a value count as omitted (RFC 6749 §3.1)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != _FORM_TYPE:
        raise InvalidRequest(f"the body must be {_FORM_TYPE}")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("the form body is not valid URL-encoded UTF-8") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest("a parameter is repeated")
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest("parameters must not contain NUL characters")
        params[name] = value
    return {name: value for name, value in params.items() if value}


async def read_parameters(request: Request) -> tuple[dict[str, str], frozenset[str]]:
    """The query (GET) or form (POST) parameters of a browser endpoint, and the names that
    were repeated; parameters without a value count as omitted (OIDC Core §3.1.2.1)."""
    if request.method == "GET":
        pairs = request.query_params.multi_items()
    else:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != _FORM_TYPE:
            raise InvalidRequest(f"the body must be {_FORM_TYPE}")
        try:
            pairs = parse_qsl(
                (await request.body()).decode("ascii"),
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=64,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest("the form body is not valid URL-encoded UTF-8") from exc
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest("parameters must not contain NUL characters")
        if name in params:
            repeated.add(name)
        params[name] = value
    return {k: v for k, v in params.items() if v}, frozenset(repeated)


def _basic_credentials(header: str) -> ClientCredentials | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, non-ASCII input
        raise InvalidClient("malformed Basic credentials") from exc
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise InvalidClient("malformed Basic credentials")
    # §2.3.1: both parts are application/x-www-form-urlencoded before Base64 ('+' is a
    # space); strict UTF-8, and no NUL (PostgreSQL refuses it in text: a 500, not a 401).
    try:
        client_id = unquote_plus(client_id, errors="strict")
        secret = unquote_plus(secret, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidClient("malformed Basic credentials") from exc
    if "\x00" in client_id or "\x00" in secret:
        raise InvalidClient("malformed Basic credentials")
    if not client_id and not secret:
        return None  # Swagger UI's "Basic Og==": no client authentication at all
    return ClientCredentials(client_id=client_id, client_secret=secret or None)


def client_credentials(request: Request, params: dict[str, str]) -> ClientCredentials | None:
    """Client identification from the Authorization header or the body, never both."""
    from_header = _basic_credentials(request.headers.get("authorization", ""))
    client_id = params.get("client_id")
    secret = params.get("client_secret")
    if from_header is not None and (client_id or secret):
        raise InvalidRequest("use one client authentication method, not two")
    if from_header is not None:
        return from_header
    if client_id is None and secret is None:
        return None
    if client_id is None:
        raise InvalidRequest("client_secret needs a client_id")
    return ClientCredentials(client_id=client_id, client_secret=secret)
