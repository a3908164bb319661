"""User profiles, and a small in-process cache of them for GET /users/me.

A profile (id, username, created_at) never changes but for the address, whose changes in
this process discard the entry (another replica's are seen within the TTL); what can
change is whether the account may still be served. A disabled user's tokens are refused
by the revocation check before the route runs: Redis is shared by every process, and the
in-process store reseeds when another process (the CLI) announces a change. Entries live
a short TTL so a row changed directly in SQL is not served for long.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["ProfileCache", "UserProfile"]


@dataclass(frozen=True)
class UserProfile:
    """What a user may see of their own account (never the hash)."""

    id: str
    username: str
    created_at: datetime
    email: str | None = None
    email_verified: bool = False


class ProfileCache:
    """Active users' profiles by id: at most `max_entries` (LRU), each for at most `ttl`."""

    def __init__(self, *, max_entries: int, ttl: timedelta) -> None:
        self._max_entries = max_entries
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[UserProfile, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str, now: datetime) -> UserProfile | None:
        """The cached profile, or None when absent or expired."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        profile, expires_at = entry
        if now >= expires_at:
            del self._entries[user_id]
            return None
        self._entries.move_to_end(user_id)
        return profile

    def put(self, profile: UserProfile, now: datetime) -> None:
        """Remember an active user's profile until now + ttl; evict the least recently used."""
        self._entries[profile.id] = (profile, now + self._ttl)
        self._entries.move_to_end(profile.id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, user_id: str) -> None:
        """Forget a user (disabled, or its address changed, in this process)."""
        self._entries.pop(user_id, None)
