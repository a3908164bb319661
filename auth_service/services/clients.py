"""Which OAuth client is calling (RFC 6749 §2.3), and registering clients.

No client identification at all (or Swagger UI's empty `Basic Og==`) means the default
public client, unless the deployment switched it off. A registered public client may name
itself without a secret; a confidential one must present its secret, by Basic or in the
form, never both.
"""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.errors import ClientExists, InvalidClient, InvalidRequest, InvalidScope
from auth_service.repositories import ClientRow
from auth_service.security.client_secrets import (
    hash_client_secret,
    new_client_secret,
    verify_client_secret,
)
from auth_service.services.context import ServiceContext
from auth_service.services.scopes import SUPPORTED_SCOPES

__all__ = [
    "SUPPORTED_GRANT_TYPES",
    "Client",
    "ClientCredentials",
    "NewClient",
    "authenticate_client",
    "list_clients",
    "register_client",
    "remove_client",
]

# The grants this service implements, in the order discovery and errors list them; a
# client is registered for some of them.
SUPPORTED_GRANT_TYPES = ("password", "refresh_token")
_ALL_GRANT_TYPES = frozenset(SUPPORTED_GRANT_TYPES)


@dataclass(frozen=True)
class ClientCredentials:
    """A client_id and optional secret taken from HTTP Basic or the form body."""

    client_id: str
    client_secret: str | None


@dataclass(frozen=True)
class Client:
    """The calling client; `authenticated` is true only when its secret was verified, and
    `introspection` when it may call /introspect."""

    client_id: str
    confidential: bool
    grant_types: frozenset[str]
    scopes: frozenset[str]
    authenticated: bool
    introspection: bool = False


@dataclass(frozen=True)
class NewClient:
    """A registered client and, for a confidential one, its secret (shown only once)."""

    client: Client
    secret: str | None


def _default_client(ctx: ServiceContext) -> Client:
    return Client(
        client_id=ctx.default_client_id,
        confidential=False,
        grant_types=_ALL_GRANT_TYPES,
        scopes=frozenset(SUPPORTED_SCOPES),
        authenticated=False,
    )


def _view(row: ClientRow, *, authenticated: bool) -> Client:
    return Client(
        client_id=row.client_id,
        confidential=row.confidential,
        grant_types=frozenset(row.grant_types.split()),
        scopes=frozenset(row.scopes.split()),
        authenticated=authenticated,
        introspection=row.introspection,
    )


async def authenticate_client(ctx: ServiceContext, credentials: ClientCredentials | None) -> Client:
    """Resolve and, where a secret is due, verify the calling client; else InvalidClient."""
    if credentials is None or (
        credentials.client_id == ctx.default_client_id and not credentials.client_secret
    ):
        if ctx.default_client_enabled:
            return _default_client(ctx)
        raise InvalidClient("client authentication is required")
    row = await ctx.db.clients.get(credentials.client_id)
    secret = credentials.client_secret
    if row is None:
        if secret:
            verify_client_secret(secret, None)  # same work as a wrong secret
        raise InvalidClient("unknown client or bad client credentials")
    if secret is None:
        if row.confidential:
            raise InvalidClient("this client must authenticate with its secret")
        return _view(row, authenticated=False)
    if not row.confidential or not verify_client_secret(secret, row.secret_hash):
        raise InvalidClient("unknown client or bad client credentials")
    return _view(row, authenticated=True)


async def register_client(
    ctx: ServiceContext,
    client_id: str,
    *,
    confidential: bool,
    grant_types: frozenset[str],
    scopes: frozenset[str],
    introspection: bool = False,
) -> NewClient:
    """Store a client; a confidential one gets a generated secret, returned once, and may
    be allowed to introspect tokens."""
    if client_id == ctx.default_client_id:
        # Requests naming this id without a secret act as the default public client, so
        # a stored client of that id would be reachable without its secret.
        raise ClientExists(
            f"the id {client_id!r} is reserved for the default public client "
            "(AUTH_DEFAULT_CLIENT_ID)"
        )
    unknown = scopes - SUPPORTED_SCOPES.keys()
    if unknown:
        raise InvalidScope(f"unknown scopes: {' '.join(sorted(unknown))}")
    if introspection and not confidential:
        raise InvalidRequest("only a confidential client may introspect tokens")
    secret = new_client_secret() if confidential else None
    row = ClientRow(
        client_id=client_id,
        secret_hash=hash_client_secret(secret) if secret else None,
        confidential=confidential,
        grant_types=" ".join(sorted(grant_types & _ALL_GRANT_TYPES)),
        scopes=" ".join(sorted(scopes)),
        created_at=ctx.clock(),
        introspection=introspection,
    )
    await ctx.db.clients.add(row)
    return NewClient(_view(row, authenticated=False), secret)


async def list_clients(ctx: ServiceContext, *, include_default: bool = False) -> list[Client]:
    """Every registered client; first the default public client (not stored) if asked
    for and enabled."""
    rows = await ctx.db.clients.all()
    default = [_default_client(ctx)] if include_default and ctx.default_client_enabled else []
    return default + [_view(row, authenticated=False) for row in rows]


async def remove_client(ctx: ServiceContext, client_id: str) -> bool:
    """Delete a client; its sessions can no longer be refreshed (client mismatch)."""
    return await ctx.db.clients.remove(client_id)
