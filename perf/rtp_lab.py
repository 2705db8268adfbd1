#!/usr/bin/env python3
"""Media benchmark in the namespace lab: RTP packets through the SBC's relay per CPU second.

    sudo python3 perf/rtp_lab.py [--flows 500] [--pps 50] [--seconds 20]

Load: our generator (target/release/rtpload, perf/src/bin/rtpload.rs): `uac` in ns carrier
(10.0.1.10) places `--flows` calls, `uas` in ns gw (203.0.113.10) answers them; each end sends
`--pps` RTP packets per second per call from ONE media socket (batched sendmmsg/recvmmsg),
stamping each packet with its CLOCK_MONOTONIC send time, and measures what it receives (one-way
latency in an hdrhistogram, loss from sequence numbers).

1. Reference: the same flows without signalling through `rtpload forward` in ns sbc, a minimal
   socket relay with the SBC relay's I/O pattern (epoll, recvmmsg, sendmmsg) and no session
   table: the ceiling of a socket relay on this host.
2. SBC: the flows set up with SIP through the SBC and relayed by its media relay.

Reported per run: packets relayed, relay CPU seconds (utime+stime from /proc: the whole SBC
process, and its media-relay thread alone), packets per CPU second, loss, one-way latency
p50/p99 per direction, and the SBC's ratio to the reference. Output: a Markdown table on stdout
and in lab-out/perf-*/rtp-report.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))
from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP  # noqa: E402
from kit.api import provision  # noqa: E402
from kit.netns import Lab  # noqa: E402
from kit.paths import DEFAULT_SBC, REPO, new_run_dir  # noqa: E402
from kit.proc import cpu_seconds, nsexec, run_main, spawn, stop_process, thread_id  # noqa: E402
from kit.sbc import Sbc  # noqa: E402

RTPLOAD = REPO / "target" / "release" / "rtpload"
MEDIA = 7000          # the generator's media port on both ends
SIP = 5062            # the generator's SIP port on both ends
REF_PORT = 30000      # the reference forwarder's first port


def rtpload(ns: str, args: list, out: Path, name: str) -> subprocess.Popen:
    return spawn(nsexec(ns, [RTPLOAD] + [str(a) for a in args]), stdout=subprocess.PIPE,
                 stderr=open(out / f"{name}.err", "wb"))


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def run_pair(out: Path, key: str, args, uac_extra: list, uas_extra: list, on_start=None, on_end=None):
    """Start uas then uac; call on_start/on_end at the uac's RTP START/END lines; return reports."""
    d = out / key
    d.mkdir(exist_ok=True)
    # With SIP the uas ends when every call it answered is hung up; direct, after its --seconds.
    uas_s = args.seconds + 1 if uas_extra else args.seconds + 60
    uas = rtpload("gw", ["uas", "--sip", f"{GW1_IP}:{SIP}", "--media", f"{GW1_IP}:{MEDIA}",
                         "--pps", args.pps, "--seconds", uas_s, "--calls", args.flows]
                  + uas_extra, d, "uas")
    time.sleep(0.3)
    uac = rtpload("carrier", ["uac", "--sip", f"{CARRIER_IP}:{SIP}", "--sbc", SBC_PRIV,
                              "--media", f"{CARRIER_IP}:{MEDIA}", "--calls", args.flows,
                              "--cps", args.cps, "--pps", args.pps, "--seconds", args.seconds]
                  + uac_extra, d, "uac")
    lines = []
    for raw in uac.stdout:
        line = raw.decode().strip()
        lines.append(line)
        if line == "RTP START" and on_start:
            on_start()
        elif line == "RTP END" and on_end:
            on_end()
    uac.wait(timeout=120)
    try:
        uas_out = uas.communicate(timeout=70)[0].decode()
    except subprocess.TimeoutExpired:
        stop_process(uas, grace=1)
        uas_out = ""
    (d / "uac.out").write_text("\n".join(lines) + "\n")
    (d / "uas.out").write_text(uas_out)
    return last_json("\n".join(lines)), last_json(uas_out)


def reference(out: Path, args) -> dict:
    fwd = rtpload("sbc", ["forward", "--a", SBC_PRIV_IP, "--b", SBC_PUB_IP, "--port", REF_PORT,
                          "--flows", args.flows, "--peer-a", f"{CARRIER_IP}:{MEDIA}",
                          "--peer-b", f"{GW1_IP}:{MEDIA}", "--seconds", args.seconds + 600],
                  out, "forward")
    time.sleep(0.5)
    win = {}
    uac, uas = run_pair(out, "reference", args,
                        ["--direct", f"{SBC_PRIV_IP}:{REF_PORT}"],
                        ["--direct", f"{SBC_PUB_IP}:{REF_PORT}"],
                        on_start=lambda: win.setdefault("t0", time.monotonic()),
                        on_end=lambda: win.setdefault("t1", time.monotonic()))
    time.sleep(1.2)  # the forwarder prints its count once a second
    cpu = cpu_seconds(fwd.pid)
    fwd.kill()
    fout = fwd.communicate(timeout=10)[0].decode()
    relayed = last_json(fout).get("relayed", 0)
    return {"run": "reference forwarder (no SBC)", "relayed": relayed, "cpu": cpu, "relay_cpu": cpu,
            "uac": uac, "uas": uas}


