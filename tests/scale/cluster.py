"""The hosts of the scale test and the engines on them, all started and stopped here.

pg: PostgreSQL (its own initdb cluster); rd1..rd3: Redis primary, replica and three
Sentinels; app1..app3: `auth-service serve` with two workers each, production settings;
lb: HAProxy checking /readyz; cl: the load client. Readiness is probed through Unix
sockets in the run directory (shared by every namespace), never over the host's network.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from auth_service.security.data_keys import generate_data_key_line
from auth_service.security.keys import write_private_file
from tests.scale.netns import Network
from tests.scale.processes import Proc, Processes

__all__ = ["REPLICAS", "Cluster"]

REPLICAS = ("app1", "app2", "app3")
MASTER = "authmaster"
SERVICE_PORT = 8000
MANAGEMENT_PORT = 9000  # /readyz, /healthz, /metrics: where HAProxy checks readiness
START_TIMEOUT_SECONDS = 60.0
CLI_TIMEOUT_SECONDS = 60.0
ISSUER = "https://auth.scale.invalid"


# Run inside a namespace: GET each URL of argv[1] (JSON host -> URL) argv[2] times, print
# JSON host -> statuses.
_PROBE = """
import json, sys, urllib.error, urllib.request
urls, tries, out = json.loads(sys.argv[1]), int(sys.argv[2]), {}
for host, url in urls.items():
    out[host] = []
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                out[host].append(answer.status)
        except urllib.error.HTTPError as refused:
            out[host].append(refused.code)
        except OSError:
            out[host].append(None)
