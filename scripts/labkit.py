"""Shared plumbing for the namespace lab: lab up/down, the SBC process, the REST API, sipp, tcpdump.

Used by scripts/lab_tests.py (end-to-end tests) and perf/cps_lab.py (signalling benchmark).
Python 3.11 standard library only. Must run as root (network namespaces).

Every process started here runs inside one of the lab namespaces (carrier, sbc, gw), which have no
default route, and is registered so that cleanup() can end it by its own pid. cleanup() runs from
`with Lab(): ...`, from atexit, and on SIGTERM/SIGHUP (turned into SystemExit so finally blocks run).
"""
from __future__ import annotations

import atexit
import csv
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "lab" / "netns.sh"
SIPP_DIR = REPO / "lab" / "sipp"
SIPSEND = REPO / "lab" / "sipsend.py"

# Lab addresses (see docs/architecture.md, "The lab").
CARRIER_IP = "10.0.1.10"
CARRIER2_IP = "10.0.1.20"
TENANT_TRUNK_IP = "10.0.1.50"
SBC_PRIV_IP = "10.0.0.100"
SBC_PUB_IP = "203.0.113.50"
SBC_PRIV = f"{SBC_PRIV_IP}:5060"
SBC_PUB = f"{SBC_PUB_IP}:5080"
GW1_IP, GW2_IP, GW3_IP = "203.0.113.10", "203.0.113.11", "203.0.113.12"
API_BASE = "http://127.0.0.1:8080"
SIPP_MEDIA_PORT = 6000          # sipp's -mp default: its RTP echo socket, the port [media_port] gives
MEDIA_PORTS = (10000, 60000)    # the SBC's default relay port range
PRIVATE_RE = re.compile(rb"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")

CONFIG_TEMPLATE = """\
[sip]
private = "{priv}"
public  = "{pub}"
[media]
private_ip = "{priv_ip}"
public_ip  = "{pub_ip}"
{media_extra}{dataplane}[database]
url = "{db}"
[api]
listen = "127.0.0.1:8080"
"""


def log(msg: str) -> None:
    print(msg, flush=True)


def nsexec(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns] + [str(a) for a in argv]


# ----------------------------------------------------------------------------------------------
# Process registry and cleanup
# ----------------------------------------------------------------------------------------------

_procs: list[subprocess.Popen] = []
_cleanup_done = False
_lab_is_up = False


def spawn(argv: list[str], *, stdout=None, stderr=None, cwd=None, env=None) -> subprocess.Popen:
    """Start a process (normally `ip netns exec NS ...`, which execs, so the pid is the program's)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         cwd=cwd, env=env, start_new_session=True)
    _procs.append(p)
    return p


def stop_process(p: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 3.0) -> int | None:
    """Signal one process we started, wait, escalate to SIGKILL. Returns its exit status."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                p.kill()
            except ProcessLookupError:
                pass
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                pass
    if p in _procs:
        _procs.remove(p)
    return p.returncode


