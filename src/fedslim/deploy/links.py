"""Emulated links: each SuperNode in a network namespace of its own, joined to this
machine over a veth pair through a bridge, its rates shaped to a link profile.

The host side of a node's pair shapes what the node receives (the link's downlink), the
node side what it sends (its uplink), each with a token bucket (``tc ... tbf``). This
kernel has no ``netem``, so a link's round-trip time is not emulated: the simulator's
``rtt_s`` is the part a comparison must add. The SuperLink listens on the bridge's
address, reachable from this machine and its namespaces only. Everything made here
carries the deployment's tag in its name, and ``remove`` deletes exactly that.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import shutil
import subprocess
from dataclasses import dataclass

from ..resources.profiles import Link

POOL = ipaddress.ip_network("10.213.0.0/16")  # /24s for bridges, the first one free


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _tbf(prefix: list[str], dev: str, mbps: float) -> None:
    rate = int(mbps * 1e6)
    burst = max(4096, rate // 8 // 100)  # 10 ms of the rate, at least a few packets
    cmd = [*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate}bit",
           "burst", str(burst), "latency", "1s"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def check_rights() -> None:
    """Fail with a clear message where namespaces cannot be made (no root, no iproute2)."""
    if not (shutil.which("ip") and shutil.which("tc")):
        raise RuntimeError("emulated links need iproute2 (apt-get install iproute2)")
    probe = f"fsprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(
            "emulated links need the rights to make network namespaces (root or "
            f"CAP_NET_ADMIN): {made.stderr.strip()}"
        )
    _ip("netns", "del", probe)


@dataclass
class Emulation:
    """The namespaces, veth pairs and bridge of one deployment, named by its tag."""

    tag: str  # a few hex digits, unique per deployment
    links: dict[int, Link]  # SuperNode -> its link profile
    subnet: str = ""

    @property
    def bridge(self) -> str:
        return f"fs{self.tag}br"

    def namespace(self, i: int) -> str:
        return f"fs-{self.tag}-{i}"

    @property
    def host_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    def prefix(self, i: int) -> list[str]:
        """The argv prefix that runs a command inside SuperNode ``i``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(i)] if i in self.links else []

    def create(self) -> None:
        check_rights()
        taken = [ipaddress.ip_interface(word).network
                 for line in _ip("-4", "-o", "addr").stdout.splitlines()
                 for word in line.split() if "/" in word and word[0].isdigit()]  # fmt: skip
        net = next(n for n in POOL.subnets(new_prefix=24) if not any(n.overlaps(t) for t in taken))
        self.subnet = str(net)
        hosts = list(net.hosts())
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{hosts[0]}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, link in sorted(self.links.items()):
            ns, host_end, node_end = self.namespace(i), f"fs{self.tag}h{i}", f"fs{self.tag}n{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end, "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{hosts[i + 1]}/24", "dev", node_end)
            _ip("-n", ns, "link", "set", node_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _tbf([], host_end, link.down_mbps)  # what the node receives
            _tbf(["ip", "netns", "exec", ns], node_end, link.up_mbps)  # what it sends

    def remove(self) -> None:
        """Delete what ``create`` made (each namespace takes its veth pair with it)."""
        for i in self.links:
            _ip("netns", "del", self.namespace(i), check=False)
        _ip("link", "del", self.bridge, check=False)

    def record(self) -> dict:
        links = {str(i): dataclasses.asdict(link) for i, link in self.links.items()}
        return {"tag": self.tag, "subnet": self.subnet, "links": links}

    @classmethod
    def from_record(cls, record: dict) -> Emulation:
        links = {int(i): Link(**fields) for i, fields in record["links"].items()}
        return cls(record["tag"], links, record["subnet"])
