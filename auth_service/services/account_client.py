"""The account page as a client of the login page: its pending requests go through the
same login (and second factor) steps and then return to /account, never issue a code."""

from __future__ import annotations

from auth_service.services.clients import Client
from auth_service.services.context import ServiceContext

__all__ = ["ACCOUNT_CLIENT_ID", "ACCOUNT_PATH", "account_client"]

# The pending requests of this id never look a registered client up (load_pending).
ACCOUNT_CLIENT_ID = "auth-service:account"
ACCOUNT_PATH = "/account"


def account_client(ctx: ServiceContext) -> Client:
    """The account page as the login page's client: first party, its one return URI."""
    return Client(
        client_id=ACCOUNT_CLIENT_ID,
        confidential=False,
        grant_types=frozenset(),
        scopes=frozenset(),
        authenticated=False,
        redirect_uris=(ctx.tokens.issuer + ACCOUNT_PATH,),
        first_party=True,
    )
