"""The lab's network namespaces (carrier, sbc, gw; built by lab/netns.sh, no default route):
`with Lab(backend): ...` brings them up and always tears everything down, processes first. The
teardown also runs from atexit and on SIGTERM/SIGHUP (turned into SystemExit so finally blocks
run)."""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time

from . import proc
from .paths import NETNS_SH

_cleanup_done = False


def default_backend() -> str:
    """"socket" (the kernel holds the SBC's addresses) or "dpdk" (the SBC owns priv0/pub0 through
    net_af_packet vdevs; the kernel has no address there): $SBC_LAB_BACKEND, else socket."""
    return os.environ.get("SBC_LAB_BACKEND", "socket")


def lab_up(backend: str) -> None:
    subprocess.run([str(NETNS_SH), "up"], check=True, env=dict(os.environ, SBC_LAB_BACKEND=backend))


def lab_down() -> None:
    subprocess.run([str(NETNS_SH), "down"], check=False)


def cleanup() -> None:
    global _cleanup_done
    if _cleanup_done:
        return
    _cleanup_done = True
    proc.stop_all()
    lab_down()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


class Lab:
    """`with Lab(): ...` brings the namespaces up and always tears everything down."""

    def __init__(self, backend: str | None = None):
        self.backend = backend or default_backend()

    def __enter__(self):
        global _cleanup_done
        if os.geteuid() != 0:
            raise SystemExit("the lab needs root (ip netns)")
        # A process may bring the lab up more than once (perf/compare does, per system and
        # measurement): each exit tears down what its own enter brought up.
        _cleanup_done = False
        atexit.register(cleanup)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)
        lab_up(self.backend)
        return self

    def __exit__(self, *exc):
        cleanup()
        return False


def wait_udp_listen(ns: str, ip: str, port: int, timeout: float = 5.0) -> bool:
    """Wait until something in `ns` has a UDP socket bound on ip:port."""
    deadline = time.monotonic() + timeout
    needle = f"{ip}:{port}"
    while time.monotonic() < deadline:
        r = subprocess.run(proc.nsexec(ns, ["ss", "-Hlun"]), capture_output=True, text=True)
        if any(needle in line.split() for line in r.stdout.splitlines()):
            return True
        time.sleep(0.1)
    return False
