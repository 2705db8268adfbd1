"""The flood and scanner guard in front of the SIP engine (issue 15; [flood], [sip] max_message),
on either backend:

  flood_scanner_banned_carrier_calls_complete
        Three attacker addresses are added to ns carrier for the test (10.0.1.66/.67/.68 on c0;
        not carriers: the allowlist is 10.0.1.10/32). For 6 s .66 floods 10.0.0.100:5060 with
        INVITEs carrying `User-Agent: friendly-scanner` at 1,000/s, .67 scans extensions 100,
        101, ... with SIPVicious-style OPTIONS (friendly-scanner) at 500/s, and .68 floods plain
        INVITEs (no User-Agent) at 400/s, while the real carrier 10.0.1.10 places 100 calls at
        20/s (sipp uac_simple, held 0.5 s) to the sipp UAS on gateway .10. Asserted: every
        carrier call completes (at least 99.5 %), setup (INVITE to 200, sipp -trace_rtt) p99
        under 500 ms (the goal is 250 ms; the figure is printed); the scanners get no answer at
        all, the plain flooder at most 16 (its first window: 403s); GET /api/v1/bans, polled
        during the flood, lists .66 and .67 as "scanner" and .68 as "flood" within 2 s of their
        first packet; sip.dropped_scanner went up by >= 2, dropped_flood by >= 1, dropped_banned
        by >= 90 % of what the attackers sent; bans by >= 3; the gateway received the carrier's
        100 INVITEs and not one of the attackers'. Then `sbcctl ban list` shows the three,
        `sbcctl ban remove` lifts the flooder's ban and DELETE /api/v1/bans/{ip} the scanners'
        (204; 404 once lifted), the list holds none of them, and the addresses go (also when
        the test fails).
  flood_oversized_message_dropped
        A 20,000-byte INVITE (an X-Padding header; IP-fragmented on the veth) from the carrier
        10.0.1.10 gets no answer within 2 s, the gateway sees nothing, sip.dropped_too_large
        goes up by exactly 1; then a normal call from the carrier completes. On DPDK in this lab
        the INVITE never reaches the guard: the net_af_packet PMD puts its sockets in a
        PACKET_FANOUT group with PACKET_FANOUT_FLAG_DEFRAG, so the kernel reassembles the
        fragments before the ring, whose 2048-byte frames keep only the first ~2 KB; the poll
        loop drops that frame as truncated. The test accepts that instead (io.dropped_truncated
        +1, io.reassembled +0, a printed note); dropped_too_large +1 with io.reassembled +1 (a
        NIC on vfio-pci, the SBC's own reassembly) passes too. The same happens to any
        fragmented SIP on that vdev, a legitimate 3,000-byte INVITE included.

The attackers are a small stdlib sender (ATTACKER below, written to the test's directory as
attacker.py and run in ns carrier): paced sends from IP:5060, every datagram that comes back
recorded with its arrival time, one JSON summary at the end.

Measured (2 cores; `--files flood`, five runs per backend; the ban times are when a poll of
GET /api/v1/bans, every 50 ms, first listed the address, so upper bounds):
  socket  flood test 9.5 s: 100/100 carrier calls, no retransmission; setup p50 4 ms, p99 4-8 ms
          (sipp rtd, 1 ms resolution), 2.7 ms / 4.0-6.3 ms from the message trace; .66 and .67
          listed as scanner 0.02-0.09 s after their first packet, .68 as flood 0.06-0.12 s
          after; answers: .66 0, .67 0, .68 16 (403 Forbidden - source is not a carrier, all
          within its first 50 ms); sip.dropped_banned +11,380-11,381 of 11,399-11,400 sent,
          dropped_scanner +2, dropped_flood +1, bans +3. Oversized test 4.5 s: no answer,
          sip.dropped_too_large +1, the next call completes.
  dpdk    flood test 9.5 s: the same calls, answers and counters; setup p50 4 ms, p99 4-8 ms,
          2.7 ms / 4.0-5.8 ms from the trace; scanners listed after 0.02-0.09 s, the flooder
          after 0.06-0.13 s. Oversized test 4.6 s: no answer, io.dropped_truncated +1,
          sip.dropped_too_large +0 (see above), the next call completes."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP
from kit.calls import tail_if, uac_outcomes, wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.proc import nsexec, spawn, stop_process, tail
from kit.provisioning import NUMBER
from kit.registry import lab_test
from kit.sip import received_invites, sipsend
from kit.sipp import Uas, percentile, rtt_values_ms, run_uac
from tests.test_health import sbcctl, sbcctl_path

SCANNER_INVITE_IP = "10.0.1.66"     # INVITEs with User-Agent: friendly-scanner, 1,000/s
SCANNER_OPTIONS_IP = "10.0.1.67"    # SIPVicious-style OPTIONS scan of extensions, 500/s
PLAIN_FLOOD_IP = "10.0.1.68"        # INVITEs without a scanner User-Agent, 400/s
ATTACKERS = {
    SCANNER_INVITE_IP: dict(mode="invite", ua="friendly-scanner", rate=1000, reason="scanner"),
    SCANNER_OPTIONS_IP: dict(mode="options", ua="friendly-scanner", rate=500, reason="scanner"),
    PLAIN_FLOOD_IP: dict(mode="invite", ua="", rate=400, reason="flood"),
}
ATTACK_S = 6.0                  # covers the carrier's 100 calls at 20/s (5 s) and sipp's start
FLOOD_LIMIT = 16                # [flood] requests (default): what an untrusted source may send
BAN_WITHIN_S = 2.0
CARRIER_CALLS, CARRIER_RATE = 100, 20
SETUP_P99_GOAL_MS = 250.0
SETUP_P99_FAIL_MS = 500.0       # "clearly over" the goal: fail
GUARD_KEYS = ("dropped_too_large", "dropped_banned", "dropped_scanner", "dropped_flood",
              "dropped_too_many_sources", "bans", "bans_active")
OVERSIZE = 20_000
IO_KEYS = ("reassembled", "dropped_truncated")     # DPDK only (None on sockets)

ATTACKER = r'''
import json, random, select, socket, sys, time

bind_ip, to_ip, to_port, mode, ua, rate, duration = sys.argv[1:8]
to = (to_ip, int(to_port)); rate = float(rate); duration = float(duration)
PORT = 5060
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((bind_ip, PORT))
s.setblocking(False)
oct4 = bind_ip.rsplit(".", 1)[1]
ua_line = f"User-Agent: {ua}\r\n" if ua else ""

def message(n):
    tag = "%08x" % random.getrandbits(32)
    cid = f"lab-attack-{oct4}-{n}-{random.getrandbits(32):08x}"
    via = f"Via: SIP/2.0/UDP {bind_ip}:{PORT};branch=z9hG4bK-{tag}-{n};rport\r\n"
    if mode == "options":      # svwar: one OPTIONS per extension
        ext = 100 + n % 9900
        return (f"OPTIONS sip:{ext}@{to_ip} SIP/2.0\r\n{via}"
                f"From: \"{ext}\"<sip:{ext}@{to_ip}>;tag={tag}\r\n"
                f"To: \"{ext}\"<sip:{ext}@{to_ip}>\r\n"
                f"Call-ID: {cid}\r\nCSeq: 1 OPTIONS\r\n"
                f"Contact: <sip:{ext}@{bind_ip}:{PORT}>\r\nMax-Forwards: 70\r\n{ua_line}"
                "X-Lab-Attack: 1\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n").encode()
    user = f"00972{n:08d}"      # toll fraud: international numbers
    sdp = (f"v=0\r\no=- {n} 1 IN IP4 {bind_ip}\r\ns=-\r\nc=IN IP4 {bind_ip}\r\nt=0 0\r\n"
           "m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
    return (f"INVITE sip:{user}@{to_ip}:{to[1]} SIP/2.0\r\n{via}"
            f"From: <sip:100@{bind_ip}>;tag={tag}\r\nTo: <sip:{user}@{to_ip}>\r\n"
            f"Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{bind_ip}:{PORT}>\r\n"
            f"Max-Forwards: 70\r\n{ua_line}X-Lab-Attack: 1\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()

replies, sent, blocked, first_ts = [], 0, 0, None

def drain():
    while True:
        try:
            data, src = s.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
        cid = next((l.split(":", 1)[1].strip() for l in head[1:]
                    if l.split(":", 1)[0].strip().lower() in ("call-id", "i")), None)
        replies.append({"t": time.time(), "src": f"{src[0]}:{src[1]}", "line": head[0],
                        "call_id": cid})

t0 = time.monotonic()
while True:
    el = time.monotonic() - t0
    if el >= duration:
        break
    due = int(el * rate) + 1
    while sent < due:
        m = message(sent)
        if first_ts is None:
            first_ts = time.time()
        try:
            s.sendto(m, to)
        except (BlockingIOError, InterruptedError):
            blocked += 1
            break
        sent += 1
    drain()
    time.sleep(0.001)
last_ts = time.time()
end = time.monotonic() + 1.5        # answers still on their way
while time.monotonic() < end:
    select.select([s], [], [], 0.1)
    drain()
print(json.dumps({"ip": bind_ip, "mode": mode, "ua": ua, "sent": sent, "blocked": blocked,
                  "first_ts": first_ts, "last_ts": last_ts,
                  "rate": sent / max(1e-6, last_ts - first_ts), "replies": replies}), flush=True)
'''


# --- helpers --------------------------------------------------------------------------------------

def guard_counters(ctx: Ctx) -> dict:
    sip = ctx.api.status().get("sip") or {}
    missing = [k for k in GUARD_KEYS if k not in sip]
    check(not missing, f"GET /api/v1/status has no sip.{', sip.'.join(missing)}")
    return {k: int(sip[k] or 0) for k in GUARD_KEYS}


def io_counters(ctx: Ctx) -> dict:
    """IO_KEYS of the status's io object (None where the backend has no such counter)."""
    io = ctx.api.status().get("io") or {}
    return {k: int(io[k]) if isinstance(io.get(k), (int, float)) else None for k in IO_KEYS}


