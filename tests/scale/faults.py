"""The six faults, each injected during the load and waited out until the system recovered."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.scale.cluster import REPLICAS, Cluster

PREFIX = "auth:"  # the service's default AUTH_REDIS_KEY_PREFIX

__all__ = ["FAULTS", "Fault"]

# generous: a replica's start takes seconds, and far longer on a shared, busy machine
RECOVERY_TIMEOUT_SECONDS = 120.0
KILLED_SECONDS = 3.0
LINK_DOWN_SECONDS = 5.0


@dataclass(frozen=True)
class Fault:
    """A named fault; `zero_failures` when no request may fail while it runs; `lossy` when
    a request in flight on the failed replica at that instant cannot be answered (SIGKILL,
    a cut link), so its closed connection is counted, not judged a failure;
    `revocations_lost` when the fault itself deletes revocations from Redis, so a revoked
    token accepted before the service repaired it is the fault, counted, not judged."""

    name: str
    inject: Callable[[Cluster], None]
    zero_failures: bool = False
    lossy: bool = False
    revocations_lost: bool = False


def _deadline() -> float:
    return time.monotonic() + RECOVERY_TIMEOUT_SECONDS


def kill_replica(cluster: Cluster) -> None:
    """SIGKILL app1 (supervisor and workers), wait, start it again, wait until UP."""
    cluster.replica("app1").kill()
    time.sleep(KILLED_SECONDS)
    cluster.replica("app1").start()
    cluster.wait_replica_up("app1", _deadline())


def rolling_restart(cluster: Cluster) -> None:
    """SIGTERM each replica in turn, start it again, wait until HAProxy has it UP."""
    for host in REPLICAS:
        # as an orchestrator does: SIGTERM to the replica's main process (uvicorn's
        # supervisor), which passes it on to its workers
        cluster.replica(host).stop(signal.SIGTERM, leader_only=True)
        cluster.replica(host).start()
        cluster.wait_replica_up(host, _deadline())


def redis_failover(cluster: Cluster) -> None:
    """SIGKILL the Redis primary; Sentinel promotes the replica; the old one rejoins."""
    old = cluster.redis_primary_host()
    cluster.processes.procs[f"redis-{old}"].kill()
    deadline = _deadline()
    while cluster.redis_primary_host() == old:
        if time.monotonic() > deadline:
            raise RuntimeError("Sentinel did not promote a replica in time")
        time.sleep(0.2)
    # the killed server comes back empty; Sentinel turns it into a replica of the new primary
    cluster.start_redis_server(old)
    deadline = _deadline()
    while True:
        with cluster.redis_client(old) as client:
            info = client.info("replication")
        if info.get("role") == "slave" and info.get("master_link_status") == "up":
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the old Redis primary did not rejoin as a replica")
        time.sleep(0.2)
    for host in REPLICAS:
        cluster.wait_replica_up(host, _deadline())


def redis_partial_loss(cluster: Cluster) -> None:
    """What a failover to a lagging replica leaves, made certain: on the Redis primary,
    every session and access-token denylist entry deleted and the generation mirror moved
    back, the epoch kept. Over when a replica has detected it (the loss count rose) and
    the store is restored from SQL (the epoch is back)."""
    primary = cluster.redis_primary_host()
    with cluster.redis_client(primary) as client:
        losses = int(client.get(f"{PREFIX}losses") or 0)
        lost = [
            key
            for pattern in ("sid:*", "jti:*")
            for key in client.scan_iter(match=f"{PREFIX}{pattern}", count=1000)
        ]
        if not lost:
            raise RuntimeError("no revocation in Redis to lose: the load revoked nothing")
        mirror = int(client.get(f"{PREFIX}generation") or 0)
        with client.pipeline(transaction=True) as both:  # one step, as a failover is
            both.delete(*lost)
            both.set(f"{PREFIX}generation", max(0, mirror - len(lost)))
            both.execute()
    print(f"scale-test: deleted {len(lost)} denylist entries on {primary}", flush=True)
    deadline = _deadline()
    while True:
        with cluster.redis_client(cluster.redis_primary_host()) as client:
            detected = int(client.get(f"{PREFIX}losses") or 0) > losses
            if detected and client.exists(f"{PREFIX}epoch"):
                break
        if time.monotonic() > deadline:
            raise RuntimeError("the partial Redis loss was not detected and repaired in time")
        time.sleep(0.2)


def postgres_restart(cluster: Cluster) -> None:
    """Fast shutdown (SIGINT) of PostgreSQL, start again; over when every replica's own
    /readyz (which reads the database) answers 200 again and HAProxy has them all UP."""
    proc = cluster.processes.procs["postgres"]
    proc.stop(signal.SIGINT)
    proc.start()
    cluster.wait_postgres()
    cluster.wait_replicas_ready(_deadline())
    for host in REPLICAS:
        cluster.wait_replica_up(host, _deadline())


def link_cut(cluster: Cluster) -> None:
    """Pull app2's cable: HAProxy marks it DOWN; plug it back and wait until UP."""
    cluster.network.set_link("app2", up=False)
    try:
        cluster.wait_replica_down("app2", _deadline())
        time.sleep(LINK_DOWN_SECONDS)
    finally:
        cluster.network.set_link("app2", up=True)
    cluster.wait_replica_up("app2", _deadline())


def key_rotation(cluster: Cluster) -> None:
    """Publish a next key, let every replica poll it, then sign with it (keys rotate)."""
    cluster.cli("app1", "keys", "generate")
    time.sleep(3.0)  # > poll interval + JWKS max-age: every replica verifies with it now
    cluster.cli("app1", "keys", "rotate")
    time.sleep(3.0)


FAULTS = (
    Fault("kill_replica", kill_replica, lossy=True),
    Fault("rolling_restart", rolling_restart, zero_failures=True),
    Fault("redis_failover", redis_failover),
    Fault("redis_partial_loss", redis_partial_loss, revocations_lost=True),
    Fault("postgres_restart", postgres_restart),
    Fault("link_cut", link_cut, lossy=True),
    Fault("key_rotation", key_rotation, zero_failures=True),
)
