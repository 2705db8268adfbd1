#!/usr/bin/env python3
"""Signalling benchmark in the namespace lab: calls per second through the SBC.

    sudo python3 perf/cps_lab.py [--sbc target/release/sbc] [--rate 200] [--calls 10000]

1. Reference run, no SBC: sipp UAC (ns carrier, 10.0.1.10) -> sipp UAS (ns sbc, 10.0.0.100:5070),
   the baseline latency of sipp and the veth path itself.
2. SBC run: UAC (ns carrier) -> SBC 10.0.0.100:5060 -> UAS (ns gw, 203.0.113.10:5060).
Both use lab/sipp/uac_simple.xml / uas_simple.xml (INVITE/100/180/200/ACK, pause, BYE/200).

Reported: calls completed/failed, SBC CPU time per call (utime+stime of the SBC process from
/proc/PID/stat, all threads), call-setup latency INVITE->200 at the UAC as p50/p90/p99 both from
sipp's -trace_rtt (1 ms resolution) and from a capture on the UAC's interface (microseconds),
and the SBC's peak RSS (VmHWM). Output: a Markdown table on stdout and in lab-out/perf-*/report.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))
from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP  # noqa: E402
from kit.netns import Lab  # noqa: E402
from kit.paths import DEFAULT_SBC, new_run_dir  # noqa: E402
from kit.pcap import Capture, setup_latencies_from_pcap  # noqa: E402
from kit.proc import run_main  # noqa: E402
from kit.provisioning import provision_base  # noqa: E402
from kit.sbc import Sbc  # noqa: E402
from kit.sipp import Uas, percentile, rtt_values_ms, run_uac  # noqa: E402


def fmt(v, digits=2):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def pcts(values):
    return [percentile(values, q) for q in (0.5, 0.9, 0.99)]


def run_one(key, label, out: Path, *, uas_ns, uas_ip, uas_port, target, args, sbc: Sbc | None):
    d = out / key
    d.mkdir(exist_ok=True)
    cap = None if args.no_pcap else Capture("carrier", "c0", d / "c0.pcap")
    timeout_s = int(args.calls / args.rate + args.duration_ms / 1000 + 60)
    cpu0 = sbc.cpu_seconds() if sbc else None
    with Uas(uas_ns, "uas_simple", uas_ip, uas_port, d, "uas", trace_msg=False) as uas:
        t0 = time.monotonic()
        r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, target, d, "uac",
                    calls=args.calls, rate=args.rate, limit=args.limit,
                    duration_ms=args.duration_ms, timeout_s=timeout_s, trace_msg=False, rtt=True)
        wall = time.monotonic() - t0
        uas.stop()
    cpu1 = sbc.cpu_seconds() if sbc else None
    if cap:
        cap.stop()
    row = {
        "run": label,
        "ok": r.successful,
        "failed": r.failed,
        "rc": r.rc,
        "wall": wall,
        "cps": r.successful / wall if wall > 0 else None,
        "cpu": (cpu1 - cpu0) if sbc else None,
        "cpu_ms_call": ((cpu1 - cpu0) * 1000 / max(1, r.successful + r.failed)) if sbc else None,
        "hwm_mb": (sbc.status_kb("VmHWM") or 0) / 1024 if sbc else None,
        "rtt": pcts(rtt_values_ms(r.files["rtt"])) if r.files.get("rtt") else [None] * 3,
        "pcap": [None] * 3,
        "pcap_n": 0,
    }
    if cap:
        lat = setup_latencies_from_pcap(cap.path, CARRIER_IP)
        row["pcap"], row["pcap_n"] = pcts(lat), len(lat)
        if not args.keep_pcap:
            cap.path.unlink(missing_ok=True)
    if r.rc != 0 or r.failed:
        print(r.diagnostics(20), file=sys.stderr, flush=True)
    return row


def table(rows, args) -> str:
    head = ("| run | calls ok | failed | wall s | calls/s (ok/wall) | SBC CPU s | SBC CPU ms/call "
            "| setup p50/p90/p99 ms (sipp rtt) | setup p50/p90/p99 ms (capture) | SBC VmHWM MiB |")
    sep = "|" + "---|" * 10
    lines = [f"Offered load: {args.calls} calls at {args.rate} cps, call hold {args.duration_ms} ms, "
             f"limit {args.limit} concurrent; host: {os.cpu_count()} CPUs.", "", head, sep]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['ok']} | {r['failed']} | {fmt(r['wall'], 1)} | {fmt(r['cps'], 1)} "
            f"| {fmt(r['cpu'], 2)} | {fmt(r['cpu_ms_call'], 3)} "
            f"| {'/'.join(fmt(v, 0) for v in r['rtt'])} "
            f"| {'/'.join(fmt(v, 3) for v in r['pcap'])} "
            f"| {fmt(r['hwm_mb'], 1)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sbc", default=str(DEFAULT_SBC))
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--duration-ms", type=int, default=500, help="call hold time (sipp -d)")
    ap.add_argument("--limit", type=int, default=5000, help="max concurrent calls (sipp -l)")
    ap.add_argument("--no-reference", action="store_true", help="skip the sipp-to-sipp baseline run")
    ap.add_argument("--no-pcap", action="store_true", help="no capture-based latency")
    ap.add_argument("--keep-pcap", action="store_true")
    ap.add_argument("--rust-log", default="warn", help="RUST_LOG for the SBC (default warn)")
    args = ap.parse_args()
    if args.calls > 200000 or args.rate > 5000:
        ap.error("keep the load bounded: at most 200000 calls and 5000 cps")

    out = new_run_dir("perf")
    print(f"output: {out}", flush=True)
    rows = []
    with Lab():
        if not args.no_reference:
            rows.append(run_one("reference", "sipp->sipp (no SBC)", out, uas_ns="sbc", uas_ip=SBC_PRIV_IP,
                                uas_port=5070, target=f"{SBC_PRIV_IP}:5070", args=args, sbc=None))
        sbc = Sbc(args.sbc, out, rust_log=args.rust_log)
        sbc.start()
        provision_base(sbc.api)
        rows.append(run_one("sbc", "through SBC", out, uas_ns="gw", uas_ip=GW1_IP, uas_port=5060,
                            target=SBC_PRIV, args=args, sbc=sbc))
        alive = sbc.alive()
        sbc.stop()
    report = table(rows, args)
    if not alive:
        report += "\n\n**The SBC was not running at the end of the run** (see sbc.log)."
    print(report, flush=True)
    (out / "report.md").write_text(report + "\n")
    return 0 if all(r["failed"] == 0 and r["rc"] == 0 for r in rows) and alive else 1


if __name__ == "__main__":
    run_main(main)
