"""Which OAuth client is calling: until clients are registered, only the default public one."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.errors import InvalidClient

__all__ = ["ClientCredentials", "resolve_client"]


@dataclass(frozen=True)
class ClientCredentials:
    """A client_id and optional secret taken from HTTP Basic or the form body."""

    client_id: str
    client_secret: str | None


def resolve_client(credentials: ClientCredentials | None, *, default_client_id: str) -> str:
    """Return the client_id the token is for, or raise InvalidClient.

    No credentials (or Swagger UI's empty `Basic Og==`) means the default public client.
    A public client may name itself without a secret; any secret is refused because no
    confidential clients are registered yet.
    """
    if credentials is None:
        return default_client_id
    if credentials.client_id == default_client_id and not credentials.client_secret:
        return default_client_id
    raise InvalidClient("unknown client or bad client credentials")
