#!/usr/bin/env python3
"""What cluster-wide admission costs a call's setup (issue 17): the time from a carrier's INVITE
to the gateway's receipt of it, through an SBC counting the tenant's limits itself (the
reference) and through one asking Redis for every new call (`[cluster] redis`), measured in the
same run, in a network namespace of its own with only loopback.

    python3 perf/cluster_admission.py [--calls 500] [--rate 3000] [--sipload 6000] [--sbc ...]  (root)

Each call: INVITE of tenant acme (limits far above the load), the gateway answers 486, the
carrier ACKs; one call at a time, so the figure is latency, not throughput. Reported: p50, p90,
p99 and mean in µs for each SBC, and the cluster's added p50 and ratio. Output: a Markdown table
on stdout and in lab-out/perf-*/cluster-admission.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NS = "sbc-perf-cl"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sbc(binary: Path, d: Path, name: str, extra: str) -> tuple[subprocess.Popen, int, str]:
    priv, pub, api = free_port(), free_port(), free_port()
    cfg = d / f"{name}.toml"
    cfg.write_text(
        f'[sip]\nprivate = "127.0.0.1:{priv}"\npublic = "127.0.0.1:{pub}"\n'
        f'[media]\nport_min = {10000 + 25000 * (name == "cluster")}\nport_max = {34999 + 25000 * (name == "cluster")}\n'
        f'[database]\nurl = "sqlite://{d / (name + ".db")}"\n[journal]\npath = "{d / (name + "-calls.db")}"\n'
        f'[api]\nlisten = "127.0.0.1:{api}"\n[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[log]\nlevel = "warn"\n{extra}')
    p = subprocess.Popen([str(binary), "run", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                         stderr=open(d / f"{name}.log", "wb"))
    url = f"http://127.0.0.1:{api}"
    ctl = binary.parent / "sbcctl"
    deadline = time.monotonic() + 10
    while subprocess.run([ctl, "--api", url, "ping"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit(f"{name} did not start:\n{(d / (name + '.log')).read_text()[-2000:]}")
        time.sleep(0.1)
    return p, priv, url


def provision(binary: Path, url: str, gw: int) -> None:
    ctl = binary.parent / "sbcctl"
    for args in (["add-carrier", "127.0.0.1", "32", "carrier", "1"],
                 ["add-gateway", "1", f"sip:127.0.0.1:{gw}", "gw", "1", "1"],
                 ["add-tenant", "acme", "127.0.0.1", "1", "100000", "100000"]):
        subprocess.run([ctl, "--api", url, *args], check=True, capture_output=True)


def measure(priv: int, gw_port: int, calls: int, tag: str) -> list[float]:
    """µs from each INVITE sent to its arrival at the gateway, one call at a time."""
    car = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    car.bind(("127.0.0.1", 0))
    gw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gw.bind(("127.0.0.1", gw_port))
    for s in (car, gw):
        s.settimeout(2)
    me = car.getsockname()
    sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
    out = []
    for i in range(calls):
        cid = f"{tag}{i}"
        inv = (f"INVITE sip:15551234567@127.0.0.1:{priv} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{cid}\r\nMax-Forwards: 70\r\n"
               f"From: <sip:100@{me[0]}>;tag={cid}\r\nTo: <sip:15551234567@127.0.0.1>\r\n"
               f"Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me[0]}:{me[1]}>\r\n"
               f"X-Tenant-ID: acme\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        t0 = time.perf_counter_ns()
        car.sendto(inv.encode(), ("127.0.0.1", priv))
        while True:
            data, sbc = gw.recvfrom(65535)
            if data.startswith(b"INVITE "):
                break
        out.append((time.perf_counter_ns() - t0) / 1000)
        text = data.decode(errors="replace")
        heads = [l for l in text.split("\r\n") if l.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
        resp = "SIP/2.0 486 Busy Here\r\n" + "\r\n".join(
            h + (";tag=g" if h.startswith("To:") else "") for h in heads) + "\r\nContent-Length: 0\r\n\r\n"
        gw.sendto(resp.encode(), sbc)
        while True:
            data, _ = car.recvfrom(65535)
            if data.startswith(b"SIP/2.0 486"):
                break
        to = next(l for l in data.decode().split("\r\n") if l.startswith("To:"))
        ack = (f"ACK sip:15551234567@127.0.0.1:{priv} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{cid}\r\nMax-Forwards: 70\r\n"
               f"From: <sip:100@{me[0]}>;tag={cid}\r\n{to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\n"
               f"Content-Length: 0\r\n\r\n")
        car.sendto(ack.encode(), ("127.0.0.1", priv))
    car.close()
    gw.close()
    return out



def burst(priv: int, gw_port: int, rate: int, seconds: float, tag: str) -> tuple[int, int, float]:
    """INVITEs offered at `rate` a second for `seconds` (paced per millisecond), the gateway
    silent (counting distinct Call-IDs; the SBC's retransmissions are not counted twice). No SDP
    (a delayed offer): the relay's ports do not bound the count.
    Returns (offered, reached the gateway, seconds from the first INVITE to the last arrival)."""
    car = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    car.bind(("127.0.0.1", 0))
    car.setblocking(False)
    gw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    gw.bind(("127.0.0.1", gw_port))
    gw.settimeout(0.5)
    me = car.getsockname()
    seen: set = set()
    last = [0.0]

    def receive():
        while True:
            try:
                data, _ = gw.recvfrom(65535)
            except (socket.timeout, OSError):
                return
            if data.startswith(b"INVITE "):
                cid = next((l for l in data.split(b"\r\n") if l.startswith(b"Call-ID:")), b"")
                if cid not in seen:
                    seen.add(cid)
                    last[0] = time.perf_counter()

    import threading
    rx = threading.Thread(target=receive)
    rx.start()
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        while time.perf_counter() < due:
            pass
        cid = f"{tag}{i}"
        inv = (f"INVITE sip:15551234567@127.0.0.1:{priv} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{cid}\r\nMax-Forwards: 70\r\n"
               f"From: <sip:100@{me[0]}>;tag={cid}\r\nTo: <sip:15551234567@127.0.0.1>\r\n"
               f"Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me[0]}:{me[1]}>\r\n"
               "X-Tenant-ID: acme\r\nContent-Length: 0\r\n\r\n")
        try:
            car.sendto(inv.encode(), ("127.0.0.1", priv))
        except BlockingIOError:
            pass
    rx.join()
    car.close()
    gw.close()
    return total, len(seen), (last[0] or t0) - t0


def sipload(priv: int, gw_port: int, rate: int, seconds: float, d: Path, tag: str) -> dict:
    """`sipload uas` on the gateway's port and `sipload uac` at `rate` calls/s for `seconds`
    (held 100 ms) against the SBC; the UAC's JSON report."""
    binary = REPO / "target" / "release" / "sipload"
    uas = subprocess.Popen([binary, "uas", "--bind", f"127.0.0.1:{gw_port}", "--seconds",
                            str(seconds + 40)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        r = subprocess.run([binary, "uac", "--bind", f"127.0.0.1:{free_port()}", "--target",
                            f"127.0.0.1:{priv}", "--rate", str(rate), "--seconds", str(seconds),
                            "--hold-ms", "100", "--max-wall", str(seconds + 20)],
                           capture_output=True, text=True, timeout=seconds + 60)
        (d / f"sipload-{tag}.json").write_text(r.stdout)
        return json.loads(r.stdout) if r.stdout.strip() else {"error": r.stderr[-500:]}
    finally:
        uas.terminate()
        uas.wait(5)


def pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def inner(args) -> int:
    binary = Path(args.sbc).resolve()
    d = Path(tempfile.mkdtemp(prefix="sbc-perf-cl-"))
    procs = []
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(d / "r.sock"),
                                  "--save", "", "--appendonly", "no", "--dir", str(d)],
                                 stdout=subprocess.DEVNULL)
        procs.append(redis)
        while not (d / "r.sock").exists():
            time.sleep(0.05)
        rows: dict = {}
        bursts: dict = {}
        loads: dict = {}
        for tag, extra in (("local", ""),
                           ("cluster", f'[cluster]\nnode_id = "perf"\nredis = "redis+unix://{d / "r.sock"}"\n')):
            p, priv, url = start_sbc(binary, d, tag, extra)
            procs.append(p)
            gw_port = free_port()
            provision(binary, url, gw_port)
            measure(priv, gw_port, 50, tag + "w")  # warm-up
            rows[tag] = measure(priv, gw_port, args.calls, tag)
            if args.rate:
                bursts[tag] = burst(priv, gw_port, args.rate, 2.0, tag + "b")
            if args.sipload:
                loads[tag] = sipload(priv, gw_port, args.sipload, 3.0, d, tag)
        table = ["| admission | calls | p50 µs | p90 µs | p99 µs | mean µs |", "|---|---:|---:|---:|---:|---:|"]
        for tag, v in rows.items():
            name = "per node (reference)" if tag == "local" else "cluster (Redis ask)"
            table.append(f"| {name} | {len(v)} | {pct(v, .5):.0f} | {pct(v, .9):.0f} | {pct(v, .99):.0f} | "
                         f"{statistics.mean(v):.0f} |")
        a, b = pct(rows["local"], .5), pct(rows["cluster"], .5)
        table.append(f"\nThe cluster's ask adds {b - a:.0f} µs at p50 ({b / a:.2f}x the reference).")
        if bursts:
            table += ["", f"Offered {args.rate} INVITEs/s for 2 s (gateway silent):", "",
                      "| admission | offered | reached the gateway | in s | per s |", "|---|---:|---:|---:|---:|"]
            for tag, (n, got, secs) in bursts.items():
                name = "per node (reference)" if tag == "local" else "cluster (Redis ask)"
                table.append(f"| {name} | {n} | {got} | {secs:.2f} | {got / secs if secs else 0:.0f} |")
        for tag, rep in loads.items():
            table.append(f"\nsipload {args.sipload} calls/s for 3 s, {tag}: " + json.dumps(rep))
        text = "\n".join(table)
        print(text)
        out = REPO / "lab-out" / f"perf-{time.strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "cluster-admission.md").write_text(text + "\n")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--sipload", type=int, default=0,
                    help="also place calls at this rate for 3 s with sipload (target/release/sipload)")
    ap.add_argument("--rate", type=int, default=0,
                    help="also offer this many INVITEs a second for 2 s to each (0: not)")
    ap.add_argument("--sbc", default=str(REPO / "target" / "release" / "sbc"))
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner(args)
    if os.geteuid() != 0:
        raise SystemExit("needs root (ip netns)")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--inner",
                               "--calls", str(args.calls), "--rate", str(args.rate), "--sipload", str(args.sipload), "--sbc", args.sbc]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
