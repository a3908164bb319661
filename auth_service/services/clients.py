"""Which OAuth client is calling (RFC 6749 §2.3), and registering clients.

No client identification at all (or Swagger UI's empty `Basic Og==`) means the default
public client, unless the deployment switched it off. A registered public client may name
itself without a secret; a confidential one must present its secret, by Basic or in the
form, never both.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from auth_service.errors import (
    ClientExists,
    InvalidClient,
    InvalidClientMetadata,
    InvalidRequest,
    InvalidScope,
)
from auth_service.repositories import ClientRow
from auth_service.security.client_keys import ClientKeyError, jwks_from_json
from auth_service.security.client_secrets import (
    hash_client_secret,
    new_client_secret,
    verify_client_secret,
)
from auth_service.services.client_assertions import verify_client_assertion
from auth_service.services.context import ServiceContext
from auth_service.services.redirect_uris import check_redirect_uri
from auth_service.services.scopes import SUPPORTED_SCOPES

__all__ = [
    "CLIENT_GRANT_TYPES",
    "Client",
    "ClientCredentials",
    "NewClient",
    "authenticate_client",
    "find_client",
    "is_uuid",
    "list_clients",
    "new_token_epoch",
    "register_client",
]

# The grants a client may be registered for, in the order discovery and errors list them
# (POST /token also takes the second-factor grants that finish a password login).
CLIENT_GRANT_TYPES = ("authorization_code", "password", "refresh_token", "client_credentials")
ALL_GRANT_TYPES = frozenset(CLIENT_GRANT_TYPES)
# What the default public client (Swagger UI, first-party apps naming no client) may do.
DEFAULT_CLIENT_GRANTS = frozenset({"password", "refresh_token"})
ID_TOKEN_ALGORITHMS = frozenset({"RS256", "ES256"})


@dataclass(frozen=True)
class ClientCredentials:
    """A client_id and optional secret taken from HTTP Basic or the form body."""

    client_id: str
    client_secret: str | None
    # A private_key_jwt client's signed assertion (RFC 7523 §2.2) instead of a secret.
    assertion: str | None = None


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
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    first_party: bool = False
    require_pkce: bool = True
    id_token_alg: str = "RS256"  # noqa: S105 - an algorithm name, not a secret
    # A private_key_jwt client's registered public keys (a JWKS, as JSON).
    jwks: str | None = None
    # The `sid` of its client_credentials tokens (never shown: it names no secret, but
    # nothing outside needs it).
    token_epoch: str = ""
    disabled: bool = False

    @property
    def auth_method(self) -> str:
        """How it authenticates at the token endpoint (RFC 7591 token_endpoint_auth_method)."""
        if self.jwks is not None:
            return "private_key_jwt"
        return "client_secret_basic" if self.confidential else "none"


@dataclass(frozen=True)
class NewClient:
    """A registered client and, for a confidential one, its secret (shown only once)."""

    client: Client
    secret: str | None


def _default_client(ctx: ServiceContext) -> Client:
    return Client(
        client_id=ctx.default_client_id,
        confidential=False,
        grant_types=DEFAULT_CLIENT_GRANTS,
        scopes=frozenset(SUPPORTED_SCOPES),
        authenticated=False,
        first_party=True,
    )


def _view(row: ClientRow, *, authenticated: bool) -> Client:
    return Client(
        client_id=row.client_id,
        confidential=row.confidential,
        grant_types=frozenset(row.grant_types.split()),
        scopes=frozenset(row.scopes.split()),
        authenticated=authenticated,
        introspection=row.introspection,
        redirect_uris=tuple(row.redirect_uris.split()),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris.split()),
        first_party=row.first_party,
        require_pkce=row.require_pkce,
        id_token_alg=row.id_token_alg,
        jwks=row.jwks,
        token_epoch=row.token_epoch,
        disabled=row.disabled_at is not None,
    )


def is_uuid(text: str) -> bool:
    """True for anything uuid.UUID parses (any case, braces, urn:uuid:, no dashes)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def new_token_epoch() -> str:
    """A fresh `sid` for a client's client_credentials tokens (128 random bits)."""
    return secrets.token_urlsafe(16)


async def authenticate_client(ctx: ServiceContext, credentials: ClientCredentials | None) -> Client:
    """Resolve and, where a secret is due, verify the calling client; else InvalidClient."""
    if credentials is not None and credentials.assertion is not None:
        claimed = credentials.client_id or None
        signer = await verify_client_assertion(ctx, credentials.assertion, claimed)
        return _view(signer, authenticated=True)
    if credentials is None or (
        credentials.client_id == ctx.default_client_id and not credentials.client_secret
    ):
        if ctx.default_client_enabled:
            return _default_client(ctx)
        raise InvalidClient("client authentication is required")
    row = await ctx.db.clients.get(credentials.client_id)
    secret = credentials.client_secret
    if row is None or row.disabled_at is not None:
        if secret:
            verify_client_secret(secret, None)  # same work as a wrong secret
        raise InvalidClient("unknown client or bad client credentials")
    if row.jwks is not None:
        # A private_key_jwt client has no secret; it authenticates by signed assertion.
        raise InvalidClient("this client must authenticate with a signed client assertion")
    if secret is None:
        if row.confidential:
            raise InvalidClient("this client must authenticate with its secret")
        return _view(row, authenticated=False)
    if not row.confidential or not verify_client_secret(secret, row.secret_hash):
        raise InvalidClient("unknown client or bad client credentials")
    return _view(row, authenticated=True)