def bans(ctx: Ctx) -> list:
    r = ctx.api.request("GET", "/api/v1/bans")
    check(r.code == 200 and isinstance(r.json(), list), f"GET /api/v1/bans -> {r.code} {r.body[:300]}")
    return r.json()


def ns_addr(op: str, ip: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "-n", "carrier", "addr", op, f"{ip}/16", "dev", "c0"],
                          capture_output=True, text=True)


def lift_bans(ctx: Ctx, ips) -> list[str]:
    """DELETE /api/v1/bans/{ip} for each of `ips` still banned; the problems met."""
    problems = []
    try:
        listed = {b.get("ip") for b in bans(ctx)}
    except Exception as e:  # noqa: BLE001
        return [f"GET /api/v1/bans: {e}"]
    for ip in ips:
        if ip in listed:
            r = ctx.api.request("DELETE", f"/api/v1/bans/{ip}")
            if r.code != 204:
                problems.append(f"DELETE /api/v1/bans/{ip} -> {r.code} {r.body[:200]}")
    return problems


class BanPoller:
    """GET /api/v1/bans over and over in a thread: when each address was first listed (wall
    clock at the end of that request) and as what."""

    def __init__(self, ctx: Ctx, ips, period: float = 0.05):
        self.ctx, self.ips, self.period = ctx, set(ips), period
        self.seen: dict[str, dict] = {}
        self.polls, self.errors, self.max_ms = 0, [], 0.0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_ev.is_set():
            t0 = time.time()
            try:
                r = self.ctx.api.request("GET", "/api/v1/bans", timeout=3.0)
                t1 = time.time()
                self.polls += 1
                self.max_ms = max(self.max_ms, (t1 - t0) * 1000)
                if r.code != 200 or not isinstance(r.json(), list):
                    self.errors.append(f"{r.code} {r.body[:120]}")
                else:
                    for b in r.json():
                        ip = b.get("ip")
                        if ip in self.ips and ip not in self.seen:
                            self.seen[ip] = dict(b, asked=t0, at=t1)
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"{type(e).__name__}: {e}")
            self.stop_ev.wait(self.period)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(10)
        return False


