"""The measurements on one running server: every cell of the report for one backend."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from bench.load import Job, JobKind, RequestSpec
from bench.machine import argon2_ceiling
from bench.plan import CONCURRENCY, PASSWORD, TIMING_ACCOUNTS, USERNAME, HashParams, Plan
from bench.results import Ceiling, Cell, EnumerationTiming, LoginCell, PeakRss
from bench.server import BenchServer
from bench.workers import LoadWorker, measured

__all__ = ["Bench"]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


def form(**fields: str) -> str:
    """An application/x-www-form-urlencoded body."""
    return urllib.parse.urlencode(fields)


@dataclass(frozen=True)
class Tokens:
    """The two tokens of a password grant's answer."""

    access_token: str
    refresh_token: str


class Bench:
    """The measurements for one running server, from two load-generator processes."""

    def __init__(self, server: BenchServer, plan: Plan, params: HashParams) -> None:
        self.server = server
        self.ready_rss_kib = server.memory_kib()["VmRSS"]  # before any request but /readyz
        self.plan = plan
        self.params = params
        self.primary = LoadWorker()
        self.background = LoadWorker()
        self.helpers = (self.primary.pid, self.background.pid)
        self.login = RequestSpec(
            "login",
            "POST",
            "/token",
            FORM,
            form(grant_type="password", username=USERNAME, password=PASSWORD),
        )
        self.access = ""
        self.refresh_tokens: list[str] = []
        self.wrong_password_users = [f"bench_wrong_{i}" for i in range(TIMING_ACCOUNTS)]

    def close(self) -> None:
        """Stop both load workers."""
        self.primary.stop()
        self.background.stop()

    def job(
        self,
        requests: list[RequestSpec],
        concurrency: int,
        *,
        warmup_s: float | None = None,
        duration_s: float | None = None,
        max_requests: int | None = None,
        expect: tuple[int, ...] = (200,),
        kind: JobKind = "static",
        refresh_tokens: list[str] | None = None,
        username_prefix: str = "bench",
    ) -> Job:
        """A load job with the plan's timing and a request budget far above what fits."""
        warmup = self.plan.warmup_s if warmup_s is None else warmup_s
        duration = self.plan.cell_s if duration_s is None else duration_s
        return Job(
            port=self.server.port,
            requests=requests,
            concurrency=concurrency,
            duration_s=duration,
            warmup_s=warmup,
            max_requests=max_requests or int((warmup + duration) * 30_000) + 1_000,
            timeout_s=10.0,
            expect=expect,
            kind=kind,
            refresh_tokens=refresh_tokens or [],
            username_prefix=username_prefix,
            password=PASSWORD,
        )

    def measure(self, job: Job) -> Cell:
        """Run `job` on the primary load worker with the server's CPU around it."""
        return measured(self.server, self.primary, job, self.helpers)

    def measure_beside_logins(self, job: Job) -> Cell:
        """Run `job` while the background worker keeps `background_logins` clients logging in."""
        span = job.warmup_s + job.duration_s + 0.3
        self.background.submit(
            self.job([self.login], self.plan.background_logins, warmup_s=0, duration_s=span)
        )
        cell = self.measure(job)
        return replace(
            cell,
            background_logins=self.background.result(),
            drained_after_s=self.server.wait_until_hashing_drained(),
        )

    def setup(self) -> None:
        """One user and its access token, 64 sessions to refresh, the wrong-password users."""
        self.register(USERNAME)
        self.access = self.log_in().access_token
        with ThreadPoolExecutor(max_workers=self.params.pool_size) as pool:
            logins = list(pool.map(lambda _: self.log_in(), range(max(CONCURRENCY))))
            self.refresh_tokens = [login.refresh_token for login in logins]
            # Accounts for the wrong-password logins: spread so no per-account or per-pair
            # failure limit is reached (and bench_user itself never fails a login).
            list(pool.map(self.register, self.wrong_password_users))

    def register(self, username: str) -> None:
        """Register `username` with the bench's password (setup, not measured)."""
        body = json.dumps({"username": username, "password": PASSWORD})
        status, answer = self.server.call("POST", "/register", body, JSON)
        assert status == 201, f"register answered {status}: {answer}"

    def log_in(self) -> Tokens:
        """A password grant for the bench user (setup, not measured): its two tokens."""
        status, body = self.server.call("POST", "/token", self.login.body, FORM)
        assert status == 200, f"login answered {status}: {body}"
        return Tokens(str(body["access_token"]), str(body["refresh_token"]))

    def users_me(self) -> RequestSpec:
        """GET /users/me with the bench user's access token."""
        bearer = {"Authorization": f"Bearer {self.access}"}
        return RequestSpec("users_me", "GET", "/users/me", bearer)

    def reads(self) -> dict[str, RequestSpec]:
        """The request templates of the read-path cells."""
        client_id, secret = self.server.introspection_client
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        introspect = RequestSpec(
            "introspect",
            "POST",
            "/introspect",
            {**FORM, "Authorization": f"Basic {basic}"},
            form(token=self.access, token_type_hint="access_token"),
        )
        jwks = RequestSpec("jwks", "GET", "/.well-known/jwks.json")
        # A service's own token: one client lookup, a SHA-256 secret check, one signature.
        client_token = RequestSpec(
            "client_credentials",
            "POST",
            "/token",
            {**FORM, "Authorization": f"Basic {basic}"},
            form(grant_type="client_credentials"),
        )
        return {
            "users_me": self.users_me(),
            "introspect": introspect,
            "jwks": jwks,
            "client_credentials": client_token,
        }

    def login_cells(self) -> tuple[dict[str, LoginCell], list[Ceiling]]:
        """Password-grant cells, each between two argon2 ceiling measurements.

        The ceiling of a cell is argon2 with as many concurrent verifies as the cell can
        have in flight: min(c, the service's hashing threads). The machine is shared and its
        speed drifts, so each cell is compared with the mean of the ceilings measured just
        before and just after it.
        """
        ceilings: list[Ceiling] = []
        cells: dict[str, LoginCell] = {}
        for c in CONCURRENCY:
            threads = min(c, self.params.threads)
            before = argon2_ceiling(self.params, self.plan.ceiling_s, threads)
            cell = self.measure(self.job([self.login], c, duration_s=self.plan.login_s))
            cell = replace(cell, drained_after_s=self.server.wait_until_hashing_drained())
            after = argon2_ceiling(self.params, self.plan.ceiling_s, threads)
            ceilings += [before, after]
            around = (before.verifies_per_s + after.verifies_per_s) / 2
            hashing = cell.server_cpu.threads_ms_per_response
            outside = cell.server_cpu.loop_ms_per_response + cell.load.client_cpu_ms_per_response
            cells[str(c)] = LoginCell(
                cell=cell,
                ceiling_threads=threads,
                ceiling_verifies_per_s=around,
                ratio_to_ceiling=cell.load.ok_per_s / around,
                cpu_outside_argon2_ms=outside,
                # With every core busy, logins/s can reach at most this share of the ceiling.
                cpu_bound_ratio=hashing / (hashing + outside) if hashing else None,
            )
        return cells, ceilings

    def idle_cells(self) -> dict[str, dict[str, Cell]]:
        """Each read endpoint at each concurrency, nothing else running."""
        return {
            name: {str(c): self.measure(self.job([request], c)) for c in CONCURRENCY}
            for name, request in self.reads().items()
        }

    def loaded_cells(self, idle: dict[str, dict[str, Cell]]) -> dict[str, dict[str, Cell]]:
        """Each read endpoint at each concurrency beside 16 clients logging in."""
        loaded: dict[str, dict[str, Cell]] = {}
        for name, request in self.reads().items():
            loaded[name] = {}
            for c in CONCURRENCY:
                cell = self.measure_beside_logins(self.job([request], c))
                idle_p99 = idle[name][str(c)].latency.p99_ms
                ratio = cell.latency.p99_ms / idle_p99 if idle_p99 and cell.latency.count else None
                loaded[name][str(c)] = replace(cell, p99_ratio_to_idle=ratio)
        return loaded

    def refresh_cells(self) -> dict[str, Cell]:
        """Refresh-grant chains, one per connection (no argon2 on this path)."""
        request = RequestSpec("refresh", "POST", "/token", FORM)
        cells: dict[str, Cell] = {}
        for c in CONCURRENCY:
            job = self.job([request], c, kind="refresh", refresh_tokens=self.refresh_tokens)
            cells[str(c)] = self.measure(job)
            self.refresh_tokens = cells[str(c)].load.refresh_tokens
        return cells

    def register_cells(self) -> dict[str, Cell]:
        """Registrations with fresh usernames (one argon2 hash each)."""
        request = RequestSpec("register", "POST", "/register", JSON)
        cells: dict[str, Cell] = {}
        for c in CONCURRENCY:
            prefix = f"b{secrets.token_hex(3)}_"
            job = self.job([request], c, kind="register", username_prefix=prefix, expect=(201,))
            cell = self.measure(job)
            cells[str(c)] = replace(cell, drained_after_s=self.server.wait_until_hashing_drained())
        return cells

    def enumeration_timing(self) -> EnumerationTiming:
        """Unknown-user vs wrong-password logins, alternating on one connection.

        Both kinds rotate over TIMING_ACCOUNTS names, so every name fails fewer times than
        the per-account and per-(account, IP) throttles allow: all answers are 400.
        """
        requests: list[RequestSpec] = []
        for index, username in enumerate(self.wrong_password_users):
            unknown = form(
                grant_type="password", username=f"bench_ghost_{index}", password=PASSWORD
            )
            wrong = form(grant_type="password", username=username, password=PASSWORD + "!")
            requests += [
                replace(self.login, label="unknown_user", body=unknown),
                replace(self.login, label="wrong_password", body=wrong),
            ]
        job = self.job(
            requests,
            1,
            duration_s=60.0,
            max_requests=2 * self.plan.timing_pairs + 10,
            expect=(400,),
        )
        result = self.primary.run(job)
        unknown_ms = result.by_label["unknown_user"]
        wrong_ms = result.by_label["wrong_password"]
        return EnumerationTiming(
            unknown_user=unknown_ms,
            wrong_password=wrong_ms,
            ratio_p50=unknown_ms.p50_ms / wrong_ms.p50_ms,
            ratio_mean=unknown_ms.mean_ms / wrong_ms.mean_ms,
        )

    def peak_rss(self) -> PeakRss:
        """Peak RSS of the server under `rss_concurrency` concurrent logins."""
        before = self.server.memory_kib()
        was_reset = self.server.reset_peak_rss()
        logins = self.measure(self.job([self.login], self.plan.rss_concurrency))
        drained = self.server.wait_until_hashing_drained()  # its tail counts for the peak
        after = self.server.memory_kib()
        whole_run_peak = max(before["VmHWM"], after["VmHWM"])
        return PeakRss(
            concurrency=self.plan.rss_concurrency,
            rss_ready_kib=self.ready_rss_kib,
            rss_before_kib=before["VmRSS"],
            peak_before_kib=before["VmHWM"],
            peak_reset=was_reset,
            peak_kib=after["VmHWM"],
            whole_run_peak_kib=whole_run_peak,
            rss_after_kib=after["VmRSS"],
            growth_kib=whole_run_peak - self.ready_rss_kib,
            hash_pool_memory_kib=self.params.threads * self.params.memory_kib,
            drained_after_s=drained,
            logins=logins,
        )
