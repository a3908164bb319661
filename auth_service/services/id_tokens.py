"""ID tokens (OpenID Connect Core §2, §3.1.3.6, §12.2) for sessions of the code flow.

The claims restate the authentication of the browser session the session came from:
`auth_time`, `amr` and `acr` as they were at the login (a refresh never moves them), `sid`
= the browser session. A refreshed ID token carries no nonce (§12.2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from auth_service.repositories import SessionRow
from auth_service.services.context import ServiceContext
from auth_service.services.scopes import OPENID_SCOPE

__all__ = ["id_token_for"]

log = logging.getLogger(__name__)


def id_token_for(
    ctx: ServiceContext,
    record: SessionRow,
    *,
    scopes: frozenset[str],
    algorithm: str | None,
    access_token: str,
    nonce: str | None = None,
    claims: Mapping[str, object] | None = None,
) -> str | None:
    """The ID token to return with `access_token`, or None when the session is not an
    OpenID Connect one (no browser login behind it, or no `openid` scope)."""
    if (
        algorithm is None
        or OPENID_SCOPE not in scopes
        or record.auth_time is None
        or record.browser_session_id is None
    ):
        return None
    available = ctx.tokens.id_token_algorithms
    if algorithm not in available:
        log.warning("no %s key for ID tokens: signing with %s", algorithm, available[0])
        algorithm = available[0]
    return ctx.tokens.mint_id_token(
        subject=record.user_id,
        client_id=record.client_id,
        algorithm=algorithm,
        auth_time=record.auth_time,
        session_id=record.browser_session_id,
        amr=(record.amr or "").split(),
        acr=record.acr,
        nonce=nonce,
        access_token=access_token,
        extra_claims=claims,
    )