def answered(replies: list) -> int:
    """Distinct requests answered (by Call-ID)."""
    return len({r.get("call_id") for r in replies})


# --- the tests ------------------------------------------------------------------------------------

@lab_test
def flood_scanner_banned_carrier_calls_complete(ctx: Ctx):
    d = ctx.tdir("flood_scanner_banned_carrier_calls_complete")
    script = d / "attacker.py"
    script.write_text(ATTACKER)
    ips = list(ATTACKERS)
    added, procs = [], {}
    try:
        for ip in ips:
            r = ns_addr("add", ip)
            check(r.returncode == 0, f"ip -n carrier addr add {ip}/16 dev c0: {r.stderr.strip()}")
            added.append(ip)
        problems = lift_bans(ctx, ips)      # a ban left over from an earlier run would skew it
        check(not problems, "; ".join(problems))
        before = guard_counters(ctx)
        with Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas") as uas, BanPoller(ctx, ips) as poller:
            for ip, a in ATTACKERS.items():
                argv = [sys.executable, script, ip, SBC_PRIV_IP, 5060, a["mode"], a["ua"], a["rate"],
                        ATTACK_S]
                out = open(d / f"attacker_{ip.rsplit('.', 1)[1]}.json", "wb")
                err = open(d / f"attacker_{ip.rsplit('.', 1)[1]}.err", "wb")
                procs[ip] = (spawn(nsexec("carrier", argv), stdout=out, stderr=err), out, err)
            time.sleep(0.2)         # the flood is on before the first call
            r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, d, "uac",
                        calls=CARRIER_CALLS, rate=CARRIER_RATE, limit=CARRIER_CALLS,
                        duration_ms=500, timeout_s=30, service=NUMBER, rtt=True)
            results = {}
            for ip, (p, out, err) in procs.items():
                try:
                    p.wait(ATTACK_S + 10)
                except subprocess.TimeoutExpired:
                    pass
                stop_process(p)
                out.close()
                err.close()
                try:
                    results[ip] = json.loads(Path(out.name).read_text().strip().splitlines()[-1])
                except (IndexError, ValueError) as e:
                    raise TestFailure(f"attacker {ip} printed no summary ({e}):\n"
                                      + tail(err.name, 20)) from None
            time.sleep(0.3)         # the engine publishes its counters every turn
            ur = uas.stop()
        after = guard_counters(ctx)
        listed = bans(ctx)
        delta = {k: after[k] - before[k] for k in GUARD_KEYS if k != "bans_active"}

        # The carrier's calls and their setup times.
        rtt = rtt_values_ms(r.files["rtt"]) if r.files.get("rtt") else []
        p50, p99 = percentile(rtt, 0.5), percentile(rtt, 0.99)
        fmt = lambda v: "n/a" if v is None else f"{v:.1f} ms"  # noqa: E731
        traced = sorted(v * 1000 for v in uac_outcomes(r)["setup"].values())
        print(f"  (carrier: {r.successful}/{CARRIER_CALLS} calls completed, {r.failed} failed, "
              f"{r.stats.get('Retransmissions(C)', '?')} retransmissions; setup (sipp rtd, ms "
              f"resolution) p50 {fmt(p50)}, p99 {fmt(p99)}, max {fmt(max(rtt) if rtt else None)} "
              f"over {len(rtt)} calls; from the message trace p50 {fmt(percentile(traced, 0.5))}, "
              f"p99 {fmt(percentile(traced, 0.99))})", flush=True)
        sent = {ip: res["sent"] for ip, res in results.items()}
        for ip, res in results.items():
            seen = poller.seen.get(ip)
            ban_s = f"{seen['at'] - res['first_ts']:.3f} s" if seen and res.get("first_ts") else "never"
            print(f"  ({ip} {res['mode']} UA={res['ua'] or '-'}: sent {res['sent']} at "
                  f"{res['rate']:.0f}/s, {len(res['replies'])} answers "
                  f"({answered(res['replies'])} requests), listed as "
                  f"{seen.get('reason') if seen else None} {ban_s} after its first packet)",
                  flush=True)
        print(f"  (guard counters went up by {delta}; bans_active {after['bans_active']}; "
              f"{poller.polls} polls of /api/v1/bans, slowest {poller.max_ms:.0f} ms)", flush=True)

        succ = r.successful
        check(succ >= 0.995 * CARRIER_CALLS and not r.timed_out,
              f"only {succ} of {CARRIER_CALLS} carrier calls completed during the flood\n"
              f"{r.diagnostics()}\n--- UAS: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
        check(rtt, f"no setup times in sipp's -trace_rtt file ({r.files.get('rtt')})")
        if p99 > SETUP_P99_GOAL_MS:
            print(f"  note: setup p99 {p99:.1f} ms is over the {SETUP_P99_GOAL_MS:.0f} ms goal",
                  flush=True)
        check(p99 <= SETUP_P99_FAIL_MS, f"setup p99 {p99:.1f} ms during the flood (goal "
                                         f"{SETUP_P99_GOAL_MS:.0f} ms, fail over {SETUP_P99_FAIL_MS:.0f})")

        # The attackers: what they sent, what came back.
        for ip, a in ATTACKERS.items():
            res = results[ip]
            check(res["sent"] >= 0.8 * a["rate"] * ATTACK_S,
                  f"attacker {ip} sent only {res['sent']} messages in {ATTACK_S} s "
                  f"(wanted {a['rate']}/s; blocked {res['blocked']})")
            got = res["replies"]
            if a["reason"] == "scanner":
                check(not got, f"scanner {ip} ({a['mode']}, User-Agent {a['ua']}) got {len(got)} "
                               f"answers, want none: {[x['line'] for x in got[:5]]}")
            else:
                check(len(got) <= FLOOD_LIMIT and answered(got) <= FLOOD_LIMIT,
                      f"plain flooder {ip} got {len(got)} answers to {answered(got)} requests, want "
                      f"at most {FLOOD_LIMIT} (its first window): {[x['line'] for x in got[:5]]}...")
                late = [x for x in got if x["t"] - res["first_ts"] > BAN_WITHIN_S + 0.5]
                check(not late, f"plain flooder {ip} got answers {len(late)} after its first window: "
                                f"{[x['line'] for x in late[:5]]}")
                bad = [x["line"] for x in got if not x["line"].startswith("SIP/2.0 403")]
                check(not bad, f"plain flooder {ip}: the INVITEs of its first window should get 403 "
                               f"(not a carrier), got {bad[:5]}")

        # Banned in time, for the right reason.
        for ip, a in ATTACKERS.items():
            seen = poller.seen.get(ip)
            check(seen is not None, f"{ip} never appeared in GET /api/v1/bans during the flood "
                                    f"({poller.polls} polls, errors {poller.errors[:3]}); "
                                    f"listed at the end: {listed}")
            took = seen["at"] - results[ip]["first_ts"]
            check(seen.get("reason") == a["reason"],
                  f"{ip} is banned as {seen.get('reason')!r}, want {a['reason']!r}: {seen}")
            check(took <= BAN_WITHIN_S, f"{ip} appeared in GET /api/v1/bans {took:.2f} s after its "
                                        f"first packet (want within {BAN_WITHIN_S} s)")
        now_listed = {b.get("ip"): b for b in listed}
        check(CARRIER_IP not in now_listed, f"the carrier {CARRIER_IP} is banned: {now_listed.get(CARRIER_IP)}")
        for ip, a in ATTACKERS.items():
            b = now_listed.get(ip)
            check(b is not None and b.get("reason") == a["reason"],
                  f"after the flood GET /api/v1/bans shows {b} for {ip} (want reason {a['reason']})")
            check(isinstance(b.get("expires_in_s"), int) and 0 < b["expires_in_s"] <= 300
                  and isinstance(b.get("banned_for_s"), int) and b["banned_for_s"] <= ATTACK_S + 30,
                  f"ban of {ip}: {b} (expires_in_s 1..300, banned_for_s about the flood's length)")
            # Each banned source's drops: all it sent but the message that banned it (and, for
            # the flooder, its allowed window).
            want = sent[ip] - 1 - (FLOOD_LIMIT if a["reason"] == "flood" else 0)
            check(b.get("dropped", 0) >= 0.9 * want,
                  f"ban of {ip} counted {b.get('dropped')} dropped messages of {sent[ip]} sent")

        # The counters.
        total = sum(sent.values())
        check(delta["dropped_scanner"] >= 2, f"sip.dropped_scanner went up by {delta['dropped_scanner']}, "
                                             f"want >= 2 (one per scanner address)")
        check(delta["dropped_flood"] >= 1, f"sip.dropped_flood went up by {delta['dropped_flood']}, want >= 1")
        check(delta["dropped_banned"] >= 0.9 * (total - 3 - FLOOD_LIMIT),
              f"sip.dropped_banned went up by {delta['dropped_banned']} while the attackers sent "
              f"{total} messages")
        check(delta["bans"] >= 3, f"sip.bans went up by {delta['bans']}, want >= 3")
        check(after["bans_active"] >= 3, f"sip.bans_active is {after['bans_active']}, want >= 3")
        check(delta["dropped_too_large"] == 0, f"sip.dropped_too_large went up by {delta['dropped_too_large']}")

        # Nothing of the attackers' reached the gateway.
        inv = received_invites(ur.files.get("messages"))
        foreign = [m for m in inv if m.ruri_user != NUMBER or "x-lab-attack" in m.head.lower()
                   or any(ip in m.text for ip in ips)]
        if foreign:
            raise TestFailure(f"{len(foreign)} attacker INVITEs reached the gateway, e.g.:\n"
                              + "\n".join("    " + x for x in foreign[0].head.split("\n")[:15]))
        check(len(inv) == succ, f"the gateway received {len(inv)} INVITEs for {succ} completed carrier calls")

        # The operator's view: `sbcctl ban list` shows them, `sbcctl ban remove` lifts the
        # flooder's ban, DELETE /api/v1/bans/{ip} the scanners' (204), a second DELETE is 404,
        # and the list holds none of them.
        api_lifted = ips
        if sbcctl_path(ctx):
            table = sbcctl(ctx, "ban", "list")
            (d / "sbcctl_ban_list.txt").write_text(table)
            rows = {ln.split()[0]: ln.split() for ln in table.splitlines() if ln.split()}
            for ip, a in ATTACKERS.items():
                check(ip in rows and a["reason"] in rows[ip],
                      f"`sbcctl ban list` has no {a['reason']} row for {ip}:\n{table}")
            out = sbcctl(ctx, "ban", "remove", PLAIN_FLOOD_IP)
            check("removed" in out, f"`sbcctl ban remove {PLAIN_FLOOD_IP}` printed {out!r}")
            api_lifted = [ip for ip in ips if ip != PLAIN_FLOOD_IP]
        else:
            print(f"  note: no sbcctl next to {ctx.sbc.binary}: bans lifted over the API only", flush=True)
        for ip in api_lifted:
            resp = ctx.api.request("DELETE", f"/api/v1/bans/{ip}")
            check(resp.code == 204, f"DELETE /api/v1/bans/{ip} -> {resp.code} {resp.body[:200]} (want 204)")
        for ip in ips:
            resp = ctx.api.request("DELETE", f"/api/v1/bans/{ip}")
            check(resp.code == 404, f"second DELETE /api/v1/bans/{ip} -> {resp.code} (want 404)")
        left = bans(ctx)
        ours = [b for b in left if b.get("ip") in ips]
        check(not ours, f"after DELETE, GET /api/v1/bans still lists {ours}")
        if left:
            print(f"  note: bans of other sources remain (earlier tests): {left}", flush=True)
        wait_calls_down(ctx)
    finally:
        for p, out, err in procs.values():
            stop_process(p)
            out.close()
            err.close()
        problems = lift_bans(ctx, ips)
        for ip in added:
            rr = ns_addr("del", ip)
            if rr.returncode != 0:
                problems.append(f"ip -n carrier addr del {ip}/16 dev c0: {rr.stderr.strip()}")
        if problems:
            print(f"  cleanup: {'; '.join(problems)}", flush=True)


def oversized_invite(size: int, port: int, call_id: str) -> bytes:
    """An INVITE from the carrier of exactly `size` bytes (an X-Padding header makes it up)."""
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {CARRIER_IP}\r\ns=-\r\nc=IN IP4 {CARRIER_IP}\r\nt=0 0\r\n"
           "m=audio 6000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
    head = (f"INVITE sip:{NUMBER}@{SBC_PRIV} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CARRIER_IP}:{port};branch=z9hG4bK-{call_id};rport\r\n"
            f"From: <sip:lab@{CARRIER_IP}>;tag=big-{call_id}\r\nTo: <sip:{NUMBER}@{SBC_PRIV_IP}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:lab@{CARRIER_IP}:{port}>\r\n"
            "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n")
    tail_ = f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    pad = size - len(head) - len(tail_) - len("X-Padding: \r\n")
    return (head + "X-Padding: " + "a" * pad + "\r\n" + tail_).encode()


@lab_test
def flood_oversized_message_dropped(ctx: Ctx):
    d = ctx.tdir("flood_oversized_message_dropped")
    call_id = f"lab-oversize-{int(time.time() * 1000)}"
    f = d / "invite_20000.sip"
    f.write_bytes(oversized_invite(OVERSIZE, 5062, call_id))
    check(len(f.read_bytes()) == OVERSIZE, f"built {len(f.read_bytes())} bytes, want {OVERSIZE}")
    dpdk = ctx.sbc.backend == "dpdk"
    with Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas") as uas:
        before = guard_counters(ctx)
        io0 = io_counters(ctx)
        res = sipsend("carrier", ["send", "--bind", f"{CARRIER_IP}:5062", "--to", SBC_PRIV,
                                  "--file", str(f), "--timeout", "2"])
        (d / "replies.txt").write_text(res.stdout + res.stderr)
        got = [line.split(" ", 2)[2] for line in res.stdout.splitlines() if line.startswith("REPLY ")]
        time.sleep(0.2)
        after = guard_counters(ctx)
        io1 = io_counters(ctx)
        r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=1, rate=1,
                    duration_ms=200, timeout_s=20)
        ur = uas.stop()
    inv = received_invites(ur.files.get("messages"))
    big = after["dropped_too_large"] - before["dropped_too_large"]
    io_delta = {k: (io1[k] - io0[k]) if io0[k] is not None and io1[k] is not None else None
                for k in IO_KEYS}
    print(f"  ({OVERSIZE}-byte INVITE: answers {got}; sip.dropped_too_large +{big}; io {io_delta}; "
          f"the gateway got {len(inv)} INVITE(s) in all)", flush=True)
    check(res.returncode == 0, f"sipsend failed (rc {res.returncode}): {res.stderr.strip()[-500:]}")
    check(not got, f"the {OVERSIZE}-byte INVITE was answered: {got}")
    for k in ("dropped_banned", "dropped_scanner", "dropped_flood"):
        check(after[k] == before[k], f"sip.{k} went up by {after[k] - before[k]} for a carrier's message")
    if dpdk and big == 0 and io_delta.get("dropped_truncated") == 1 and not io_delta.get("reassembled"):
        # DPDK's net_af_packet PMD joins its sockets to a PACKET_FANOUT group with
        # PACKET_FANOUT_FLAG_DEFRAG: the kernel reassembles the fragments before the ring, whose
        # 2048-byte frames then hold only the first ~2 KB of the datagram; the poll loop drops
        # that frame as truncated (IPv4 total length beyond the frame) and the guard never sees
        # it. A NIC bound to vfio-pci hands the SBC the fragments (its own reassembly).
        print("  note: on the net_af_packet vdev the fragmented INVITE was dropped by the poll loop "
              "as truncated (io.dropped_truncated +1), before the guard's size check", flush=True)
    else:
        check(big == 1, f"sip.dropped_too_large went up by {big}, want 1 (io {io_delta})")
        if dpdk:
            check(io_delta.get("reassembled") == 1,
                  f"io.reassembled went up by {io_delta.get('reassembled')}: the poll loop should "
                  f"have put the fragments together")
    check(all(call_id not in m.text and "X-Padding" not in m.text for m in inv),
          "the oversized INVITE reached the gateway")
    check(r.ok(1), f"the normal call after the oversized INVITE: {r.summary()}\n{r.diagnostics()}\n"
                   f"--- UAS: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    check(len(inv) == 1 and inv[0].ruri_user == NUMBER,
          f"the gateway received {len(inv)} INVITEs, want just the normal call's")
    wait_calls_down(ctx)
