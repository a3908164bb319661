"""Registered OAuth clients in SQL."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.errors import ClientExists
from auth_service.models import OAuthClient

__all__ = ["add_client", "get_client", "list_clients", "remove_client"]


async def get_client(session: AsyncSession, client_id: str) -> OAuthClient | None:
    """One client by id."""
    return await session.get(OAuthClient, client_id)


async def add_client(session: AsyncSession, client: OAuthClient) -> None:
    """Insert a client; an existing id raises ClientExists."""
    session.add(client)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ClientExists from exc


async def list_clients(session: AsyncSession) -> list[OAuthClient]:
    """Every registered client, by id."""
    return list(
        (await session.execute(select(OAuthClient).order_by(OAuthClient.client_id))).scalars()
    )


async def remove_client(session: AsyncSession, client_id: str) -> bool:
    """Delete a client; False when there was none."""
    result = await session.execute(delete(OAuthClient).where(OAuthClient.client_id == client_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
