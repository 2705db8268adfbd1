"""A lab of several SBC nodes (issue 17), built beside the lab's own namespaces and removed after:

    cl-car: c0 10.0.1.10/16 ─┐                        ┌─ g0 203.0.113.10/24 .11  :cl-gw
                              brp ── cl-br ── brg
    cl-n1..N: p0 10.0.0.10i/16 ┘                      └─ u0 203.0.113.5i/24

No namespace has a default route. The nodes share one Redis (on a unix socket in a temporary
directory: every namespace sees the file system) and one database server (PostgreSQL or MariaDB
over its unix socket, as the lab's --db URL names it), in a database of the cluster's own."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .proc import spawn, stop_process, tail

CARRIER_NS, GW_NS, BRIDGE_NS = "cl-car", "cl-gw", "cl-br"
CARRIER_IP = "10.0.1.10"
GW_IPS = ("203.0.113.10", "203.0.113.11")


def node_ns(i: int) -> str:
    return f"cl-n{i}"


def node_ips(i: int) -> tuple[str, str]:
    """(private, public) address of node i (1-based)."""
    return f"10.0.0.{100 + i}", f"203.0.113.{50 + i}"


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def _namespaces(n: int) -> list[str]:
    return [BRIDGE_NS, CARRIER_NS, GW_NS] + [node_ns(i) for i in range(1, n + 1)]


def down(n: int = 9) -> None:
    """Removes the cluster's namespaces (idempotent), killing what still runs in them."""
    for ns in _namespaces(n):
        r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in r.stdout.split():
            subprocess.run(["kill", "-9", pid], capture_output=True)
        _ip("netns", "del", ns, check=False)


def up(n: int) -> None:
    """Builds the namespaces of a cluster of `n` nodes, a carrier and a gateway host."""
    down()
    for ns in _namespaces(n):
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                       capture_output=True)
    for br in ("brp", "brg"):
        _ip("-n", BRIDGE_NS, "link", "add", br, "type", "bridge")
        _ip("-n", BRIDGE_NS, "link", "set", br, "up")

    def attach(ns: str, ifc: str, peer: str, bridge: str, addrs: list[str]) -> None:
        _ip("link", "add", ifc, "netns", ns, "type", "veth", "peer", "name", peer, "netns", BRIDGE_NS)
        _ip("-n", BRIDGE_NS, "link", "set", peer, "master", bridge)
        _ip("-n", BRIDGE_NS, "link", "set", peer, "up")
        for a in addrs:
            _ip("-n", ns, "addr", "add", a, "dev", ifc)
        _ip("-n", ns, "link", "set", ifc, "up")

    attach(CARRIER_NS, "c0", "bc0", "brp", [f"{CARRIER_IP}/16"])
    attach(GW_NS, "g0", "bg0", "brg", [f"{ip}/24" for ip in GW_IPS])
    for i in range(1, n + 1):
        priv, pub = node_ips(i)
        attach(node_ns(i), "p0", f"bp{i}", "brp", [f"{priv}/16"])
        attach(node_ns(i), "u0", f"bu{i}", "brg", [f"{pub}/24"])
    for ns in _namespaces(n):
        r = subprocess.run(["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True)
        if r.stdout.strip():
            down(n)
            raise RuntimeError(f"cluster lab: unexpected default route in {ns}")


class Redis:
    """redis-server on a unix socket only (no TCP port), in a temporary directory."""

    def __init__(self, out: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="sbc-lab-redis-"))
        self.sock = self.dir / "redis.sock"
        self.log = out / "redis.log"
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (scripts/install-deps installs it)")
        self.proc = spawn(["redis-server", "--port", "0", "--unixsocket", str(self.sock),
                           "--unixsocketperm", "777", "--save", "", "--appendonly", "no",
                           "--dir", str(self.dir), "--logfile", str(self.log)])
        deadline = time.monotonic() + 5
        while not self.sock.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start:\n" + tail(self.log, 20))
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis+unix://{self.sock}"

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def fresh_database(lab_url: str, name: str = "sbc_lab_cluster") -> str:
    """An empty database `name` on the server of the lab's --db URL (PostgreSQL or MariaDB over
    their unix sockets, as scripts/db-servers prints them); its URL."""
    if lab_url.startswith("postgres"):
        subprocess.run(["su", "postgres", "-c", f"psql -qc 'DROP DATABASE IF EXISTS {name}'"],
                       check=True, capture_output=True)
        subprocess.run(["su", "postgres", "-c", f"psql -qc 'CREATE DATABASE {name} OWNER sbc'"],
                       check=True, capture_output=True)
    elif lab_url.startswith("mysql"):
        subprocess.run(["mariadb", "-e", f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"],
                       check=True, capture_output=True)
    else:
        raise RuntimeError(f"the cluster lab needs a PostgreSQL or MariaDB --db, not {lab_url}")
    return re.sub(r"/sbc_lab(?=\?|$)", f"/{name}", lab_url, count=1)
