"""Tests of topology hiding and message hygiene: no private address on the public side while calls
of every kind cross the SBC (no_private_leak), and the RFC 4475 torture messages over UDP, each
accepted, rejected with its code or dropped as the corpus expects (rfc4475)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kit.addresses import CARRIER_IP, SBC_PRIV
from kit.calls import CALL_KINDS, call_test, wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.paths import REPO
from kit.pcap import Capture, private_header_leaks, private_sip_leaks
from kit.provisioning import BASE_CARRIERS, Provisioned
from kit.registry import lab_test
from kit.sip import options_status, sipsend

# The calls no_private_leak captures: every call kind, fewer calls than the signalling tests make.
LEAK_CALLS = {"inbound": dict(calls=30, rate=30, limit=30, duration_ms=1000),
              "outbound": dict(calls=20, rate=20, limit=20, duration_ms=1000),
              "cancel": dict(calls=5, rate=5, timeout_s=40),
              "reinvite_both": dict(calls=5, rate=5, timeout_s=60)}


@lab_test
def no_private_leak(ctx: Ctx):
    """pub0 captured while the calls of LEAK_CALLS cross the SBC (in and out with hold re-INVITEs,
    CANCEL, re-INVITEs from both sides): no 10.x address in any IP header, nor in the text of any
    SIP message (headers and SDP)."""
    capture = Capture("sbc", "pub0", ctx.tdir("no_private_leak") / "pub0.pcap")
    try:
        for kind, volume in LEAK_CALLS.items():
            call_test(ctx, f"no_private_leak/{kind}", **CALL_KINDS[kind], **volume)
        wait_calls_down(ctx)
    finally:
        capture.stop()
    calls = ",".join(LEAK_CALLS)
    pcap = capture.path
    sip, leaks = private_sip_leaks(pcap)
    check(sip > 0, f"no SIP packets captured on pub0 ({pcap})")
    n, bad = private_header_leaks(pcap)
    check(not bad, f"{len(bad)} of {n} packets on pub0 carry a 10.x address in the IP header "
                   f"(calls {calls}): "
                   + "; ".join(f"{k} {s} -> {d}" for _, k, s, d in bad[:8]))
    if leaks:
        by_hdr: dict[str, int] = {}
        for leak in leaks:
            line = leak[6]
            hdr = line[:2] if re.match(r"^[a-z]=", line) else line.split(":", 1)[0][:20]
            by_hdr[hdr] = by_hdr.get(hdr, 0) + 1
        sample = "\n".join(f"  {s}:{sp} -> {d}:{dp}  [{first}]  {line}"
                           for _, s, sp, d, dp, first, line in leaks[:15])
        raise TestFailure(f"{len(leaks)} private-address occurrences in {sip} SIP packets on pub0 "
                          f"(calls {calls}; by header: {by_hdr}); pcap {pcap}\n{sample}")
    print(f"  ({sip} SIP packets on pub0 checked)", flush=True)


def rfc4475_dir() -> Path | None:
    cand = [REPO.parent / "shared" / "rfc4475"]
    if os.environ.get("RFC4475_DIR"):
        cand.append(Path(os.environ["RFC4475_DIR"]))
    for c in cand:
        if (c / "EXPECTED.tsv").exists():
            return c
    return None


@lab_test
def rfc4475(ctx: Ctx):
    d = rfc4475_dir()
    check(d is not None, "RFC 4475 corpus not found (../shared/rfc4475 or $RFC4475_DIR)")
    rows = []
    with open(d / "EXPECTED.tsv") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    files = [r["file"] for r in rows]
    # The INVITEs the SBC accepts go to a gateway that does not exist: their
    # retransmissions (Timer A, 32 s) must not reach the UAS a later test starts
    # on a real gateway, which would answer them as new calls.
    with Provisioned(ctx, BASE_CARRIERS, ["sip:203.0.113.99:5060"]):
        r = sipsend("carrier", ["batch", "--bind", CARRIER_IP, "--to", SBC_PRIV, "--dir", str(d),
                                "--timeout", "0.5"] + files, timeout=len(files) * 1.0 + 30)
    (ctx.tdir("rfc4475") / "replies.jsonl").write_text(r.stdout)
    got = {}
    for line in r.stdout.splitlines():
        j = json.loads(line)
        if "file" in j:
            got[j["file"]] = j
    table, bad = [], 0
    for row in rows:
        fn, verdict = row["file"], row["proxy_verdict"]
        res = got.get(fn)
        if res is None:
            table.append((fn, verdict, "-", "NOT SENT"))
            bad += 1
            continue
        replies = [x for x in res["replies"] if x["callid_match"]]
        codes = [x["status"] for x in replies]
        desc = ",".join(f"{x['status'] or '?'}{'' if x['symmetric'] else '@' + str(x['to_port'])}"
                        for x in replies) or "none"
        if res.get("send_error"):
            desc += f" (send error: {res['send_error']})"
        if verdict == "accept":
            ok = 400 not in codes
        elif verdict == "drop":
            ok = not replies
        elif verdict.startswith("reject-"):
            ok = int(verdict.split("-", 1)[1]) in codes
        else:
            ok = False
            desc += " (unknown verdict)"
        if not ok:
            bad += 1
        table.append((fn, verdict, desc, "ok" if ok else "MISMATCH"))
    alive = ctx.sbc.alive()
    opts = options_status() if alive else []
    opts_ok = any(s.startswith("SIP/2.0 200") for s in opts)
    if bad or not alive or not opts_ok:
        w = max(len(t[0]) for t in table)
        lines = [f"  {'file':<{w}}  {'expected':<11} {'replies (code[@port if not symmetric])':<40} result"]
        lines += [f"  {fn:<{w}}  {v:<11} {desc:<40} {res}" for fn, v, desc, res in table]
        why = []
        if bad:
            why.append(f"{bad}/{len(rows)} messages with the wrong outcome")
        if not alive:
            why.append(f"SBC died (exit {ctx.sbc.proc.returncode})")
        elif not opts_ok:
            why.append(f"OPTIONS afterwards: {opts}")
        raise TestFailure("; ".join(why) + "\n" + "\n".join(lines))
