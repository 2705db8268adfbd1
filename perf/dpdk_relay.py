#!/usr/bin/env python3
"""The DPDK relay ceiling: RTP packets per second on one lcore, against dpdk-testpmd.

    python3 perf/dpdk_relay.py [--flows 1000,10000,100000] [--seconds 10]     (as root)

For each flow count N: `dpdk_relay write-pcap` writes a capture of N RTP packets (one per flow,
PCMA-sized); `dpdk-testpmd` io-forwards it from a `net_pcap` vdev replaying it forever
(`infinite_rx=1`) to a `net_null` vdev (`no-rx=1`) on one forwarding lcore: the framework's
ceiling on this machine; then `dpdk_relay run` pushes the same capture through our poll loop
(classify, relay verdict with N sessions installed, in-place readdressing, tx) on one lcore.
Both use EAL with --no-huge --no-pci. Reported: Mpps, ns per packet, our ratio to testpmd, and
the session table's memory. Output: a Markdown table on stdout and in lab-out/perf-*/dpdk-relay.md.
Needs `cargo build --release -p sbc-perf --features dpdk --bin dpdk_relay` and the Debian
package dpdk-dev (dpdk-testpmd).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release" / "dpdk_relay"


def testpmd(pcap: Path, flows: int, seconds: float, out: Path) -> float | None:
    """Mean Rx-pps of port 0 over testpmd's per-second stats, the first second left out."""
    log = out / f"testpmd-{flows}.log"
    argv = ["dpdk-testpmd", "--no-huge", "--no-pci", "-m", "3072", "--no-shconf",
            f"--file-prefix=tp-{os.getpid()}", "-l", "0,1",
            f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1", "--vdev=net_null0,no-rx=1",
            "--log-level=*:warning", "--", "--forward-mode=io", "--auto-start", "--stats-period=1",
            f"--total-num-mbufs={flows + 32768}"]
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        time.sleep(seconds + 2)
        p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    text = log.read_text(errors="replace")
    # Per period, the first "Rx-pps" is port 0's.
    blocks = text.split("Port statistics")
    rates = []
    for b in blocks[1:]:
        m = re.search(r"Rx-pps:\s+(\d+)", b)
        if m:
            rates.append(int(m.group(1)))
    rates = [r for r in rates[1:] if r > 0]
    return sum(rates) / len(rates) if rates else None


def ours(pcap: Path, flows: int, seconds: float, out: Path) -> dict:
    r = subprocess.run([str(BIN), "run", "--flows", str(flows), "--pcap", str(pcap),
                        "--seconds", str(seconds), "--mem", "3072"],
                       capture_output=True, text=True, timeout=seconds + 120)
    (out / f"ours-{flows}.log").write_text(r.stdout + r.stderr)
    # The binary fails (non-zero, drop reasons on stderr) unless it relayed
    # every frame it received: a figure made of drops is no figure.
    if r.returncode != 0:
        raise SystemExit(f"dpdk_relay failed ({r.returncode}) at {flows} flows:\n{r.stdout}\n{r.stderr}")
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            o = json.loads(line)
            if o["relayed"] != o["received"] or not o["received"]:
                raise SystemExit(f"relayed {o['relayed']} of {o['received']} at {flows} flows; "
                                 f"drops: {o.get('drops')}")
            return o
    raise SystemExit(f"dpdk_relay printed no result ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", default="1000,10000,100000")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("EAL needs root")
    if not BIN.exists():
        ap.error(f"{BIN} missing: cargo build --release -p sbc-perf --features dpdk --bin dpdk_relay")
    if not shutil.which("dpdk-testpmd"):
        ap.error("dpdk-testpmd missing: apt-get install dpdk-dev")
    flows = [int(x) for x in args.flows.split(",")]
    if any(n < 1 or n > 200_000 for n in flows) or args.seconds > 120:
        ap.error("keep it bounded: 1..200000 flows, at most 120 s")
    out = REPO / "lab-out" / time.strftime("perf-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in flows:
        pcap = out / f"rtp-{n}.pcap"
        subprocess.run([str(BIN), "write-pcap", "--flows", str(n), str(pcap)], check=True)
        ref = testpmd(pcap, n, args.seconds, out)
        o = ours(pcap, n, args.seconds, out)
        rows.append((n, ref, o))
        pcap.unlink(missing_ok=True)
        print(f"{n} flows: testpmd {ref}, ours {o}", flush=True)
    lines = [f"One lcore each, EAL --no-huge --no-pci, {args.seconds:.0f} s per run; host: "
             f"{os.cpu_count()} CPUs.", "",
             "| sessions | dpdk-testpmd io fwd (reference) | our relay | ratio | ns per packet (ours) "
             "| session table |", "|---|---|---|---|---|---|"]
    for n, ref, o in rows:
        ratio = o["mpps"] * 1e6 / ref if ref else None
        lines.append(f"| {n:,} | {ref / 1e6:.2f} Mpps | {o['mpps']:.2f} Mpps | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} | {o['ns_per_packet']:.1f} | "
                     f"{o['table_mib']:.1f} MiB |" if ref else
                     f"| {n:,} | - | {o['mpps']:.2f} Mpps | - | {o['ns_per_packet']:.1f} | {o['table_mib']:.1f} MiB |")
    report = "\n".join(lines)
    print(report, flush=True)
    (out / "dpdk-relay.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
