"""The client model OpenID Connect needs: redirect URIs, first-party, PKCE, ID token alg, JWKS.

Revision ID: svcgrant_client_model
Revises: 0007_service_secrets
Create Date: 2026-12-02

Existing clients keep working: they have no redirect URIs (the password and refresh
grants need none), they count as first-party (the password grant they were registered
for is for first-party clients only), public ones must use PKCE (as every new public
client must) and confidential ones need not, ID tokens are RS256, no JWKS.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "svcgrant_client_model"
down_revision: str | None = "0007_service_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULTS: dict[str, tuple[sa.types.TypeEngine[Any], sa.TextClause | sa.ColumnElement[Any]]] = {
    "redirect_uris": (sa.Text(), sa.text("''")),
    "post_logout_redirect_uris": (sa.Text(), sa.text("''")),
    "first_party": (sa.Boolean(), sa.true()),
    "require_pkce": (sa.Boolean(), sa.false()),
    "id_token_alg": (sa.String(8), sa.text("'RS256'")),
}


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        for name, (kind, default) in _DEFAULTS.items():
            batch.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        batch.add_column(sa.Column("jwks", sa.Text(), nullable=True))
    clients = sa.table(
        "oauth_clients", sa.column("confidential", sa.Boolean), sa.column("require_pkce")
    )
    op.execute(clients.update().where(sa.not_(clients.c.confidential)).values(require_pkce=True))
    with op.batch_alter_table("oauth_clients") as batch:
        for name in _DEFAULTS:
            batch.alter_column(name, server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        for name in ("jwks", *reversed(_DEFAULTS)):
            batch.drop_column(name)
