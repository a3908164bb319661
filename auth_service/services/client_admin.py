"""Change a client's credentials, disable, enable or remove it: each revokes its live
client_credentials tokens at once.

Those tokens carry the client's token epoch as `sid`. Every change here replaces the epoch
(compare-and-set, so two concurrent changes cannot leave an unrevoked epoch behind),
records the old one in SQL (the durable truth a reseed reads) and denylists it as a
session, before the commit and again after it (services/revocation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from auth_service.errors import InvalidClientMetadata, ServiceUnavailable
from auth_service.repositories import ClientRow
from auth_service.security.client_keys import ClientKeyError, jwks_from_json
from auth_service.security.client_secrets import hash_client_secret, new_client_secret
from auth_service.services.clients import new_token_epoch
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import deny_sessions

__all__ = ["disable_client", "enable_client", "remove_client", "replace_keys", "rotate_secret"]

# Compare-and-set attempts before giving up (each loss means another change won).
_ATTEMPTS = 5


async def _change(
    ctx: ServiceContext, client_id: str, change: Callable[[ClientRow], ClientRow]
) -> ClientRow | None:
    """Apply `change` with a new epoch and revoke the old one; None if there is no client."""
    for _ in range(_ATTEMPTS):
        row = await ctx.db.clients.get(client_id)
        if row is None:
            return None
        new = replace(change(row), token_epoch=new_token_epoch())
        async with ctx.db.transaction() as tx:
            await deny_sessions(ctx, [row.token_epoch])
            if not await tx.clients.replace_credentials(row, new):
                continue  # another change moved the epoch (and revoked this one): re-read
            await tx.clients.revoke_epoch(client_id, row.token_epoch, now=ctx.clock())
        await deny_sessions(ctx, [row.token_epoch], committed=True)
        return new
    raise ServiceUnavailable("the client kept changing; retry")


async def rotate_secret(ctx: ServiceContext, client_id: str) -> str | None:
    """A new secret for a confidential client (shown once); the old secret and every token
    issued with it stop working now. None if there is no such client."""
    secret = new_client_secret()

    def change(row: ClientRow) -> ClientRow:
        if not row.confidential or row.jwks is not None:
            raise InvalidClientMetadata("only a client authenticating by secret has one")
        return replace(row, secret_hash=hash_client_secret(secret))

    changed = await _change(ctx, client_id, change)
    if changed is None:
        return None
    ctx.audit.record("client_secret_rotated", client_id=client_id)
    return secret


async def replace_keys(ctx: ServiceContext, client_id: str, jwks: str) -> bool:
    """Register new public keys for a private_key_jwt client; its tokens are revoked."""
    try:
        stored = jwks_from_json(jwks)
    except ClientKeyError as exc:
        raise InvalidClientMetadata(str(exc)) from exc

    def change(row: ClientRow) -> ClientRow:
        if row.jwks is None:
            raise InvalidClientMetadata("only a private_key_jwt client has registered keys")
        return replace(row, jwks=stored)

    changed = await _change(ctx, client_id, change) is not None
    if changed:
        ctx.audit.record("client_keys_replaced", client_id=client_id)
    return changed


async def disable_client(ctx: ServiceContext, client_id: str) -> bool:
    """Refuse the client's authentication and revoke its client_credentials tokens."""
    now = ctx.clock()
    changed = await _change(ctx, client_id, lambda row: replace(row, disabled_at=now))
    if changed is not None:
        ctx.audit.record("client_disabled", client_id=client_id)
    return changed is not None


async def enable_client(ctx: ServiceContext, client_id: str) -> bool:
    """Let a disabled client authenticate again (its old tokens stay revoked)."""
    changed = await _change(ctx, client_id, lambda row: replace(row, disabled_at=None))
    return changed is not None


async def remove_client(ctx: ServiceContext, client_id: str) -> bool:
    """Delete a client; its client_credentials tokens are revoked, and its sessions can no
    longer be refreshed (client mismatch). False when there was none."""
    row = await ctx.db.clients.get(client_id)
    if row is None:
        return False
    async with ctx.db.transaction() as tx:
        await deny_sessions(ctx, [row.token_epoch])
        epoch = await tx.clients.remove(client_id)
        if epoch is None:
            return False
        if epoch != row.token_epoch:  # changed since read: deny the one actually deleted
            await deny_sessions(ctx, [epoch])
        await tx.clients.revoke_epoch(client_id, epoch, now=ctx.clock())
    await deny_sessions(ctx, [epoch], committed=True)
    return True
