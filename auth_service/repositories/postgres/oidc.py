"""Browser sessions, authorization requests, codes and consents on PostgreSQL: the shared
statements (sql_oidc.py) and this backend's consent upsert."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.repositories.sql_oidc import CONSENTS, SqlAuthorizations, SqlBrowserSessions

__all__ = ["PgAuthorizations", "PgBrowserSessions"]

_UPSERT_CONSENT = Statement(
    postgresql.insert(CONSENTS)
    .values(
        user_id=bindparam("user_id"),
        client_id=bindparam("client_id"),
        scopes=bindparam("scopes"),
        granted_at=bindparam("now"),
    )
    .on_conflict_do_update(
        index_elements=[CONSENTS.c.user_id, CONSENTS.c.client_id],
        set_={"scopes": bindparam("scopes"), "granted_at": bindparam("now")},
    )
)


class PgBrowserSessions(SqlBrowserSessions):
    """BrowserSessionRepository on PostgreSQL."""

    __slots__ = ()


class PgAuthorizations(SqlAuthorizations):
    """AuthorizationRepository on PostgreSQL."""

    __slots__ = ()

    def __init__(self, db: Runner) -> None:
        super().__init__(db, _UPSERT_CONSENT)