def through_sbc(out: Path, args) -> dict:
    sbc = Sbc(args.sbc, out, rust_log="warn")
    sbc.start()
    provision(sbc.api, [(CARRIER_IP, 32, "carrier1", 1)],
              [{"destination": f"sip:{GW1_IP}:{SIP}", "description": "rtpload"}])
    tid = thread_id(sbc.pid, "media-relay")
    win = {}

    def sample(k):
        win[k] = (cpu_seconds(sbc.pid), cpu_seconds(sbc.pid, tid) if tid else 0.0,
                  int(sbc.api.media()["relayed"]), time.monotonic())

    uac, uas = run_pair(out, "sbc", args, [], [], on_start=lambda: sample("start"),
                        on_end=lambda: sample("end"))
    media = sbc.api.media()
    alive = sbc.alive()
    hwm = (sbc.status_kb("VmHWM") or 0) / 1024
    sbc.stop()
    (cpu0, r0, n0, _), (cpu1, r1, n1, _) = win["start"], win["end"]
    return {"run": "through the SBC", "relayed": n1 - n0, "cpu": cpu1 - cpu0, "relay_cpu": r1 - r0,
            "uac": uac, "uas": uas, "media": media, "alive": alive, "hwm_mb": hwm}


def fmt(v, d=1):
    return "-" if v is None else f"{v:,.{d}f}"


def table(rows, args) -> str:
    lines = [f"Load: {args.flows} calls, {args.pps} packets/s each way per call "
             f"({2 * args.flows * args.pps:,} packets/s offered through the relay), "
             f"{args.seconds} s of media; host: {os.cpu_count()} CPUs.", "",
             "| run | packets relayed | CPU s (process) | CPU s (relay thread) | packets per CPU s "
             "(process) | packets per CPU s (relay thread) | lost carrier->gw | lost gw->carrier "
             "| one-way latency carrier->gw p50/p99 us | gw->carrier p50/p99 us |",
             "|" + "---|" * 10]
    for r in rows:
        up, down = r["uas"].get("rx", {}), r["uac"].get("rx", {})
        r["pps_cpu"] = r["relayed"] / r["cpu"] if r["cpu"] else None
        r["pps_relay_cpu"] = r["relayed"] / r["relay_cpu"] if r["relay_cpu"] else None

        def lat(x):
            lu = x.get("latency_us", {})
            return f"{lu.get('p50', '-')}/{lu.get('p99', '-')}"

        def loss(x):
            return f"{x.get('lost', '-')} of {x.get('expected', '-')}"

        lines.append(f"| {r['run']} | {r['relayed']:,} | {fmt(r['cpu'], 2)} | {fmt(r['relay_cpu'], 2)} "
                     f"| {fmt(r['pps_cpu'], 0)} | {fmt(r['pps_relay_cpu'], 0)} | {loss(up)} | {loss(down)} "
                     f"| {lat(up)} | {lat(down)} |")
    if len(rows) == 2 and rows[0].get("pps_cpu") and rows[1].get("pps_cpu"):
        lines += ["", f"SBC / reference, packets per CPU second (process): "
                      f"{rows[1]['pps_cpu'] / rows[0]['pps_cpu']:.2f}"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sbc", default=str(DEFAULT_SBC))
    ap.add_argument("--flows", type=int, default=500)
    ap.add_argument("--pps", type=int, default=50)
    ap.add_argument("--cps", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    if args.flows > 10000 or args.pps > 1000 or args.seconds > 300:
        ap.error("keep the load bounded: at most 10000 flows, 1000 pps each, 300 s")
    if not RTPLOAD.exists():
        ap.error(f"{RTPLOAD} missing: cargo build --release -p sbc-perf --bin rtpload")
    out = new_run_dir("perf")
    print(f"output: {out}", flush=True)
    rows = []
    with Lab():
        if not args.no_reference:
            rows.append(reference(out, args))
        rows.append(through_sbc(out, args))
    report = table(rows, args)
    sbc_row = rows[-1]
    if not sbc_row.get("alive"):
        report += "\n\n**The SBC was not running at the end of the run** (see sbc.log)."
    report += f"\n\nSBC media counters at the end: {json.dumps(sbc_row.get('media'))}; " \
              f"peak RSS {fmt(sbc_row.get('hwm_mb'))} MiB."
    print(report, flush=True)
    (out / "rtp-report.md").write_text(report + "\n")
    (out / "rtp-report.json").write_text(json.dumps(rows, indent=1, default=str))
    return 0 if sbc_row.get("alive") else 1


if __name__ == "__main__":
    run_main(main)
