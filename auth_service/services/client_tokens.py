"""grant_type=client_credentials (RFC 6749 §4.4): a confidential client's own token.

`sub` and `client_id` are the client id (RFC 9068 §2.2), which can never name a user:
user ids are UUIDs and client ids may not look like one. `sid` is the client's token
epoch, so disabling the client or changing its credentials revokes every such token
through the session denylist. No refresh token (§4.4.3), no user, no SQL write.
"""

from __future__ import annotations

from auth_service.errors import InvalidClient, InvalidScope, UnauthorizedClient
from auth_service.services.clients import Client, is_uuid
from auth_service.services.context import ServiceContext
from auth_service.services.sessions import TokenGrant

__all__ = ["client_credentials_grant"]


def client_credentials_grant(
    ctx: ServiceContext, client: Client, requested: frozenset[str] | None
) -> TokenGrant:
    """An access token for the client itself, with the requested scopes (default: all
    of the client's scopes), each of which the client must hold."""
    if not (client.confidential and client.authenticated):
        raise InvalidClient("client_credentials needs an authenticated confidential client")
    if is_uuid(client.client_id) or not client.token_epoch:
        # Registered before ids were checked: its sub could name a user. Never issue.
        raise UnauthorizedClient("this client's id cannot be a token subject")
    scopes = client.scopes if requested is None else requested
    if not scopes <= client.scopes:
        raise InvalidScope("the requested scope is not granted to this client")
    issued = ctx.tokens.mint_access_token(
        subject=client.client_id,
        scopes=scopes,
        session_id=client.token_epoch,
        client_id=client.client_id,
    )
    ctx.audit.record("client_token", client_id=client.client_id)
    return TokenGrant(
        access_token=issued.token,
        expires_in=issued.expires_in,
        scope=" ".join(sorted(scopes)),
        refresh_token=None,
    )
