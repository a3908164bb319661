"""Hosts as Linux network namespaces on one bridge, with private addresses inside them only.

The bridge itself lives in a namespace of its own, so the machine's own network gains no
interface and no address: nothing outside these namespaces is ever reachable or a target.
Every name carries a random suffix so a crashed run never collides with the next.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field

__all__ = ["Network"]

IP_TIMEOUT_SECONDS = 10.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `ip` command (iproute2), bounded in time."""
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS, check=check
    )


@dataclass
class Network:
    """Namespaces `<suffix>-<host>`, each with eth0 on one bridge in `<suffix>-sw`."""

    suffix: str = field(default_factory=lambda: "sc" + secrets.token_hex(3))
    subnet: str = field(
        default_factory=lambda: f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    )
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> address
    created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.suffix}-sw"

    def namespace(self, host: str) -> str:
        return f"{self.suffix}-{host}"

    def exec_prefix(self, host: str) -> list[str]:
        """The argv prefix that runs a command inside `host`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def create_switch(self) -> None:
        ip("netns", "add", self.switch)
        self.created.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("-n", self.switch, "link", "set", "lo", "up")

    def add_host(self, host: str) -> str:
        """A namespace with loopback and eth0 on the bridge; returns its address."""
        namespace = self.namespace(host)
        address = f"{self.subnet}.{len(self.hosts) + 2}"
        port = f"p{len(self.hosts)}"
        ip("netns", "add", namespace)
        self.created.append(namespace)
        ip(
            "link",
            "add",
            "eth0",
            "netns",
            namespace,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.switch,
        )
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        self.hosts[host] = address
        return address

    def set_link(self, host: str, up: bool) -> None:
        """Cut (or restore) a host's only link, as if its cable were pulled."""
        ip("-n", self.namespace(host), "link", "set", "eth0", "up" if up else "down")

    def destroy(self) -> None:
        """Delete every namespace this run created (their veths and the bridge go with them)."""
        for namespace in reversed(self.created):
            ip("netns", "del", namespace, check=False)
        self.created.clear()