# "socket" (the kernel holds the SBC's addresses) or "dpdk" (the SBC owns priv0/pub0 through
# net_af_packet vdevs; the kernel has no address there). Set by the test runner's --backend.
# qdisc_bypass=0 keeps the SBC's own frames visible to tcpdump on priv0/pub0 (the captures the
# tests read); it costs the relay speed, which the lab does not measure.
BACKEND = os.environ.get("SBC_LAB_BACKEND", "socket")

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
"""


def lab_up() -> None:
    global _lab_is_up
    subprocess.run([str(LAB), "up"], check=True, env=dict(os.environ, SBC_LAB_BACKEND=BACKEND))
    _lab_is_up = True


def lab_down() -> None:
    global _lab_is_up
    subprocess.run([str(LAB), "down"], check=False)
    _lab_is_up = False


def cleanup() -> None:
    global _cleanup_done
    if _cleanup_done:
        return
    _cleanup_done = True
    for p in list(reversed(_procs)):
        stop_process(p, signal.SIGTERM, grace=2.0)
    lab_down()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


class Lab:
    """`with Lab(): ...` brings the namespaces up and always tears everything down."""

    def __enter__(self):
        if os.geteuid() != 0:
            raise SystemExit("the lab needs root (ip netns)")
        install_cleanup()
        lab_up()
        return self

    def __exit__(self, *exc):
        cleanup()
        return False


def new_run_dir(kind: str) -> Path:
    d = REPO / "lab-out" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    d.mkdir(parents=True, exist_ok=True)
    latest = REPO / "lab-out" / f"{kind}-latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(d.name)
    except OSError:
        pass
    return d


def tail(path: Path | str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<{path}: {e}>"
    return "\n".join(data.splitlines()[-lines:])


def wait_udp_listen(ns: str, ip: str, port: int, timeout: float = 5.0) -> bool:
    """Wait until something in `ns` has a UDP socket bound on ip:port."""
    deadline = time.monotonic() + timeout
    needle = f"{ip}:{port}"
    while time.monotonic() < deadline:
        r = subprocess.run(nsexec(ns, ["ss", "-Hlun"]), capture_output=True, text=True)
        if any(needle in line.split() for line in r.stdout.splitlines()):
            return True
        time.sleep(0.1)
    return False


# ----------------------------------------------------------------------------------------------
# The SBC process
# ----------------------------------------------------------------------------------------------

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
    SBC's defaults). The database (`db_url`; default a SQLite file in a temporary directory)
    survives restart()."""

    def __init__(self, binary: str | Path, out_dir: Path, rust_log: str = "info",
                 routing: dict | None = None, db_url: str | None = None):
        self.binary = Path(binary).resolve()
        self.rust_log = rust_log
        self.out_dir = out_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="sbc-lab-"))
        self.config = self.tmp / "sbc.toml"
        self.log_path = out_dir / "sbc.log"
        self.proc: subprocess.Popen | None = None
        self.api = Api()
        self.db_url = db_url or f"sqlite://{self.tmp / 'sbc.db'}"
        atexit.register(shutil.rmtree, self.tmp, True)
        self.write_config(routing)

    def write_config(self, routing: dict | None, media: dict | None = None) -> None:
        self.routing = dict(routing) if routing else None
        media_extra = "".join(f"{k} = {toml_value(v)}\n" for k, v in (media or {}).items())
        dataplane = DPDK_DATAPLANE if BACKEND == "dpdk" else '[dataplane]\nbackend = "socket"\n'
        text = CONFIG_TEMPLATE.format(priv=SBC_PRIV, pub=SBC_PUB, priv_ip=SBC_PRIV_IP,
                                      pub_ip=SBC_PUB_IP, db=self.db_url, media_extra=media_extra,
                                      dataplane=dataplane)
        if self.routing:
            text += "[routing]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in self.routing.items())
        self.config.write_text(text)
        shutil.copy(self.config, self.out_dir / "sbc.toml")

    def restart(self, routing: dict | None = None, api_timeout: float = 10.0,
                media: dict | None = None) -> None:
        """Stop, rewrite the config with `routing` and extra [media] keys `media` (both None: keep
        the current config), start again. Provisioning survives (same database); counters and
        live calls do not."""
        self.stop()
        if routing is not None or media is not None:
            self.write_config(routing if routing is not None else self.routing, media)
        self.start(api_timeout)

    def start(self, api_timeout: float = 10.0) -> None:
        if not self.binary.exists():
            raise RuntimeError(f"SBC binary not found: {self.binary}")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", self.rust_log)
        env.setdefault("RUST_BACKTRACE", "1")
        logf = open(self.log_path, "ab")
        logf.write(f"\n===== start {time.strftime('%H:%M:%S')}: {self.binary} run --config {self.config}\n".encode())
        logf.flush()
        self.proc = spawn(nsexec("sbc", [self.binary, "run", "--config", self.config]),
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
        if BACKEND != "dpdk":
            return wait_udp_listen("sbc", SBC_PRIV_IP, 5060, 0.1) and wait_udp_listen("sbc", SBC_PUB_IP, 5080, 0.1)
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

    def log_since(self, offset: int, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                data = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"<{e}>"
        return "\n".join(data.splitlines()[-lines:])

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        rc = stop_process(self.proc, signal.SIGTERM, grace=5.0)
        return rc

    # /proc accounting (the pid is the SBC itself: `ip netns exec` execs it)
    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        # fields after "pid (comm)": state is rest[0]; utime = field 14, stime = field 15
        utime, stime = int(rest[11]), int(rest[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def status_kb(self, key: str) -> int | None:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None


# ----------------------------------------------------------------------------------------------
# REST API (curl inside ns sbc: the API listens on the namespace's loopback)
# ----------------------------------------------------------------------------------------------

class ApiError(RuntimeError):
    pass


@dataclass
class Response:
    code: int
    body: str

    def json(self):
        try:
            return json.loads(self.body) if self.body.strip() else None
        except json.JSONDecodeError:
            return None


class Api:
    def __init__(self, base: str = API_BASE):
        self.base = base

    def request(self, method: str, path: str, body=None, timeout: float = 5.0) -> Response:
        argv = ["curl", "-sS", "-m", str(timeout), "-X", method, "-o", "-",
                "-w", "\n__HTTP_CODE__%{http_code}", self.base + path]
        data = None
        if body is not None:
            argv[1:1] = ["-H", "Content-Type: application/json", "--data-binary", "@-"]
            data = json.dumps(body)
        r = subprocess.run(nsexec("sbc", argv), input=data, capture_output=True, text=True,
                           timeout=timeout + 5)
        out = r.stdout
        m = re.search(r"\n__HTTP_CODE__(\d{3})$", out)
        if not m:
            raise ApiError(f"{method} {path}: curl failed (rc {r.returncode}): {r.stderr.strip()}")
        return Response(int(m.group(1)), out[:m.start()])

    def ready(self) -> bool:
        try:
            return self.request("GET", "/api/v1/status", timeout=1.0).code == 200
        except (ApiError, subprocess.TimeoutExpired):
            return False

    def status(self) -> dict:
        r = self.request("GET", "/api/v1/status")
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"GET /api/v1/status -> {r.code} {r.body[:200]}")
        return r.json()

    def media(self) -> dict:
        """The "media" object of GET /api/v1/status (streams, sockets, relayed, dropped_*, ...)."""
        m = self.status().get("media")
        if not isinstance(m, dict):
            raise ApiError("GET /api/v1/status has no media object")
        return m

    def snapshot_version(self):
        try:
            return self.status().get("snapshot_version")
        except ApiError:
            return None

    def wait_applied(self, before, timeout: float = 2.0) -> bool:
        """Wait until the SIP engine has a newer routing snapshot than `before`.
        Without a usable snapshot_version, just sleep a second."""
        if not isinstance(before, (int, float)):
            time.sleep(1.0)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.snapshot_version()
            if isinstance(v, (int, float)) and v > before:
                return True
            time.sleep(0.05)
        return False

    def _create(self, path: str, obj: dict, expect=(200, 201)) -> dict:
        before = self.snapshot_version()
        r = self.request("POST", path, obj)
        if r.code not in expect:
            raise ApiError(f"POST {path} {json.dumps(obj)} -> {r.code} {r.body[:300]}")
        self.wait_applied(before)
        j = r.json()
        return j if isinstance(j, dict) else {}

    def _delete(self, path: str) -> None:
        before = self.snapshot_version()
        r = self.request("DELETE", path)
        if r.code not in (200, 204):
            raise ApiError(f"DELETE {path} -> {r.code} {r.body[:300]}")
        self.wait_applied(before)

    def add_carrier(self, ip, mask=32, name="carrier", group=1) -> dict:
        return self._create("/api/v1/carriers", {"ip": ip, "mask": mask, "name": name, "group": group})

    def add_gateway(self, destination, group=1, priority=1, weight=1, description="gw") -> dict:
        return self._create("/api/v1/gateways", {"destination": destination, "group": group,
                                                 "priority": priority, "weight": weight,
                                                 "description": description})

    def add_tenant(self, tenant_id, source_ip, gateway_group=1, max_cps=10, max_concurrent=10) -> dict:
        return self._create("/api/v1/tenants", {"tenant_id": tenant_id, "source_ip": source_ip,
                                                "gateway_group": gateway_group, "max_cps": max_cps,
                                                "max_concurrent": max_concurrent})

    def route(self, source_ip: str, to: str, headers: dict | None = None) -> dict:
        body = {"source_ip": source_ip, "to": to}
        if headers is not None:
            body["headers"] = headers
        r = self.request("POST", "/api/v1/route", body)
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"POST /api/v1/route {json.dumps(body)} -> {r.code} {r.body[:300]}")
        return r.json()

    def call_stats(self) -> dict:
        r = self.request("GET", "/api/v1/stats/calls")
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"GET /api/v1/stats/calls -> {r.code} {r.body[:300]}")
        return r.json()

    def calls(self, limit: int = 1) -> list:
        """The latest finished calls (GET /api/v1/calls), newest first."""
        r = self.request("GET", f"/api/v1/calls?limit={limit}")
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"GET /api/v1/calls -> {r.code} {r.body[:300]}")
        return r.json()["calls"]

    def delete_carrier(self, cid) -> None:
        self._delete(f"/api/v1/carriers/{cid}")

    def delete_gateway(self, gid) -> None:
        self._delete(f"/api/v1/gateways/{gid}")

    def delete_tenant(self, tenant_id) -> None:
        self._delete(f"/api/v1/tenants/{tenant_id}")

    def list(self, what: str) -> list:
        r = self.request("GET", f"/api/v1/{what}")
        if r.code != 200:
            raise ApiError(f"GET /api/v1/{what} -> {r.code} {r.body[:300]}")
        j = r.json()
        if isinstance(j, dict):  # tolerate {"gateways": [...]} style envelopes
            for v in j.values():
                if isinstance(v, list):
                    return v
        return j if isinstance(j, list) else []


