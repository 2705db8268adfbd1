"""The SBC process inside ns sbc: its config (the lab's addresses, the backend, the database,
extra [routing], [media] and [health] keys), start (ready once the API and SIP answer), restart,
stop, its log, and its CPU time and memory."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .addresses import GW1_IP, SBC_PRIV, SBC_PRIV_IP, SBC_PUB, SBC_PUB_IP
from .api import Api
from .netns import default_backend, wait_udp_listen
from .proc import cpu_seconds, nsexec, spawn, status_kb, stop_process, tail
from .sip import options_status

CONFIG_TEMPLATE = """\
[sip]
private = "{priv}"
public  = "{pub}"
{sip_extra}[media]
private_ip = "{priv_ip}"
public_ip  = "{pub_ip}"
{media_extra}{dataplane}[database]
url = "{db}"
[journal]
path = "{journal}"
[api]
listen = "127.0.0.1:8080"
"""

# The dpdk backend owns priv0/pub0 through net_af_packet vdevs. qdisc_bypass=0 keeps the SBC's
# own frames visible to tcpdump on priv0/pub0 (the captures the tests read); it costs the relay
# speed, which the lab does not measure.
DPDK_DATAPLANE = """\
[dataplane]
backend = "dpdk"
[dataplane.dpdk]
eal_args = ["--no-huge", "--no-pci", "-m", "512", "--no-shconf", "--file-prefix=sbc-lab", "-l", "0,1",
            "--vdev=net_af_packet0,iface=priv0,qdisc_bypass=0",
            "--vdev=net_af_packet1,iface=pub0,qdisc_bypass=0",
            "--log-level=*:warning"]
