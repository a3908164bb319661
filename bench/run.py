"""`make bench`: start the service as deployed, load it from separate processes, report.

Runs twice, on the embedded default (SQLite + in-process store, temp data dir) and on
PostgreSQL + Redis (its own `auth_bench_<random>` database and Redis key prefix, both
removed afterwards). In the same run it measures the argon2 ceiling with the service's own
parameters and pool size, so every figure can be read as a ratio taken on one machine at one
time. Writes bench/results/latest.json and latest.md and prints the Markdown.

BENCH_QUICK=1 shrinks every cell for a ~1 minute smoke run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.report import render_markdown

__all__ = ["Plan", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
HOST = "127.0.0.1"
POSTGRES_ADMIN_DSN = os.environ.get(
    "BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONCURRENCY = (1, 4, 16, 64)
READ_ENDPOINTS = ("users_me", "introspect", "jwks")
PASSWORD = "correct horse battery staple, bench edition"
USERNAME = "bench_user"
TIMING_ACCOUNTS = 40  # names the enumeration-timing logins rotate over


@dataclass(frozen=True)
class Plan:
    """How long each cell runs (seconds); BENCH_QUICK=1 picks the short plan."""

    quick: bool
    warmup_s: float
    cell_s: float
    login_s: float
    ceiling_s: float
    timing_pairs: int
    background_logins: int = 16
    rss_concurrency: int = 200

    @classmethod
    def from_env(cls) -> Plan:
        """The full plan (~3 s per cell), or the quick one when BENCH_QUICK=1."""
        if os.environ.get("BENCH_QUICK") == "1":
            return cls(True, warmup_s=0.1, cell_s=0.3, login_s=1.0, ceiling_s=1.0, timing_pairs=8)
        # A default verify takes ~0.1-0.2 s: login cells and ceilings run long enough to
        # count dozens of them.
        return cls(False, warmup_s=0.5, cell_s=3.0, login_s=6.0, ceiling_s=3.0, timing_pairs=80)


@dataclass(frozen=True)
class HashParams:
    """argon2id cost and pool size exactly as the service reads them (Settings)."""

    memory_kib: int
    time_cost: int
    parallelism: int
    pool_size: int
    workers: int = 1

    @property
    def threads(self) -> int:
        """Hashing threads of the whole service: every worker process has its own pool."""
        return self.pool_size * self.workers

    @classmethod
    def from_settings(cls) -> HashParams:
        """Settings defaults, overridden by any AUTH_* variable the server will also see."""
        from auth_service.config import Settings

        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        return cls(
            memory_kib=settings.password_hash_memory_kib,
            time_cost=settings.password_hash_time_cost,
            parallelism=settings.password_hash_parallelism,
            pool_size=settings.hash_pool_size,
            workers=getattr(settings, "workers", 1),
        )


# --- the argon2 ceiling ------------------------------------------------------------------


def argon2_ceiling(
    params: HashParams, duration_s: float, threads: int | None = None
) -> dict[str, float]:
    """Verifies/s with `threads` threads (default: as many as the service hashes on), the
    service's parameters, passlib."""
    threads = threads or params.threads
    from passlib.context import CryptContext

    context = CryptContext(
        schemes=["argon2"],
        argon2__type="ID",
        argon2__memory_cost=params.memory_kib,
        argon2__rounds=params.time_cost,
        argon2__parallelism=params.parallelism,
    )
    stored = context.hash(PASSWORD)
    counts = [0] * threads
    begin = threading.Barrier(threads + 1)
    max_per_thread = int(duration_s * 1000) + 10  # far above what one thread can reach

    def work(index: int) -> None:
        begin.wait()
        deadline = time.perf_counter() + duration_s
        for _ in range(max_per_thread):
            if time.perf_counter() >= deadline:
                break
            context.verify(PASSWORD, stored)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    busy_before = machine_cpu()[0]
    own_before = time.process_time()
    begin.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    own = time.process_time() - own_before
    foreign = machine_cpu()[0] - busy_before - own
    rate = sum(counts) / elapsed
    return {
        "threads": threads,
        "verifies_per_s": rate,
        "ms_per_verify": threads / rate * 1000,
        "cpu_ms_per_verify": own * 1000 / max(1, sum(counts)),
        "other_processes_cores": max(0.0, foreign) / elapsed,
    }


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def service_env(overrides: dict[str, str]) -> dict[str, str]:
    """The caller's environment (any AUTH_* tuning included) plus the bench's settings."""
    env = dict(os.environ)
    env.update({"AUTH_HOST": HOST, "AUTH_LOG_LEVEL": "WARNING"})
    # Every bench client comes from 127.0.0.1: per-IP throttles would measure themselves.
    # Per-account and per-(account, IP) limits stay at their defaults (see enumeration).
    env.update(
        {"AUTH_REGISTER_MAX_PER_IP": "100000000", "AUTH_LOGIN_MAX_FAILURES_PER_IP": "100000000"}
    )
    env.update(overrides)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """`python -m auth_service <args>`, bounded in time; its stdout; raise on failure."""
    done = subprocess.run(
        [PYTHON, "-m", "auth_service", *args],
        env=env,
        cwd=cwd,
        check=False,
        timeout=180,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"auth_service {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Server:
    """`python -m auth_service serve` as a child process, stopped by its PID."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.management_port = free_port()  # /readyz and /metrics
        self.env = env  # without the ports
        self._env = {
            **env,
            "AUTH_PORT": str(self.port),
            "AUTH_MANAGEMENT_PORT": str(self.management_port),
        }
        self._workdir = workdir
        self._log = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.introspection_client: tuple[str, str] | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """Migrate, register the bench's client, serve, wait (bounded) for /readyz = 200."""
        run_cli(["migrate"], self._env, self._workdir)
        self.introspection_client = self._add_confidential_client()
        with self._log.open("ab") as log:
            # cwd is the temp dir, so no stray .env from the checkout is read.
            self.process = subprocess.Popen(
                [PYTHON, "-m", "auth_service", "serve"],
                env=self._env,
                cwd=self._workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._get_text("/readyz")[0] == 200:
                    return
            time.sleep(0.1)
        self.stop()
        tail = self._log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the service did not become ready; its log ends with:\n{tail}")

    def _add_confidential_client(self) -> tuple[str, str] | None:
        """(client_id, secret) of a confidential client for /introspect, where supported."""
        client_id = "bench-resource-server"
        # Versions since the introspection permission need --introspection; older ones
        # refuse the flag and let any confidential client introspect.
        for extra in (["--introspection"], []):
            try:
                output = run_cli(
                    ["clients", "add", client_id, "--confidential", *extra],
                    self._env,
                    self._workdir,
                )
                secret: str = json.loads(output.splitlines()[-1])["client_secret"]
            except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
                continue
            return client_id, secret
        return None  # a version without registered clients: /revoke stands in

    def stop(self) -> None:
        """SIGTERM the server by PID, wait up to 15 s, then SIGKILL it and any worker left."""
        if self.process is None or self.process.poll() is not None:
            return
        children = self.pids()[1:]
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        for pid in children:  # uvicorn stops its workers itself; make sure, by PID
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(
                    self.process.pid
                ):
                    os.kill(pid, signal.SIGKILL)

    def call(
        self, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One blocking request for setup (not measured): status and JSON body."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return response.status, data if isinstance(data, dict) else {"items": data}

    def pids(self) -> list[int]:
        """The server's PID and its descendants' (uvicorn workers when AUTH_WORKERS > 1)."""
        parents: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(stat.parent.name))
        found, queue = [], [self.pid]
        while queue and len(found) < 1000:
            pid = queue.pop()
            found.append(pid)
            queue.extend(parents.get(pid, []))
        return found

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, summed over the server's
        processes (one unless AUTH_WORKERS > 1)."""
        figures = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if name in figures:
                        figures[name] += int(value.split()[0])
        return figures

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time so far of the event-loop (main) threads and of all other threads.

        A process line counts its exited threads too; a main thread's tid is its pid.
        """
        tick = os.sysconf("SC_CLK_TCK")

        def used(stat: Path) -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

        loop = total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += used(Path(f"/proc/{pid}/stat"))
                loop += used(Path(f"/proc/{pid}/task/{pid}/stat"))
        return loop, total - loop

    def wait_until_hashing_drained(self, timeout_s: float = 60.0) -> float:
        """Wait (bounded) until no argon2 job runs or waits in the server; the seconds waited.

        A login cell ends with its clients' last requests still queued for the hashing pool
        (up to c of them, ~0.1-0.2 s of CPU each): without this, they would run during the
        next ceiling or "idle" cell.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            status, text = self._get_text("/metrics")
            busy = [
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("auth_password_hash_in_flight")
            ]
            if status != 200 or not busy:
                break  # a version without the gauge: nothing to wait for
            if sum(busy) == 0:
                break
            time.sleep(0.05)
        return time.monotonic() - started

    def _get_text(self, path: str) -> tuple[int, str]:
        """GET from the management port."""
        connection = http.client.HTTPConnection(HOST, self.management_port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not allowed."""
        try:
            for pid in self.pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


class LoadWorker:
    """A `python -m bench.load` child: JSON jobs in, JSON results out, one per line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.load"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def submit(self, job: dict[str, Any]) -> None:
        """Hand a job over; the worker starts it at once."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, Any]:
        """The result of the job submitted last (every job is bounded in time)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the load worker exited")
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise RuntimeError(f"load job failed: {result['error']}")
        return result

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Submit and wait."""
        self.submit(job)
        return self.result()

    def stop(self) -> None:
        """Close its stdin (it exits), then make sure by PID."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def machine_cpu() -> tuple[float, float]:
    """Busy and steal CPU seconds of the whole machine so far (first line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by one process (all its threads, exited ones included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    server: Server, worker: LoadWorker, job: dict[str, Any], helpers: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Run `job` on `worker`; add the server's CPU use over it (loop vs other threads) and
    the CPU that processes other than the bench's used meanwhile (a shared machine).

    Per-response figures divide by every response of the job (this worker's only, so in
    loaded cells they include the background logins' cost). `helpers` are the PIDs of the
    load workers.
    """
    busy_before, steal_before = machine_cpu()
    ours_before = sum(map(process_cpu, helpers)) + time.process_time()
    loop_before, threads_before = server.cpu_seconds()
    started = time.perf_counter()
    result = worker.run(job)
    elapsed = time.perf_counter() - started
    loop_after, threads_after = server.cpu_seconds()
    ours_after = sum(map(process_cpu, helpers)) + time.process_time()
    busy_after, steal_after = machine_cpu()
    responses = max(1, result["responses_total"])
    wall = result["wall_s"]
    server_used = loop_after - loop_before + threads_after - threads_before
    result["server_cpu"] = {
        "loop_cores": (loop_after - loop_before) / wall,
        "threads_cores": (threads_after - threads_before) / wall,
        "loop_ms_per_response": (loop_after - loop_before) * 1000 / responses,
        "threads_ms_per_response": (threads_after - threads_before) * 1000 / responses,
    }
    foreign = busy_after - busy_before - server_used - (ours_after - ours_before)
    result["other_processes_cores"] = max(0.0, foreign) / elapsed
    result["steal_cores"] = (steal_after - steal_before) / elapsed
    return result


# --- backends -----------------------------------------------------------------------------


async def _postgres(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _delete_redis_keys(prefix: str) -> int:
    """Delete every key under the bench's prefix (bounded SCAN); return how many."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    deleted = 0
    try:
        cursor = 0
        for _ in range(100_000):
            cursor, keys = client.scan(cursor=cursor, match=f"{prefix}*", count=1000)
            if keys:
                deleted += int(client.delete(*keys))
            if cursor == 0:
                break
    finally:
        client.close()
    return deleted


@contextlib.contextmanager
def embedded_backend(workdir: Path) -> Iterator[dict[str, str]]:
    """SQLite + in-process store in a temp data dir (the embedded default)."""
    yield {"AUTH_DATA_DIR": str(workdir / "data")}


@contextlib.contextmanager
def postgres_redis_backend(workdir: Path) -> Iterator[dict[str, str]]:
    """Its own PostgreSQL database and Redis key prefix, both removed on exit."""
    import redis

    token = secrets.token_hex(4)
    database = f"auth_bench_{token}"
    prefix = f"auth_bench_{token}:"
    redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
    asyncio.run(_postgres(f'CREATE DATABASE "{database}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield {
            "AUTH_DATA_DIR": str(workdir / "data"),
            "AUTH_DATABASE_URL": f"{base}/{database}",
            "AUTH_REDIS_URL": REDIS_URL,
            "AUTH_REDIS_KEY_PREFIX": prefix,
        }
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        _delete_redis_keys(prefix)


# --- the cells ----------------------------------------------------------------------------


def _form(**fields: str) -> str:
    return urllib.parse.urlencode(fields)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


class Bench:
    """The measurements for one running server."""

    def __init__(self, server: Server, plan: Plan, params: HashParams) -> None:
        self.server = server
        self.ready_rss_kib = server.memory_kib()["VmRSS"]  # before any request but /readyz
        self.plan = plan
        self.params = params
        self.primary = LoadWorker()
        self.background = LoadWorker()
        self.helpers = (self.primary.process.pid, self.background.process.pid)
        self.login = {
            "label": "login",
            "method": "POST",
            "path": "/token",
            "headers": FORM,
            "body": _form(grant_type="password", username=USERNAME, password=PASSWORD),
        }

    def close(self) -> None:
        """Stop both load workers."""
        self.primary.stop()
        self.background.stop()

    def job(self, requests: list[dict[str, Any]], concurrency: int, **extra: Any) -> dict[str, Any]:
        """A load job with the plan's timing and a request budget far above what fits."""
        job: dict[str, Any] = {
            "port": self.server.port,
            "requests": requests,
            "concurrency": concurrency,
            "warmup_s": self.plan.warmup_s,
            "duration_s": self.plan.cell_s,
            "max_requests": int((self.plan.warmup_s + self.plan.cell_s) * 30_000) + 1_000,
            "timeout_s": 10.0,
        }
        job.update(extra)
        return job

    def setup(self) -> None:
        """One user, two access tokens (one for /users/me, one to re-revoke), 64 sessions."""
        status, _ = self.server.call(
            "POST", "/register", json.dumps({"username": USERNAME, "password": PASSWORD}), JSON
        )
        assert status == 201, f"register answered {status}"
        tokens = [self._login() for _ in range(2)]
        self.access = tokens[0]["access_token"]
        self.victim = tokens[1]["access_token"]
        with ThreadPoolExecutor(max_workers=self.params.pool_size) as pool:
            logins = list(pool.map(lambda _: self._login(), range(max(CONCURRENCY))))
            self.refresh_tokens = [login["refresh_token"] for login in logins]
            # Accounts for the wrong-password logins: spread so no per-account or per-pair
            # failure limit is reached (and bench_user itself never fails a login).
            self.wrong_password_users = [f"bench_wrong_{i}" for i in range(TIMING_ACCOUNTS)]
            list(pool.map(self._register, self.wrong_password_users))

    def _register(self, username: str) -> None:
        body = json.dumps({"username": username, "password": PASSWORD})
        status, answer = self.server.call("POST", "/register", body, JSON)
        assert status == 201, f"register answered {status}: {answer}"

    def _login(self) -> dict[str, Any]:
        status, body = self.server.call("POST", "/token", self.login["body"], FORM)
        assert status == 200, f"login answered {status}: {body}"
        return body

    def reads(self) -> dict[str, dict[str, Any]]:
        """The request templates of the read-path cells."""
        return {
            "users_me": {
                "label": "users_me",
                "method": "GET",
                "path": "/users/me",
                "headers": {"Authorization": f"Bearer {self.access}"},
            },
            "introspect": self._introspect_request(),
            "jwks": {"label": "jwks", "method": "GET", "path": "/.well-known/jwks.json"},
        }

    def _introspect_request(self) -> dict[str, Any]:
        """POST /introspect of the /users/me token by a confidential client (RFC 7662).

        Without registered clients (older versions) POST /revoke of an already revoked
        access token stands in: JWT verify, a denylist write and an SQL read by key.
        """
        client = self.server.introspection_client
        if client is None:
            return {
                "label": "introspect",
                "method": "POST",
                "path": "/revoke",
                "headers": FORM,
                "body": _form(token=self.victim, token_type_hint="access_token"),
            }
        basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
        return {
            "label": "introspect",
            "method": "POST",
            "path": "/introspect",
            "headers": {**FORM, "Authorization": f"Basic {basic}"},
            "body": _form(token=self.access, token_type_hint="access_token"),
        }

    def login_cells(self) -> tuple[dict[str, Any], list[dict[str, float]]]:
        """Password-grant cells, each between two argon2 ceiling measurements.

        The ceiling of a cell is argon2 with as many concurrent verifies as the cell can
        have in flight: min(c, the service's hashing threads). The machine is shared and its
        speed drifts, so each cell is compared with the mean of the ceilings measured just
        before and just after it.
        """
        ceilings: list[dict[str, float]] = []
        cells: dict[str, Any] = {}
        for c in CONCURRENCY:
            threads = min(c, self.params.threads)
            before = argon2_ceiling(self.params, self.plan.ceiling_s, threads)
            cell = measured(
                self.server,
                self.primary,
                self.job([self.login], c, duration_s=self.plan.login_s),
                self.helpers,
            )
            cell["drained_after_s"] = self.server.wait_until_hashing_drained()
            after = argon2_ceiling(self.params, self.plan.ceiling_s, threads)
            ceilings += [before, after]
            around = (before["verifies_per_s"] + after["verifies_per_s"]) / 2
            cell["ceiling_threads"] = threads
            cell["ceiling_verifies_per_s"] = around
            cell["ratio_to_ceiling"] = cell["ok_per_s"] / around
            cpu = cell["server_cpu"]
            hashing = cpu["threads_ms_per_response"]
            outside = cpu["loop_ms_per_response"] + cell["client_cpu_ms_per_response"]
            cell["cpu_outside_argon2_ms"] = outside
            # With every core busy, logins/s can reach at most this share of the ceiling.
            cell["cpu_bound_ratio"] = hashing / (hashing + outside) if hashing else None
            cells[str(c)] = cell
        return cells, ceilings

    def read_cells(self, *, loaded: bool) -> dict[str, Any]:
        """Each read endpoint at each concurrency, alone or beside 16 clients logging in."""
        cells: dict[str, Any] = {}
        for name, request in self.reads().items():
            cells[name] = {}
            for c in CONCURRENCY:
                job = self.job([request], c)
                if not loaded:
                    cells[name][str(c)] = measured(self.server, self.primary, job, self.helpers)
                    continue
                span = self.plan.warmup_s + self.plan.cell_s + 0.3
                self.background.submit(
                    self.job([self.login], self.plan.background_logins, warmup_s=0, duration_s=span)
                )
                cell = measured(self.server, self.primary, job, self.helpers)
                cell["background_logins"] = _brief(self.background.result())
                cell["drained_after_s"] = self.server.wait_until_hashing_drained()
                cells[name][str(c)] = cell
        return cells

    def refresh_cells(self) -> dict[str, Any]:
        """Refresh-grant chains, one per connection (no argon2 on this path)."""
        request = {"label": "refresh", "method": "POST", "path": "/token", "headers": FORM}
        cells: dict[str, Any] = {}
        for c in CONCURRENCY:
            result = measured(
                self.server,
                self.primary,
                self.job([request], c, kind="refresh", refresh_tokens=self.refresh_tokens),
                self.helpers,
            )
            self.refresh_tokens = result.pop("refresh_tokens")
            cells[str(c)] = result
        return cells

    def register_cells(self) -> dict[str, Any]:
        """Registrations with fresh usernames (one argon2 hash each)."""
        request = {"label": "register", "method": "POST", "path": "/register", "headers": JSON}
        cells: dict[str, Any] = {}
        for c in CONCURRENCY:
            prefix = f"b{secrets.token_hex(3)}_"
            cells[str(c)] = measured(
                self.server,
                self.primary,
                self.job(
                    [request],
                    c,
                    kind="register",
                    username_prefix=prefix,
                    password=PASSWORD,
                    expect=[201],
                ),
                self.helpers,
            )
            cells[str(c)]["drained_after_s"] = self.server.wait_until_hashing_drained()
        return cells

    def enumeration_timing(self) -> dict[str, Any]:
        """Unknown-user vs wrong-password logins, alternating on one connection.

        Both kinds rotate over TIMING_ACCOUNTS names, so every name fails fewer times than
        the per-account and per-(account, IP) throttles allow: all answers are 400.
        """
        requests = []
        for index, username in enumerate(self.wrong_password_users):
            unknown = f"bench_ghost_{index}"
            requests += [
                {
                    **self.login,
                    "label": "unknown_user",
                    "body": _form(grant_type="password", username=unknown, password=PASSWORD),
                },
                {
                    **self.login,
                    "label": "wrong_password",
                    "body": _form(
                        grant_type="password", username=username, password=PASSWORD + "!"
                    ),
                },
            ]
        result = self.primary.run(
            self.job(
                requests,
                1,
                duration_s=60.0,
                max_requests=2 * self.plan.timing_pairs + 10,
                expect=[400],
            )
        )
        unknown_ms = result["by_label"]["unknown_user"]
        wrong_ms = result["by_label"]["wrong_password"]
        return {
            "unknown_user": unknown_ms,
            "wrong_password": wrong_ms,
            "ratio_p50": unknown_ms["p50_ms"] / wrong_ms["p50_ms"],
            "ratio_mean": unknown_ms["mean_ms"] / wrong_ms["mean_ms"],
        }

    def peak_rss(self) -> dict[str, Any]:
        """Peak RSS of the server under `rss_concurrency` concurrent logins."""
        before = self.server.memory_kib()
        was_reset = self.server.reset_peak_rss()
        result = measured(
            self.server,
            self.primary,
            self.job([self.login], self.plan.rss_concurrency),
            self.helpers,
        )
        drained = self.server.wait_until_hashing_drained()  # its tail counts for the peak
        after = self.server.memory_kib()
        pool_kib = self.params.threads * self.params.memory_kib
        whole_run_peak = max(before["VmHWM"], after["VmHWM"])
        return {
            "concurrency": self.plan.rss_concurrency,
            "rss_ready_kib": self.ready_rss_kib,
            "rss_before_kib": before["VmRSS"],
            "peak_before_kib": before["VmHWM"],
            "peak_reset": was_reset,
            "peak_kib": after["VmHWM"],
            "whole_run_peak_kib": whole_run_peak,
            "rss_after_kib": after["VmRSS"],
            "growth_kib": whole_run_peak - self.ready_rss_kib,
            "hash_pool_memory_kib": pool_kib,
            "drained_after_s": drained,
            "logins": _brief(result),
        }


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """Throughput, latency and status counts of a result, without per-label detail."""
    keys = ("concurrency", "ok_per_s", "statuses", "errors", "latency", "by_status", "server_cpu")
    return {key: result[key] for key in keys if key in result}


def bench_backend(server: Server, plan: Plan, params: HashParams) -> dict[str, Any]:
    """Every cell on one running server, in an order that keeps ceilings close to logins."""
    bench = Bench(server, plan, params)
    try:
        bench.setup()
        out: dict[str, Any] = {"server_pid": server.pid, "memory_at_start": server.memory_kib()}
        # Warm the server (imports, connection pools) and the client before measuring.
        bench.primary.run(bench.job([bench.reads()["users_me"]], 4, warmup_s=0, duration_s=0.5))
        out["login"], ceilings = bench.login_cells()
        by_threads: dict[str, dict[str, float]] = {}
        for threads in sorted({int(ceiling["threads"]) for ceiling in ceilings}):
            rates = [c["verifies_per_s"] for c in ceilings if c["threads"] == threads]
            by_threads[str(threads)] = {
                "verifies_per_s": sum(rates) / len(rates),
                "min": min(rates),
                "max": max(rates),
                "measurements": len(rates),
            }
        out["argon2_ceiling"] = {
            "by_threads": by_threads,
            "cpu_ms_per_verify": sum(c["cpu_ms_per_verify"] for c in ceilings) / len(ceilings),
            "measurements": ceilings,
        }
        memory = {"ready": {"VmRSS": bench.ready_rss_kib}, "after_setup": out["memory_at_start"]}
        memory["after_login_cells"] = server.memory_kib()
        out["idle"] = bench.read_cells(loaded=False)
        memory["after_idle_reads"] = server.memory_kib()
        out["loaded"] = bench.read_cells(loaded=True)
        memory["after_loaded_reads"] = server.memory_kib()
        for name in READ_ENDPOINTS:
            for c in CONCURRENCY:
                idle = out["idle"][name][str(c)]["latency"].get("p99_ms")
                loaded = out["loaded"][name][str(c)]["latency"].get("p99_ms")
                if idle and loaded:
                    out["loaded"][name][str(c)]["p99_ratio_to_idle"] = loaded / idle
        out["refresh"] = bench.refresh_cells()
        memory["after_refresh"] = server.memory_kib()
        out["register"] = bench.register_cells()
        memory["after_register"] = server.memory_kib()
        out["enumeration_timing"] = bench.enumeration_timing()
        out["peak_rss"] = bench.peak_rss()
        memory["after_peak_rss"] = server.memory_kib()
        out["memory_by_phase_kib"] = memory
        return out
    finally:
        bench.close()


def compare_two_workers(
    one: Server, plan: Plan, params: HashParams, workdir: Path
) -> dict[str, Any]:
    """GET /users/me on this 1-worker server and on a 2-worker one over the same database
    and Redis, back to back: latency at c=1 (a Nagle stall would add ~40 ms per response
    there), and what both serve at c=16, idle and while 16 clients log in."""
    two = Server({**one.env, "AUTH_WORKERS": "2"}, workdir)
    two.start()
    print(f"bench: postgres_redis: 2 workers on {HOST}:{two.port} (pid {two.pid})")
    out: dict[str, Any] = {}
    try:
        for label, server in (("1", one), ("2", two)):
            bench = Bench(server, plan, replace(params, workers=int(label)))
            try:
                access = bench._login()["access_token"]
                users_me = {
                    "label": "users_me",
                    "method": "GET",
                    "path": "/users/me",
                    "headers": {"Authorization": f"Bearer {access}"},
                }
                cells = {
                    "c1": measured(server, bench.primary, bench.job([users_me], 1), bench.helpers),
                    "c16": measured(
                        server, bench.primary, bench.job([users_me], 16), bench.helpers
                    ),
                }
                span = plan.warmup_s + plan.cell_s + 0.3
                bench.background.submit(
                    bench.job([bench.login], plan.background_logins, warmup_s=0, duration_s=span)
                )
                cells["c16_loaded"] = measured(
                    server, bench.primary, bench.job([users_me], 16), bench.helpers
                )
                cells["c16_loaded"]["background_logins"] = _brief(bench.background.result())
                server.wait_until_hashing_drained()
                out[label] = cells
            finally:
                bench.close()
    finally:
        two.stop()
    return out


def run_backend(name: str, plan: Plan, params: HashParams) -> dict[str, Any]:
    """Set up the backend, serve, bench, and tear everything down."""
    workdir = Path(tempfile.mkdtemp(prefix=f"auth_bench_{name}_"))
    backend = embedded_backend if name == "embedded" else postgres_redis_backend
    started = time.monotonic()
    try:
        with backend(workdir) as overrides:
            server = Server(service_env(overrides), workdir)
            try:
                server.start()
                print(f"bench: {name}: serving on {HOST}:{server.port} (pid {server.pid})")
                result = bench_backend(server, plan, params)
                result["introspect_endpoint"] = (
                    "POST /introspect" if server.introspection_client else "POST /revoke"
                )
                if name == "postgres_redis" and params.workers == 1:
                    result["two_workers"] = compare_two_workers(server, plan, params, workdir)
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["seconds"] = time.monotonic() - started
    return result


def git_state() -> str:
    """The commit benchmarked, and whether auth_service/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "auth_service"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in auth_service/' if dirty else ''}"


def main() -> int:
    """Run the plan on both backends, write the results, print the table."""
    plan = Plan.from_env()
    params = HashParams.from_settings()
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "quick": plan.quick,
            "plan": asdict(plan),
            "hash": asdict(params),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "workers": params.workers,
            "git": git_state(),
            "concurrency": list(CONCURRENCY),
        },
        "backends": {},
    }
    for name in ("embedded", "postgres_redis"):
        try:
            results["backends"][name] = run_backend(name, plan, params)
        except Exception as exc:  # a missing PostgreSQL or Redis skips that backend
            if name == "embedded" or os.environ.get("CI") == "true":
                raise
            print(f"bench: {name} skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
            results["backends"][name] = {"skipped": f"{type(exc).__name__}: {exc}"}
    results["meta"]["seconds"] = time.monotonic() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    (RESULTS / "latest.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