def provision_default(api: Api) -> dict:
    """Carrier 10.0.1.10/32 (group 1) and gateway group 1 = sip:203.0.113.10:5060."""
    carrier = api.add_carrier(CARRIER_IP, 32, "carrier1", 1)
    gw = api.add_gateway(f"sip:{GW1_IP}:5060", 1, 1, 1, "gw1")
    return {"carrier": carrier, "gateway": gw}


def clear_provisioning(api: Api) -> None:
    """Delete every tenant, gateway and carrier."""
    for t in api.list("tenants"):
        api.delete_tenant(t["tenant_id"])
    for g in api.list("gateways"):
        api.delete_gateway(g["id"])
    for c in api.list("carriers"):
        api.delete_carrier(c["id"])


def provision(api: Api, carriers=(), gateways=(), tenants=()) -> dict:
    """Replace the whole provisioning. carriers: (ip, mask[, name, group]) tuples, created in this
    order (so ids ascend in it); gateways: dicts for add_gateway (destination, group, priority,
    weight, description) or a bare destination; tenants: dicts for add_tenant.
    Returns {"carriers": [...], "gateways": [...], "tenants": [...]} as the API answered."""
    clear_provisioning(api)
    out = {"carriers": [], "gateways": [], "tenants": []}
    for c in carriers:
        ip, mask, *rest = c
        name = rest[0] if rest else f"carrier-{ip}"
        group = rest[1] if len(rest) > 1 else 1
        out["carriers"].append(api.add_carrier(ip, mask, name, group))
    for g in gateways:
        g = {"destination": g} if isinstance(g, str) else dict(g)
        out["gateways"].append(api.add_gateway(**g))
    for t in tenants:
        out["tenants"].append(api.add_tenant(**t))
    return out


