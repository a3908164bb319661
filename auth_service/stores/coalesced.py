"""Concurrent MGETs sent as one command (ioredis calls this auto-pipelining).

Every bearer-token check reads its denylist entries with one MGET, and each redis-py
command costs event-loop time of its own (pool checkout, packing, parsing, release) on
the order of the rest of a /users/me. Reads asked for in the same turn of the event loop
go out together as one MGET; each caller still gets exactly its own keys' values,
and if the command fails, every caller in it sees that failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["CoalescedMget"]


class CoalescedMget:
    """`send_mget` (a client's MGET), shared by the calls made while one is gathered."""

    def __init__(self, send_mget: Callable[[list[str]], Awaitable[Any]]) -> None:
        self._send_mget = send_mget
        self._gathering: list[tuple[list[str], asyncio.Future[list[Any]]]] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def mget(self, keys: list[str]) -> list[Any]:
        """The values of `keys`, in order (None where a key is missing)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self._gathering is None:
            # Sent once the callbacks already queued have run: requests that arrived in
            # this turn of the loop can still join.
            self._gathering = []
            loop.call_soon(self._send)
        self._gathering.append((keys, future))
        return await future

    def _send(self) -> None:
        batch, self._gathering = self._gathering or [], None
        # A task of its own: a caller that gives up (cancelled) cannot cancel the others' read.
        task = asyncio.get_running_loop().create_task(self._read(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _read(self, batch: list[tuple[list[str], asyncio.Future[list[Any]]]]) -> None:
        try:
            values = await self._send_mget([key for keys, _ in batch for key in keys])
        except BaseException as error:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        start = 0
        for keys, future in batch:
            if not future.done():
                future.set_result(values[start : start + len(keys)])
            start += len(keys)