print(json.dumps(out))
"""


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server binaries (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1])


def wait_for(what: str, check: object, deadline: float, proc: Proc | None = None) -> None:
    """Poll `check()` every 0.1 s until it is true, or fail naming `what` after `deadline`."""
    assert callable(check)
    while True:
        try:
            if check():
                return
        except (OSError, redis.RedisError, subprocess.SubprocessError):
            pass
        if proc is not None and proc.process is not None and proc.process.poll() is not None:
            raise RuntimeError(f"{what}: process exited\n{proc.tail()}")
        if time.monotonic() > deadline:
            tail = proc.tail() if proc is not None else ""
            raise RuntimeError(f"{what}: not ready in time\n{tail}")
        time.sleep(0.1)


@dataclass
class Cluster:
    """Everything of one run: network, run directory, processes, addresses."""

    directory: Path
    network: Network = field(default_factory=Network)
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.directory)

    # --- addresses --------------------------------------------------------------------
    def address(self, host: str) -> str:
        return self.network.hosts[host]

    @property
    def lb_url(self) -> str:
        return f"http://{self.address('lb')}"

    def replica_url(self, host: str) -> str:
        return f"http://{self.address(host)}:{SERVICE_PORT}"

    # --- building -----------------------------------------------------------------------
    def build(self) -> None:
        """Namespaces, then every engine, then the replicas behind HAProxy."""
        self.network.create_switch()
        for host in ("pg", "rd1", "rd2", "rd3", *REPLICAS, "lb", "cl"):
            self.network.add_host(host)
        self.directory.chmod(0o755)  # the postgres user must reach its cluster directory
        self.start_postgres_first_time()
        self.start_redis()
        self.prepare_service()
        for host in REPLICAS:
            self.replica(host).start()
        self.start_haproxy()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for host in REPLICAS:
            self.wait_replica_up(host, deadline)

    def _in(self, host: str, *argv: str) -> list[str]:
        return [*self.network.exec_prefix(host), *argv]

    # --- PostgreSQL ---------------------------------------------------------------------
    @property
    def pg_dir(self) -> Path:
        return self.directory / "pg"

    def start_postgres_first_time(self) -> None:
        binaries = postgres_bin()
        self.pg_dir.mkdir()
        shutil.chown(self.pg_dir, "postgres", "postgres")
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        subprocess.run(
            [
                *as_postgres,
                str(binaries / "initdb"),
                "-D",
                str(self.pg_dir / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )
        with (self.pg_dir / "data" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.network.subnet}.0/24 trust\n")
        self.processes.add(
            "postgres",
            self._in(
                "pg",
                *as_postgres,
                str(binaries / "postgres"),
                "-D",
                str(self.pg_dir / "data"),
                "-c",
                f"listen_addresses={self.address('pg')}",
                "-c",
                f"unix_socket_directories={self.pg_dir}",
                "-c",
                "port=5432",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ),
        ).start()
        self.wait_postgres()
        subprocess.run(
            [str(binaries / "createdb"), "-h", str(self.pg_dir), "-U", "postgres", "auth"],
            check=True,
            capture_output=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )

    def wait_postgres(self) -> None:
        binaries = postgres_bin()

        def ready() -> bool:
            done = subprocess.run(
                [str(binaries / "pg_isready"), "-h", str(self.pg_dir), "-U", "postgres", "-q"],
                timeout=5,
                check=False,
            )
            return done.returncode == 0

        wait_for(
            "PostgreSQL",
            ready,
            time.monotonic() + START_TIMEOUT_SECONDS,
            self.processes.procs["postgres"],
        )

    # --- Redis and Sentinel ---------------------------------------------------------------
    def redis_socket(self, host: str, sentinel: bool = False) -> str:
        return str(self.directory / f"{'sentinel' if sentinel else 'redis'}-{host}.sock")

    def start_redis(self) -> None:
        primary = self.address("rd1")
        for host in ("rd1", "rd2"):
            argv = [
                "redis-server",
                "--port",
                "6379",
                "--bind",
                self.address(host),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                str(self.directory),
                "--dbfilename",
                f"dump-{host}.rdb",
                "--unixsocket",
                self.redis_socket(host),
            ]
            if host != "rd1":
                argv += ["--replicaof", primary, "6379"]
            self.processes.add(f"redis-{host}", self._in(host, *argv))
            self.start_redis_server(host)
        for host in ("rd1", "rd2", "rd3"):
            config = self.directory / f"sentinel-{host}.conf"
            config.write_text(
                f"port 26379\nbind {self.address(host)}\nprotected-mode no\n"
                f"unixsocket {self.redis_socket(host, sentinel=True)}\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {MASTER} {primary} 6379 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
            )
            proc = self.processes.add(
                f"sentinel-{host}", self._in(host, "redis-sentinel", str(config))
            )
            proc.start()
            wait_for(
                f"sentinel on {host}",
                lambda h=host: self._ping(h, True),
                time.monotonic() + START_TIMEOUT_SECONDS,
                proc,
            )
        wait_for("replica in sync", self._replica_in_sync, time.monotonic() + 30)

    def start_redis_server(self, host: str) -> None:
        proc = self.processes.procs[f"redis-{host}"]
        proc.start()
        wait_for(
            f"redis on {host}",
            lambda: self._ping(host, False),
            time.monotonic() + START_TIMEOUT_SECONDS,
            proc,
        )

    def redis_client(self, host: str, sentinel: bool = False) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=self.redis_socket(host, sentinel),
            socket_timeout=2,
            decode_responses=True,
        )

    def _ping(self, host: str, sentinel: bool) -> bool:
        with self.redis_client(host, sentinel) as client:
            return bool(client.ping())

    def _replica_in_sync(self) -> bool:
        with self.redis_client("rd2") as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def redis_primary_host(self) -> str:
        """The host Sentinel (asked on rd3) names as primary now."""
        with self.redis_client("rd3", sentinel=True) as client:
            address = client.sentinel_get_master_addr_by_name(MASTER)
        by_address = {a: h for h, a in self.network.hosts.items()}
        return by_address[address[0]]

    # --- the service ------------------------------------------------------------------------
    def _data_key(self) -> Path:
        """The one key file sealing TOTP secrets, shared by every replica (as a mounted
        secret would be)."""
        path = self.directory / "data-encryption.key"
        if not path.exists():
            write_private_file(path, generate_data_key_line().encode("ascii"))
        return path

    def service_env(self, host: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AUTH_")}
        sentinels = ",".join(f"{self.address(h)}:26379" for h in ("rd1", "rd2", "rd3"))
        data_dir = self.directory / host
        data_dir.mkdir(exist_ok=True)
        env |= {
            "AUTH_ENVIRONMENT": "production",
            "AUTH_HOST": self.address(host) if host in REPLICAS else "127.0.0.1",
            "AUTH_PORT": str(SERVICE_PORT),
            "AUTH_MANAGEMENT_PORT": str(MANAGEMENT_PORT),
            "AUTH_WORKERS": "2",
            "AUTH_DATA_DIR": str(data_dir),
            "AUTH_LOG_LEVEL": "WARNING",
            "AUTH_DATABASE_URL": f"postgresql+asyncpg://postgres@{self.address('pg')}:5432/auth",
            "AUTH_DATABASE_POOL_SIZE": "5",
            "AUTH_REDIS_SENTINELS": sentinels,
            "AUTH_REDIS_SENTINEL_MASTER": MASTER,
            "AUTH_ISSUER": ISSUER,
            "AUTH_KEYS_DIR": str(self.directory / "keys"),
            "AUTH_DATA_ENCRYPTION_KEY_FILE": str(self._data_key()),
            "AUTH_KEY_POLL_INTERVAL_SECONDS": "1",
            "AUTH_JWKS_MAX_AGE_SECONDS": "1",
            "AUTH_TRUSTED_PROXIES": json.dumps([f"{self.address('lb')}/32"]),
            # argon2id at OWASP's floor: production accepts it, and the load stays bounded
            "AUTH_PASSWORD_HASH_MEMORY_KIB": "19456",
            "AUTH_PASSWORD_HASH_TIME_COST": "2",
            "AUTH_PASSWORD_HASH_PARALLELISM": "1",
            "AUTH_HASH_POOL_SIZE": "1",
            "AUTH_REGISTER_MAX_PER_IP": "1000000",
            "AUTH_LOGIN_MAX_FAILURES_PER_IP": "1000000",
            # any second use of a rotated refresh token is reuse: nothing is forgiven
            "AUTH_REFRESH_REUSE_GRACE_SECONDS": "0",
            "AUTH_GRACEFUL_SHUTDOWN_SECONDS": "10",
            # HAProxy marks a replica down after fall 2 x inter 500 ms (+ check timeout
            # 1 s): drain past that, within processes.STOP_TIMEOUT_SECONDS with the above.
            "AUTH_DRAIN_SECONDS": "3",
        }
        return env

    def cli(self, host: str, *args: str) -> str:
        """`auth-service ARGS` inside `host` with that replica's settings."""
        done = subprocess.run(
            self._in(host, sys.executable, "-m", "auth_service", *args),
            env=self.service_env(host),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"auth-service {' '.join(args)} on {host}: {done.stderr}")
        return done.stdout

    def prepare_service(self) -> None:
        (self.directory / "keys").mkdir(mode=0o700)
        self.cli("app1", "keys", "generate")
        self.cli("app1", "migrate")
        for host in REPLICAS:
            self.processes.add(
                host,
                self._in(host, sys.executable, "-m", "auth_service", "serve"),
                env=self.service_env(host),
            )

    def replica(self, host: str) -> Proc:
        return self.processes.procs[host]

    # --- HAProxy --------------------------------------------------------------------------
    @property
    def haproxy_socket(self) -> Path:
        return self.directory / "haproxy.sock"

    def start_haproxy(self) -> None:
        servers = "\n".join(f"  server {h} {self.address(h)}:{SERVICE_PORT}" for h in REPLICAS)
        config = self.directory / "haproxy.cfg"
        config.write_text(f"""global
  maxconn 1024
  stats socket {self.haproxy_socket} mode 600 level admin
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option dontlog-normal
  timeout connect 1s
  timeout client 30s
  timeout server 10s
  timeout check 1s
  retries 3
  option redispatch
  # Resend a request the replica closed without answering: mostly an idle keep-alive
  # connection it shut before reading the request. A replica killed mid-request lands here
  # too, so a refresh may be replayed; reuse detection then refuses it (400), which the
  # verdict counts as a failed request. Nothing that got part of an answer is resent.
  retry-on conn-failure empty-response
  option forwardfor
  # HAProxy's own 503 (no replica UP) says when to retry, like the service's own 503
  http-error status 503 content-type text/plain hdr Retry-After 1 string "temporarily unavailable"
frontend auth
  bind {self.address("lb")}:80
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check port {MANAGEMENT_PORT} inter 500ms fall 2 rise 2
{servers}
""")
        proc = self.processes.add("haproxy", self._in("lb", "haproxy", "-db", "-f", str(config)))
        proc.start()
        wait_for("haproxy", self.haproxy_socket.exists, time.monotonic() + 10, proc)

    def haproxy_command(self, command: str) -> str:
        """One command on HAProxy's stats socket (a Unix socket: no network involved)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.haproxy_socket))
            sock.sendall(command.encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.decode()

    def haproxy_status(self) -> dict[str, str]:
        """HAProxy's view of each replica (UP, DOWN, ...), from its stats socket."""
        lines = self.haproxy_command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        status: dict[str, str] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "replicas" and row.get("svname") in REPLICAS:
                status[row["svname"]] = row["status"]
        return status

    def wait_replica_up(self, host: str, deadline: float) -> None:
        wait_for(
            f"replica {host} UP in HAProxy",
            lambda: self.haproxy_status().get(host, "").startswith("UP"),
            deadline,
            self.replica(host),
        )

    def readyz(self, hosts: tuple[str, ...], tries: int) -> dict[str, list[int | None]]:
        """Each replica's /readyz `tries` times in a row, asked from HAProxy's namespace
        over the management port as HAProxy asks it (None: no answer)."""
        urls = {h: f"http://{self.address(h)}:{MANAGEMENT_PORT}/readyz" for h in hosts}
        done = subprocess.run(
            [*self._in("lb", sys.executable, "-c", _PROBE), json.dumps(urls), str(tries)],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=True,
        )
        result: dict[str, list[int | None]] = json.loads(done.stdout)
        return result

    def wait_replicas_ready(self, deadline: float, tries: int = 4) -> None:
        """Until every replica answers /readyz 200 `tries` times in a row (its workers share
        the socket, so most likely each of them answered)."""
        wait_for(
            "every replica's /readyz 200",
            lambda: all(
                statuses == [200] * tries for statuses in self.readyz(REPLICAS, tries).values()
            ),
            deadline,
        )

    def wait_replica_down(self, host: str, deadline: float) -> None:
        wait_for(
            f"replica {host} DOWN in HAProxy",
            lambda: self.haproxy_status().get(host, "").startswith("DOWN"),
            deadline,
        )

    # --- teardown ---------------------------------------------------------------------------
    def destroy(self) -> None:
        try:
            self.processes.stop_all()
        finally:
            self.network.destroy()