def gw_uri(ip: str, port: int = 5060) -> str:
    return f"sip:{ip}:{port}"


# ----------------------------------------------------------------------------------------------
# sipp -trace_msg logs
# ----------------------------------------------------------------------------------------------

@dataclass
class SipMsg:
    ts: float          # seconds since the epoch (sipp's wall-clock stamp)
    direction: str     # "sent" | "received"
    text: str          # the message, CRLF turned into LF

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def is_request(self, method: str) -> bool:
        return self.first_line.startswith(method + " ")

    def is_response(self, code: int | None = None, method: str | None = None) -> bool:
        if not self.first_line.startswith("SIP/2.0 "):
            return False
        if code is not None and not self.first_line.startswith(f"SIP/2.0 {code}"):
            return False
        return method is None or re.search(rf"^CSeq:\s*\d+\s+{method}\s*$", self.head, re.M | re.I) is not None

    @property
    def head(self) -> str:
        return self.text.split("\n\n", 1)[0]

    def headers(self, name: str) -> list[str]:
        """Values of every header line called `name` (case-insensitive; no compact forms)."""
        out = []
        for line in self.head.split("\n")[1:]:
            if ":" in line:
                n, v = line.split(":", 1)
                if n.strip().lower() == name.lower():
                    out.append(v.strip())
        return out

    def header(self, name: str) -> str | None:
        h = self.headers(name)
        return h[0] if h else None

    @property
    def body(self) -> str:
        return self.text.split("\n\n", 1)[1] if "\n\n" in self.text else ""

    @property
    def sdp(self) -> "Sdp | None":
        return parse_sdp(self.body)

    @property
    def cseq_method(self) -> str | None:
        c = self.header("CSeq")
        return c.split()[-1].upper() if c and c.split() else None

    @property
    def ruri_user(self) -> str | None:
        m = re.match(r"^[A-Z]+ sips?:([^@;>\s]+)@", self.first_line)
        return m.group(1) if m else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID") or self.header("i")


@dataclass
class Sdp:
    """What the lab tests look at in an SDP body (the first m=audio line)."""
    origin: str | None      # o= address
    conn: str | None        # c= address of the audio stream (media level over session level)
    port: int | None        # m=audio port
    rtcp: str | None        # a=rtcp value, if any
    direction: str          # a=sendrecv|sendonly|recvonly|inactive (sendrecv when absent)
    text: str

    @property
    def addr(self) -> tuple[str | None, int | None]:
        return self.conn, self.port