def _uris(uris: Iterable[str]) -> str:
    checked = [check_redirect_uri(uri) for uri in uris]
    return " ".join(dict.fromkeys(checked))  # registered once each, in the order given


def _check_client_id(ctx: ServiceContext, client_id: str) -> None:
    if client_id == ctx.default_client_id:
        # Requests naming this id without a secret act as the default public client, so
        # a stored client of that id would be reachable without its secret.
        raise ClientExists(
            f"the id {client_id!r} is reserved for the default public client "
            "(AUTH_DEFAULT_CLIENT_ID)"
        )
    if not client_id or len(client_id) > 128 or not client_id.isprintable():
        raise InvalidClientMetadata("a client id is 1-128 printable characters")
    if is_uuid(client_id):
        # User ids are UUIDs: a client_credentials token's sub is the client id, which must
        # never name a user.
        raise InvalidClientMetadata("a client id must not look like a UUID (user ids are UUIDs)")


async def register_client(
    ctx: ServiceContext,
    client_id: str,
    *,
    confidential: bool,
    grant_types: frozenset[str],
    scopes: frozenset[str],
    introspection: bool = False,
    redirect_uris: Iterable[str] = (),
    post_logout_redirect_uris: Iterable[str] = (),
    first_party: bool = False,
    require_pkce: bool = False,
    id_token_alg: str = "RS256",  # noqa: S107 - an algorithm name, not a secret
    jwks: str | None = None,
) -> NewClient:
    """Store a client after checking its settings fit together.

    A confidential client gets a generated secret, returned once, unless it registers
    public keys (`jwks`, private_key_jwt), which make it confidential without a secret.
    A public client always requires PKCE; authorization_code needs a redirect URI; only a
    first-party client may use the password grant.
    """
    _check_client_id(ctx, client_id)
    unknown = scopes - SUPPORTED_SCOPES.keys()
    if unknown:
        raise InvalidScope(f"unknown scopes: {' '.join(sorted(unknown))}")
    unknown_grants = grant_types - ALL_GRANT_TYPES
    if unknown_grants:
        raise InvalidClientMetadata(f"unknown grant types: {' '.join(sorted(unknown_grants))}")
    if id_token_alg not in ID_TOKEN_ALGORITHMS:
        raise InvalidClientMetadata("the ID token algorithm must be RS256 or ES256")
    stored_jwks = None
    if jwks is not None:
        try:
            stored_jwks = jwks_from_json(jwks)
        except ClientKeyError as exc:
            raise InvalidClientMetadata(str(exc)) from exc
        confidential = True
    if introspection and not confidential:
        raise InvalidRequest("only a confidential client may introspect tokens")
    if "client_credentials" in grant_types and not confidential:
        raise InvalidClientMetadata("client_credentials is for confidential clients only")
    if "password" in grant_types and not first_party:
        # RFC 9700 §2.4: the client sees the password, so only the service's own may ask.
        raise InvalidClientMetadata("the password grant is for first-party clients only")
    redirects = _uris(redirect_uris)
    if "authorization_code" in grant_types and not redirects:
        raise InvalidClientMetadata("authorization_code needs at least one redirect URI")
    secret = new_client_secret() if confidential and stored_jwks is None else None
    row = ClientRow(
        client_id=client_id,
        secret_hash=hash_client_secret(secret) if secret else None,
        confidential=confidential,
        grant_types=" ".join(sorted(grant_types)),
        scopes=" ".join(sorted(scopes)),
        created_at=ctx.clock(),
        introspection=introspection,
        redirect_uris=redirects,
        post_logout_redirect_uris=_uris(post_logout_redirect_uris),
        first_party=first_party,
        require_pkce=require_pkce or not confidential,  # RFC 9700 §2.1.1: public clients
        id_token_alg=id_token_alg,
        jwks=stored_jwks,
        token_epoch=new_token_epoch(),
    )
    await ctx.db.clients.add(row)
    return NewClient(_view(row, authenticated=False), secret)


async def list_clients(ctx: ServiceContext, *, include_default: bool = False) -> list[Client]:
    """Every registered client; first the default public client (not stored) if asked
    for and enabled."""
    rows = await ctx.db.clients.all()
    default = [_default_client(ctx)] if include_default and ctx.default_client_enabled else []
    return default + [_view(row, authenticated=False) for row in rows]


async def find_client(ctx: ServiceContext, client_id: str) -> Client | None:
    """A registered client by id, unauthenticated (the authorization endpoint only names
    it); None when there is none. The default public client has no redirect URIs."""
    if client_id == ctx.default_client_id:
        return _default_client(ctx) if ctx.default_client_enabled else None
    row = await ctx.db.clients.get(client_id)
    return _view(row, authenticated=False) if row is not None else None
