"""The load client, run inside the client namespace: mixed traffic, then the final checks.

Virtual users register, log in, and in a loop call /users/me, refresh, log out, revoke,
and replay tokens they already saw revoked or rotated. Every request is recorded (send and
answer times, status, Retry-After, the tokens used) so the runner can judge the run from
the client's side. The loop ends when the runner creates the stop file (or at a deadline);
then every registered account logs in, and every revoked access token and rotated refresh
token is tried once more, against every replica directly as well as through HAProxy.

    python -m tests.scale.load CONFIG.json
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "scale test passphrase kept long enough"
REQUEST_TIMEOUT_SECONDS = 15.0
MAX_ITERATIONS_PER_USER = 100_000
FINAL_LOGIN_DEADLINE_SECONDS = 60.0
PROBE_SAMPLE = 400
FINAL_CONCURRENCY = 8  # the final checks' requests in flight at once


def fingerprint(token: str) -> str:
    """A short stable name for a token in the records (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def jti(access_token: str) -> str:
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


@dataclass
class Recorder:
    """Every request of the run, in order of completion."""

    records: list[dict[str, Any]] = field(default_factory=list)

    async def send(
        self, client: httpx.AsyncClient, op: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        token = kwargs.pop("token", None)
        record: dict[str, Any] = {"op": op, "url": url, "t0": time.time(), "token": token}
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            record |= {"t1": time.time(), "status": None, "error": type(exc).__name__}
            self.records.append(record)
            return None
        record |= {
            "t1": time.time(),
            "status": response.status_code,
            "retry_after": "retry-after" in response.headers,
        }
        self.records.append(record)
        return response


@dataclass
class Shared:
    """What all virtual users learned: accounts, revoked and rotated tokens."""

    registered: list[str] = field(default_factory=list)
    revoked_access: dict[str, tuple[str, float]] = field(default_factory=dict)  # fp -> (tok, t)
    dead_refresh: dict[str, tuple[str, float]] = field(default_factory=dict)  # rotated/ended
    live_rotated: dict[str, tuple[str, float]] = field(default_factory=dict)


class VirtualUser:
    """One account's session life, driven by a seeded random choice of operations."""

    def __init__(self, index: int, lb: str, rec: Recorder, shared: Shared, seed: int) -> None:
        self.lb = lb
        self.rec = rec
        self.shared = shared
        self.random = random.Random(seed * 1000 + index)
        self.username = f"load{index}x{secrets.token_hex(4)}"
        self.access: str | None = None
        self.refresh: str | None = None
        self.session_rotated: list[str] = []

    def _bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def register(self, client: httpx.AsyncClient) -> bool:
        for _ in range(50):
            response = await self.rec.send(
                client,
                "register",
                "POST",
                f"{self.lb}/register",
                json={"username": self.username, "password": PASSWORD},
            )
            if response is not None and response.status_code == 201:
                self.shared.registered.append(self.username)
                return True
            if response is not None and response.status_code == 409:
                return True  # an earlier try went through: the account exists
            await asyncio.sleep(0.5)
        return False

    async def register_another(self, client: httpx.AsyncClient) -> None:
        """One more account, once (faults included): it must be able to log in at the end."""
        username = f"{self.username}n{secrets.token_hex(3)}"
        response = await self.rec.send(
            client,
            "register",
            "POST",
            f"{self.lb}/register",
            json={"username": username, "password": PASSWORD},
        )
        if response is not None and response.status_code == 201:
            self.shared.registered.append(username)

    async def login(self, client: httpx.AsyncClient) -> None:
        self._end_session()
        response = await self.rec.send(
            client,
            "login",
            "POST",
            f"{self.lb}/token",
            data={"grant_type": "password", "username": self.username, "password": PASSWORD},
        )
        if response is not None and response.status_code == 200:
            body = response.json()
            self.access, self.refresh = body["access_token"], body["refresh_token"]

    def _end_session(self) -> None:
        """The session is over: its rotated refresh tokens may be replayed safely now."""
        now = time.time()
        for token in self.session_rotated:
            self.shared.live_rotated.pop(fingerprint(token), None)
            self.shared.dead_refresh[fingerprint(token)] = (token, now)
        self.session_rotated = []
        self.access = self.refresh = None

    async def step(self, client: httpx.AsyncClient) -> None:
        if self.access is None or self.refresh is None:
            await self.login(client)
            return
        choice = self.random.random()
        if choice < 0.45:
            await self.me(client)
        elif choice < 0.70:
            await self.rotate(client)
        elif choice < 0.78:
            await self.logout(client)
        elif choice < 0.84:
            await self.revoke(client)
        elif choice < 0.90:
            await self.replay_revoked_access(client)
        elif choice < 0.97:
            await self.replay_dead_refresh(client)
        else:
            await self.register_another(client)

    async def me(self, client: httpx.AsyncClient) -> None:
        assert self.access is not None
        response = await self.rec.send(
            client,
            "me",
            "GET",
            f"{self.lb}/users/me",
            headers=self._bearer(self.access),
            token=jti(self.access),
        )
        if response is None or response.status_code != 200:
            await self.login(client)

    async def rotate(self, client: httpx.AsyncClient) -> None:
        assert self.refresh is not None
        old = self.refresh
        response = await self.rec.send(
            client,
            "refresh",
            "POST",
            f"{self.lb}/token",
            data={"grant_type": "refresh_token", "refresh_token": old},
            token=fingerprint(old),
        )
        if response is not None and response.status_code == 200:
            body = response.json()
            self.access, self.refresh = body["access_token"], body["refresh_token"]
            self.session_rotated.append(old)
            self.shared.live_rotated[fingerprint(old)] = (old, time.time())
        else:
            # 503 or a lost answer: whether it rotated is unknown, so start a new session
            await self.login(client)

    async def logout(self, client: httpx.AsyncClient) -> None:
        assert self.access is not None
        assert self.refresh is not None
        access, refresh = self.access, self.refresh
        response = await self.rec.send(
            client,
            "logout",
            "POST",
            f"{self.lb}/logout",
            headers=self._bearer(access),
            token=jti(access),
        )
        if response is not None and response.status_code == 204:
            now = time.time()
            self.shared.revoked_access[jti(access)] = (access, now)
            self.shared.dead_refresh[fingerprint(refresh)] = (refresh, now)
        await self.login(client)

    async def revoke(self, client: httpx.AsyncClient) -> None:
        assert self.refresh is not None
        assert self.access is not None
        refresh = self.refresh
        response = await self.rec.send(
            client,
            "revoke",
            "POST",
            f"{self.lb}/revoke",
            data={"token": refresh, "token_type_hint": "refresh_token"},
            token=fingerprint(refresh),
        )
        if response is not None and response.status_code == 200:
            self.shared.dead_refresh[fingerprint(refresh)] = (refresh, time.time())
        await self.login(client)

    async def replay_revoked_access(self, client: httpx.AsyncClient) -> None:
        if not self.shared.revoked_access:
            await self.me(client)
            return
        key = self.random.choice(sorted(self.shared.revoked_access))
        token, _ = self.shared.revoked_access[key]
        await self.rec.send(
            client,
            "replay_access",
            "GET",
            f"{self.lb}/users/me",
            headers=self._bearer(token),
            token=key,
        )

    async def replay_dead_refresh(self, client: httpx.AsyncClient) -> None:
        if not self.shared.dead_refresh:
            await self.me(client)
            return
        key = self.random.choice(sorted(self.shared.dead_refresh))
        token, _ = self.shared.dead_refresh[key]
        await self.rec.send(
            client,
            "replay_refresh",
            "POST",
            f"{self.lb}/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            token=key,
        )


async def run_user(user: VirtualUser, stop: Path, deadline: float, think: float) -> None:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as client:
        if not await user.register(client):
            return
        for _ in range(MAX_ITERATIONS_PER_USER):
            if os.path.exists(stop) or time.monotonic() > deadline:  # noqa: ASYNC240 (µs)
                return
            await user.step(client)
            await asyncio.sleep(think)


async def final_checks(config: dict[str, Any], rec: Recorder, shared: Shared) -> dict[str, Any]:
    """After the faults: accounts still log in; nothing revoked or rotated works again."""
    lb = config["lb_url"]
    targets = [lb, *config["replica_urls"]]
    sample = random.Random(7)
    gate = asyncio.Semaphore(FINAL_CONCURRENCY)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as client:
        cannot_log_in: list[dict[str, Any]] = []

        async def log_in(username: str) -> None:
            deadline = time.monotonic() + FINAL_LOGIN_DEADLINE_SECONDS
            while True:
                async with gate:
                    response = await rec.send(
                        client,
                        "final_login",
                        "POST",
                        f"{lb}/token",
                        data={
                            "grant_type": "password",
                            "username": username,
                            "password": PASSWORD,
                        },
                    )
                status = None if response is None else response.status_code
                if status == 200 or time.monotonic() > deadline or status not in (None, 503):
                    break
                await asyncio.sleep(0.5)
            if status != 200:
                cannot_log_in.append({"username": username, "status": status})

        await asyncio.gather(*(log_in(username) for username in shared.registered))
        revoked = sorted(shared.revoked_access.items())
        revoked = sample.sample(revoked, min(PROBE_SAMPLE, len(revoked)))
        accepted_revoked: list[dict[str, Any]] = []

        async def probe_access(key: str, token: str, revoked_at: float, target: str) -> None:
            async with gate:
                response = await rec.send(
                    client,
                    "final_access",
                    "GET",
                    f"{target}/users/me",
                    headers={"Authorization": f"Bearer {token}"},
                    token=key,
                )
            if response is None or response.status_code != 401:
                accepted_revoked.append(
                    {
                        "jti": key,
                        "target": target,
                        "revoked_at": revoked_at,
                        "status": None if response is None else response.status_code,
                    }
                )

        await asyncio.gather(
            *(
                probe_access(key, token, revoked_at, target)
                for key, (token, revoked_at) in revoked
                for target in targets
            )
        )
        rotated = sorted({**shared.dead_refresh, **shared.live_rotated}.items())
        rotated = sample.sample(rotated, min(PROBE_SAMPLE, len(rotated)))
        accepted_rotated: list[dict[str, Any]] = []

        async def probe_refresh(key: str, token: str) -> None:
            async with gate:
                response = await rec.send(
                    client,
                    "final_refresh",
                    "POST",
                    f"{lb}/token",
                    data={"grant_type": "refresh_token", "refresh_token": token},
                    token=key,
                )
            if response is None or response.status_code == 200 or response.status_code >= 500:
                accepted_rotated.append(
                    {"token": key, "status": None if response is None else response.status_code}
                )

        await asyncio.gather(*(probe_refresh(key, token) for key, (token, _) in rotated))
    return {
        "registered": len(shared.registered),
        "cannot_log_in": cannot_log_in,
        "revoked_probed": len(revoked),
        "revoked_accepted": accepted_revoked,
        "rotated_probed": len(rotated),
        "rotated_accepted": accepted_rotated,
        "revoked_at": {key: at for key, (_, at) in shared.revoked_access.items()},
        "dead_refresh_at": {key: at for key, (_, at) in shared.dead_refresh.items()},
        "rotated_at": {key: at for key, (_, at) in shared.live_rotated.items()},
    }


async def main(config: dict[str, Any]) -> None:
    rec, shared = Recorder(), Shared()
    stop = Path(config["stop_file"])
    deadline = time.monotonic() + float(config["max_seconds"])
    users = [
        VirtualUser(i, config["lb_url"], rec, shared, int(config["seed"]))
        for i in range(int(config["users"]))
    ]
    await asyncio.gather(
        *(run_user(user, stop, deadline, float(config["think_seconds"])) for user in users)
    )
    load_records = len(rec.records)
    for user in users:
        user._end_session()
    if config.get("skip_final_checks"):
        results: dict[str, Any] = {"registered": len(shared.registered)}
    else:
        results = await final_checks(config, rec, shared)
    results["load_records"] = load_records
    out = Path(config["out_dir"])
    with (out / "records.jsonl").open("w") as handle:
        for record in rec.records:
            handle.write(json.dumps(record) + "\n")
    (out / "final.json").write_text(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