private_port = 0
public_port = 1
private_prefix = 16
public_prefix = 24
idle_sleep_us = 50
exception_iface = "sbc-pub"
"""


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML rendering for {v!r}")


class Sbc:
    """The SBC inside ns sbc. `routing` becomes the config's [routing] table (None: no table, the
    SBC's defaults); write_config's and restart()'s `health` its [health] table the same way (None:
    no table, probing off). The database (`db_url`; default a SQLite file in a temporary directory)
    survives restart(). `backend`: "socket" or "dpdk" (default: netns.default_backend())."""

    def __init__(self, binary: str | Path, out_dir: Path, rust_log: str = "info",
                 routing: dict | None = None, db_url: str | None = None, backend: str | None = None,
                 ns: str = "sbc", priv_ip: str = SBC_PRIV_IP, pub_ip: str = SBC_PUB_IP,
                 name: str = "sbc", extra_tables: str = ""):
        """`ns`, `priv_ip`, `pub_ip`: where it runs (a cluster node of the lab's own runs in a
        namespace of its own); `name` names its log; `extra_tables` as in write_config."""
        self.binary = Path(binary).resolve()
        self.ns, self.priv_ip, self.pub_ip = ns, priv_ip, pub_ip
        self.backend = backend or default_backend()
        self.rust_log = rust_log
        self.out_dir = out_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="sbc-lab-"))
        self.config = self.tmp / "sbc.toml"
        self.name = name
        self.log_path = out_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.api = Api(ns=ns)
        self.db_url = db_url or f"sqlite://{self.tmp / 'sbc.db'}"
        atexit.register(shutil.rmtree, self.tmp, True)
        self.write_config(routing, extra_tables=extra_tables)

    def write_config(self, routing: dict | None, media: dict | None = None,
                     health: dict | None = None, sip_extra: dict | None = None,
                     extra_tables: str = "") -> None:
        """`sip_extra`: extra keys of the [sip] table; `extra_tables`: TOML text appended at the
        end (whole tables, e.g. [tls]). Both kept by a restart() that does not name them."""
        self.routing = dict(routing) if routing else None
        self.health = dict(health) if health else None
        self.sip_extra = dict(sip_extra) if sip_extra else None
        self.extra_tables = extra_tables or ""
        media_extra = "".join(f"{k} = {toml_value(v)}\n" for k, v in (media or {}).items())
        sip_lines = "".join(f"{k} = {toml_value(v)}\n" for k, v in (self.sip_extra or {}).items())
        dataplane = DPDK_DATAPLANE if self.backend == "dpdk" else '[dataplane]\nbackend = "socket"\n'
        text = CONFIG_TEMPLATE.format(priv=f"{self.priv_ip}:5060", pub=f"{self.pub_ip}:5080",
                                      priv_ip=self.priv_ip, pub_ip=self.pub_ip, db=self.db_url, media_extra=media_extra,
                                      dataplane=dataplane, sip_extra=sip_lines,
                                      journal=self.journal)
        if self.routing:
            text += "[routing]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in self.routing.items())
        if self.health:
            text += "[health]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in self.health.items())
        if self.extra_tables:
            text += self.extra_tables if self.extra_tables.endswith("\n") else self.extra_tables + "\n"
        self.config.write_text(text)
        shutil.copy(self.config, self.out_dir / f"{self.name}.toml")

    def restart(self, routing: dict | None = None, api_timeout: float = 10.0,
                media: dict | None = None, health: dict | None = None,
                sip_extra: dict | None = None, extra_tables: str | None = None,
                keep_calls: bool = False) -> None:
        """Stop, rewrite the config with `routing`, extra [media] keys `media`, the [health]
        table `health`, extra [sip] keys `sip_extra` and trailing tables `extra_tables` (all None:
        keep the current config; `routing`, `health`, `sip_extra` or `extra_tables` None keeps
        what it was, {} / "" drops it), start again. Provisioning survives (same database);
        counters do not, nor live calls unless `keep_calls` (the call journal is kept, and the
        SBC restores the answered calls in it)."""
        self.stop()
        if not keep_calls:
            self.forget_calls()
        if (routing is not None or media is not None or health is not None or sip_extra is not None
                or extra_tables is not None):
            self.write_config(routing if routing is not None else self.routing, media,
                              health if health is not None else self.health,
                              sip_extra if sip_extra is not None else self.sip_extra,
                              extra_tables if extra_tables is not None else self.extra_tables)
        self.start(api_timeout)

    @property
    def journal(self) -> Path:
        """The call journal's file ([journal] path)."""
        return self.tmp / "calls.db"

    def forget_calls(self) -> None:
        """Deletes the call journal (the SBC must be stopped): the next start restores nothing."""
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.journal) + suffix).unlink(missing_ok=True)

    def start(self, api_timeout: float = 10.0) -> None:
        if not self.binary.exists():
            raise RuntimeError(f"SBC binary not found: {self.binary}")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", self.rust_log)
        env.setdefault("RUST_BACKTRACE", "1")
        logf = open(self.log_path, "ab")
        logf.write(f"\n===== start {time.strftime('%H:%M:%S')}: {self.binary} run --config {self.config}\n".encode())
        logf.flush()
        self.proc = spawn(nsexec(self.ns, [self.binary, "run", "--config", self.config]),
                          stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        deadline = time.monotonic() + api_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SBC exited with status {self.proc.returncode} during start-up:\n"
                                   + tail(self.log_path, 40))
            if self.api.ready() and self.sip_ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"SBC API did not answer within {api_timeout} s:\n" + tail(self.log_path, 40))

    def sip_ready(self) -> bool:
        """Socket backend: both SIP sockets are bound. DPDK: the SBC answers OPTIONS on both sides
        (it owns ARP there, so this also proves the poll loop runs)."""
        if self.backend != "dpdk":
            return (wait_udp_listen(self.ns, self.priv_ip, 5060, 0.1)
                    and wait_udp_listen(self.ns, self.pub_ip, 5080, 0.1))
        return any(x.startswith("SIP/2.0 200") for x in options_status(timeout=0.5)) and \
            any(x.startswith("SIP/2.0 200") for x in options_status("gw", GW1_IP, SBC_PUB, timeout=0.5))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int, lines: int | None = 40) -> str:
        """The log written after byte `offset`: its last `lines` lines, or all of it (None)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                data = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"<{e}>"
        return data if lines is None else "\n".join(data.splitlines()[-lines:])

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        rc = stop_process(self.proc, signal.SIGTERM, grace=5.0)
        return rc

    def crash(self, timeout: float = 5.0) -> float:
        """kill -9: SIGKILL to the SBC, then wait until it is gone. Nothing shuts down: the call
        journal stays as its last flush left it, for start() to restore. Returns when the signal
        was sent (time.time())."""
        assert self.proc is not None
        t = time.time()
        stop_process(self.proc, signal.SIGKILL, grace=timeout)
        if self.proc.poll() is None:
            raise RuntimeError(f"SBC (pid {self.proc.pid}) still running {timeout} s after SIGKILL")
        return t

    # /proc accounting (the pid is the SBC itself: `ip netns exec` execs it)
    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def status_kb(self, key: str) -> int | None:
        return status_kb(self.pid, key)