def parse_sdp(body: str) -> Sdp | None:
    if not body.lstrip().startswith("v=0"):
        return None
    origin = sess_c = media_c = port = rtcp = None
    direction = sess_dir = None
    in_audio = seen_audio = False
    for line in body.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("o="):
            f = line[2:].split()
            origin = f[5] if len(f) >= 6 else None
        elif line.startswith("m="):
            in_audio = line.startswith("m=audio ") and not seen_audio
            if in_audio:
                seen_audio = True
                f = line.split()
                port = int(f[1].split("/")[0]) if len(f) > 1 and f[1].split("/")[0].isdigit() else None
        elif line.startswith("c="):
            addr = line.split()[-1].split("/")[0]
            if in_audio:
                media_c = addr
            elif not seen_audio:
                sess_c = addr
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            if in_audio:
                direction = line[2:]
            elif not seen_audio:
                sess_dir = line[2:]
        elif line.startswith("a=rtcp:") and in_audio:
            rtcp = line[len("a=rtcp:"):]
    if not seen_audio:
        return None
    return Sdp(origin, media_c or sess_c, port, rtcp, direction or sess_dir or "sendrecv", body)


_SIPP_STAMP = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s*$", re.M)


def sipp_messages(path: Path | str | None) -> list[SipMsg]:
    """Every message of a sipp -trace_msg file, in order."""
    import datetime
    if not path:
        return []
    try:
        text = Path(path).read_text(errors="replace").replace("\r\n", "\n")
    except OSError:
        return []
    out = []
    marks = list(_SIPP_STAMP.finditer(text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        block = text[m.end():end].lstrip("\n")
        kind, _, msg = block.partition("\n")
        direction = "received" if "received" in kind else "sent" if "sent" in kind else "?"
        try:
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            ts = 0.0
        out.append(SipMsg(ts, direction, msg.lstrip("\n").rstrip("\n") + "\n"))
    return out


def received_invites(path, initial_only: bool = True) -> list[SipMsg]:
    """INVITEs a sipp UAS received (first transmission per Call-ID; no re-INVITEs when
    initial_only: those carry a To tag)."""
    seen, out = set(), []
    for m in sipp_messages(path):
        if m.direction != "received" or not m.is_request("INVITE"):
            continue
        if initial_only and re.search(r";\s*tag=", m.header("To") or ""):
            continue
        key = (m.call_id, m.header("CSeq"))
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out


# ----------------------------------------------------------------------------------------------
# sipp
# ----------------------------------------------------------------------------------------------

@dataclass
class SippResult:
    name: str
    rc: int | None
    elapsed: float
    timed_out: bool
    stats: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", 0) or 0)

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", 0) or 0)

    def ok(self, calls: int) -> bool:
        return self.rc == 0 and not self.timed_out and self.failed == 0 and self.successful == calls

    def summary(self) -> str:
        return (f"{self.name}: rc={self.rc}{' TIMEOUT' if self.timed_out else ''} "
                f"successful={self.successful} failed={self.failed} elapsed={self.elapsed:.1f}s")

    def diagnostics(self, lines: int = 40) -> str:
        out = [self.summary()]
        for key in ("errors", "stdout"):
            p = self.files.get(key)
            if p and Path(p).exists() and Path(p).stat().st_size:
                out.append(f"--- {key}: {p}\n{tail(p, lines)}")
        if self.files.get("messages"):
            out.append(f"--- message trace: {self.files['messages']}")
        return "\n".join(out)


def read_sipp_stats(path: Path) -> dict:
    """Last row of a sipp -trace_stat file (';'-separated, header in the first row)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def sipp_argv(scenario: str, local_ip: str, port: int, out_dir: Path, name: str, *,
              target: str | None = None, calls: int | None = None, rate: float | None = None,
              limit: int | None = None, duration_ms: int | None = None,
              timeout_s: int | None = None, service: str | None = None,
              trace_msg: bool = True, rtt: bool = False, extra: list[str] | None = None) -> tuple[list, dict]:
    scen = SIPP_DIR / (scenario if scenario.endswith(".xml") else scenario + ".xml")
    files = {
        "stats": out_dir / f"{name}.stat.csv",
        "errors": out_dir / f"{name}.errors.log",
        "stdout": out_dir / f"{name}.out",
    }
    argv = ["sipp", "-sf", str(scen), "-i", local_ip, "-p", str(port), "-mi", local_ip,
            "-nostdin", "-trace_stat", "-stf", str(files["stats"]), "-fd", "1",
            "-trace_err", "-error_file", str(files["errors"])]
    if trace_msg:
        files["messages"] = out_dir / f"{name}.messages.log"
        argv += ["-trace_msg", "-message_file", str(files["messages"])]
    if rtt:
        argv += ["-trace_rtt", "-rtt_freq", "1"]  # sipp only writes rtt rows every rtt_freq calls
    if calls is not None:
        argv += ["-m", str(calls)]
    if rate is not None:
        argv += ["-r", str(rate)]
    if limit is not None:
        argv += ["-l", str(limit)]
    if duration_ms is not None:
        argv += ["-d", str(duration_ms)]
    if timeout_s is not None:
        argv += ["-timeout", f"{timeout_s}s", "-timeout_error"]
    if service is not None:
        argv += ["-s", service]
    argv += list(extra or [])
    if target is not None:
        argv.append(target)
    return argv, files


def run_uac(ns: str, scenario: str, local_ip: str, port: int, target: str, out_dir: Path, name: str,
            *, calls: int = 1, rate: float = 10, limit: int | None = None, duration_ms: int = 1000,
            timeout_s: int = 120, service: str = "919876543210", trace_msg: bool = True,
            rtt: bool = False, extra: list[str] | None = None) -> SippResult:
    """Run a sipp UAC in the foreground (bounded by -timeout and a subprocess timeout)."""
    argv, files = sipp_argv(scenario, local_ip, port, out_dir, name, target=target, calls=calls,
                            rate=rate, limit=limit or max(1, calls), duration_ms=duration_ms,
                            timeout_s=timeout_s, service=service, trace_msg=trace_msg, rtt=rtt,
                            extra=extra)
    t0 = time.monotonic()
    timed_out = False
    with open(files["stdout"], "wb") as out:
        p = spawn(nsexec(ns, argv), stdout=out, stderr=subprocess.STDOUT, cwd=out_dir)
        try:
            p.wait(timeout_s + 15)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process(p, signal.SIGUSR1, grace=0.5)
        stop_process(p)
    elapsed = time.monotonic() - t0
    if rtt:
        found = sorted(out_dir.glob(f"{Path(scenario).stem}_{p.pid}_rtt.csv"))
        if found:
            files["rtt"] = found[0]
    return SippResult(name, p.returncode, elapsed, timed_out, read_sipp_stats(files["stats"]), files)


class Uas:
    """A sipp UAS running in the background; stop() ends it and collects its statistics."""

    def __init__(self, ns: str, scenario: str, local_ip: str, port: int, out_dir: Path, name: str,
                 *, trace_msg: bool = True, extra: list[str] | None = None):
        self.ns, self.ip, self.port, self.name = ns, local_ip, port, name
        argv, self.files = sipp_argv(scenario, local_ip, port, out_dir, name, trace_msg=trace_msg,
                                     extra=extra)
        self._out = open(self.files["stdout"], "wb")
        self.proc = spawn(nsexec(ns, argv), stdout=self._out, stderr=subprocess.STDOUT, cwd=out_dir)
        if not wait_udp_listen(ns, local_ip, port, 5.0):
            self.stop()
            raise RuntimeError(f"sipp UAS {name} did not bind {local_ip}:{port}:\n"
                               + tail(self.files["stdout"], 20))

    def stop(self, linger: float = 0.5) -> SippResult:
        time.sleep(linger)  # let the last retransmissions/ACKs arrive
        t0 = time.monotonic()
        p = self.proc
        if p.poll() is None:
            # SIGUSR1 once: no new calls; twice: abort the open ones and exit (writing statistics).
            for _ in range(2):
                try:
                    p.send_signal(signal.SIGUSR1)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        stop_process(p, signal.SIGTERM, grace=3.0)
        self._out.close()
        return SippResult(self.name, p.returncode, time.monotonic() - t0, False,
                          read_sipp_stats(self.files["stats"]), self.files)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None or not self._out.closed:
            self.stop(linger=0)
        return False


def rtt_values_ms(path: Path) -> list[float]:
    """Response times (ms) from a sipp -trace_rtt file: 'Date_ms;response_time_ms;rtd_no' rows."""
    vals = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    try:
                        vals.append(float(parts[1]))
                    except ValueError:
                        pass
    except OSError:
        pass
    return vals


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ----------------------------------------------------------------------------------------------
# sipsend.py helper (one-shot UDP sends from inside a namespace)
# ----------------------------------------------------------------------------------------------

def sipsend(ns: str, args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(nsexec(ns, [sys.executable, SIPSEND] + args), capture_output=True,
                          text=True, timeout=timeout)


def options_status(ns: str = "carrier", bind: str = CARRIER_IP, to: str = SBC_PRIV,
                   timeout: float = 1.0) -> list[str]:
    """Send one OPTIONS; return the status lines received."""
    r = sipsend(ns, ["options", "--bind", bind, "--to", to, "--timeout", str(timeout)])
    return [line.split(" ", 2)[2] for line in r.stdout.splitlines() if line.startswith("REPLY ")]


# ----------------------------------------------------------------------------------------------
# tcpdump + pcap parsing
# ----------------------------------------------------------------------------------------------

class Capture:
    """tcpdump on `iface` in `ns` into `path`; `filter` is a pcap filter expression (None or ""
    captures everything, ARP included)."""

    def __init__(self, ns: str, iface: str, path: Path, filter: str | None = "udp"):
        self.path = path
        self._log = open(str(path) + ".log", "wb")
        argv = ["tcpdump", "-i", iface, "-n", "-s", "0", "-U", "-Z", "root", "-w", path]
        if filter:
            argv.append(filter)
        self.proc = spawn(nsexec(ns, argv), stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size >= 24:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("tcpdump exited: " + tail(str(path) + ".log", 10))
            time.sleep(0.1)
        time.sleep(0.3)

    def stop(self) -> None:
        time.sleep(0.3)
        stop_process(self.proc, signal.SIGINT, grace=3.0)
        self._log.close()


def pcap_frames(path: Path):
    """Yield (ts, ethertype, layer-3 bytes) for every frame of a pcap file (Ethernet, Linux
    cooked or raw IPv4 link type)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        ts_s, ts_f, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        if linktype == 1:  # Ethernet
            if len(pkt) < 14:
                continue
            etype = struct.unpack("!H", pkt[12:14])[0]
            l3 = pkt[14:]
            if etype == 0x8100 and len(pkt) >= 18:
                etype = struct.unpack("!H", pkt[16:18])[0]
                l3 = pkt[18:]
        elif linktype == 113:  # Linux cooked
            if len(pkt) < 16:
                continue
            etype = struct.unpack("!H", pkt[14:16])[0]
            l3 = pkt[16:]
        elif linktype in (101, 228):  # raw IPv4
            etype, l3 = 0x0800, pkt
        else:
            continue
        yield ts_s + ts_f / (1e9 if nano else 1e6), etype, l3


def _ip4(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def pcap_addresses(path: Path):
    """Yield (ts, kind, src, dst) for every IPv4 packet (kind "ip/<protocol number>": the
    addresses of its IP header) and every ARP packet (kind "arp": sender and target protocol
    addresses) of a pcap file; kind "other/<ethertype hex>" for anything else (src, dst None)."""
    for ts, etype, l3 in pcap_frames(path):
        if etype == 0x0800 and len(l3) >= 20:
            yield ts, f"ip/{l3[9]}", _ip4(l3[12:16]), _ip4(l3[16:20])
        elif etype == 0x0806 and len(l3) >= 28:
            yield ts, "arp", _ip4(l3[14:18]), _ip4(l3[24:28])
        else:
            yield ts, f"other/{etype:04x}", None, None


def read_pcap_udp(path: Path):
    """Yield (ts, src, sport, dst, dport, payload) for every UDP/IPv4 datagram of a pcap file
    (Ethernet or Linux cooked link type; IPv4 fragments are reassembled)."""
    frags: dict = {}
    for ts, etype, l3 in pcap_frames(path):
        if etype != 0x0800 or len(l3) < 20:
            continue
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        ident = struct.unpack("!H", l3[4:6])[0]
        flags_frag = struct.unpack("!H", l3[6:8])[0]
        proto = l3[9]
        src = ".".join(str(b) for b in l3[12:16])
        dst = ".".join(str(b) for b in l3[16:20])
        body = l3[ihl:total]
        if proto != 17:
            continue
        more = bool(flags_frag & 0x2000)
        frag_off = (flags_frag & 0x1FFF) * 8
        if more or frag_off:
            key = (src, dst, ident)
            parts = frags.setdefault(key, {})
            parts[frag_off] = body
            if not more:
                parts["end"] = frag_off + len(body)
            if "end" in parts:
                buf, pos = b"", 0
                while pos in parts:
                    buf += parts[pos]
                    pos += len(parts[pos])
                if pos == parts["end"]:
                    del frags[key]
                    body = buf
                else:
                    continue
            else:
                continue
        if len(body) < 8:
            continue
        sport, dport = struct.unpack("!HH", body[:4])
        yield ts, src, sport, dst, dport, body[8:]


def setup_latencies_from_pcap(path: Path, uac_ip: str) -> list[float]:
    """INVITE -> 200 (CSeq INVITE) latency in ms per Call-ID, seen at the UAC's interface.
    Uses the first transmission of the initial INVITE and the first 200 for it."""
    sent: dict[bytes, float] = {}
    done: dict[bytes, float] = {}
    callid_re = re.compile(rb"\r\n(?:Call-ID|i)\s*:\s*([^\r\n]+)", re.I)
    cseq_re = re.compile(rb"\r\nCSeq\s*:\s*\d+\s+INVITE", re.I)
    for ts, src, _sp, dst, _dp, payload in read_pcap_udp(path):
        m = callid_re.search(payload)
        if not m or not cseq_re.search(payload):
            continue
        cid = m.group(1).strip()
        if src == uac_ip and payload.startswith(b"INVITE "):
            sent.setdefault(cid, ts)
        elif dst == uac_ip and payload.startswith(b"SIP/2.0 200"):
            if cid in sent and cid not in done:
                done[cid] = ts
    return [(done[c] - sent[c]) * 1000.0 for c in done]


# ----------------------------------------------------------------------------------------------
# RTP in captures, and private addresses on the public side
# ----------------------------------------------------------------------------------------------

def sipp_pcap(name: str = "g711a.pcap") -> Path:
    """An audio capture sip-tester ships (play_pcap_audio in lab/sipp/uac_rtp*.xml uses
    /usr/share/sip-tester/g711a.pcap: 236 PCMA packets, 30 ms apart, 7 s)."""
    return Path("/usr/share/sip-tester") / name


@dataclass(frozen=True)
class RtpPkt:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    pt: int
    seq: int
    ssrc: int
    payload: bytes          # the whole RTP packet (header included)

    @property
    def key(self) -> tuple[int, int]:
        return self.ssrc, self.seq


def rtp_packets(path: Path) -> list[RtpPkt]:
    """Every UDP datagram of a capture that looks like RTP (version 2, not RTCP). SIP text never
    does: its first byte is a letter (version bits 01)."""
    out = []
    for ts, src, sport, dst, dport, data in read_pcap_udp(path):
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76:
            continue
        seq, = struct.unpack("!H", data[2:4])
        ssrc, = struct.unpack("!I", data[8:12])
        out.append(RtpPkt(ts, src, sport, dst, dport, data[1] & 0x7F, seq, ssrc, data))
    return out


def rtp_flow(pkts: list[RtpPkt], src: tuple[str, int | None], dst: tuple[str, int | None],
             since: float | None = None) -> list[RtpPkt]:
    """The packets from src to dst ((ip, port); port None: any), at or after `since`."""
    return [p for p in pkts
            if p.src == src[0] and (src[1] is None or p.sport == src[1])
            and p.dst == dst[0] and (dst[1] is None or p.dport == dst[1])
            and (since is None or p.ts >= since)]


def private_sip_leaks(path: Path) -> tuple[int, list[tuple]]:
    """Private (10.x) addresses in the UDP payloads of a capture: every line of each SIP message
    (headers and SDP), and non-SIP payloads as a whole. Returns (number of SIP messages,
    [(ts, src, sport, dst, dport, first line or "<non-SIP payload>", offending line)])."""
    sip, leaks = 0, []
    for ts, src, sport, dst, dport, payload in read_pcap_udp(path):
        if not (payload.startswith(b"SIP/2.0 ") or re.match(rb"^[A-Z]+ \S+ SIP/2\.0\r\n", payload)):
            m = PRIVATE_RE.search(payload)
            if m:
                leaks.append((ts, src, sport, dst, dport, "<non-SIP payload>", m.group().decode()))
            continue
        sip += 1
        for line in payload.split(b"\r\n"):
            if PRIVATE_RE.search(line):
                first = payload.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                leaks.append((ts, src, sport, dst, dport, first, line.decode("utf-8", "replace")))
    return sip, leaks


def private_header_leaks(path: Path, prefix: str = "10.") -> tuple[int, list[tuple]]:
    """Packets of a capture whose IPv4 header (or ARP sender/target) has an address starting
    with `prefix`. Returns (packets looked at, [(ts, kind, src, dst)])."""
    n, bad = 0, []
    for ts, kind, src, dst in pcap_addresses(path):
        n += 1
        if (src or "").startswith(prefix) or (dst or "").startswith(prefix):
            bad.append((ts, kind, src, dst))
    return n, bad
