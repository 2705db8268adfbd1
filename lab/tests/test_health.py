"""Gateway health with Kamailio dispatcher semantics ([health]; issue 13): the SBC probes every
gateway with OPTIONS from 203.0.113.50:5080, takes one down after failures_down failures (probe
timeouts, or INVITEs answered with a failover code), skips it in routing, and brings it back after
successes_up answered probes; operators see and set the state with `sbcctl dispatcher`. Each test
restarts the SBC with probing on (interval 1-2 s, timeout 500 ms, down after 2, up after 2) and
restarts it without [health] at the end (probing off, as every other test expects):

  health_dead_gateway  GW2 (.11, priority 2) has nothing listening, GW1 (.10) answers: GW2 goes
                       down ("OPTIONS timeout") within failures_down x interval + timeout; 300
                       calls at 50 cps all succeed and not one INVITE leaves pub0 for .11 (only
                       the probes do); `sbcctl dispatcher list` shows GW1 AP with a latency and GW2
                       IP; a UAS started on .11 brings it up within successes_up x interval and
                       the next calls reach it
  health_503_gateway   GW2 (.11, priority 2) answers OPTIONS 200 but every INVITE 503 (sipp
                       uas_503.xml), GW1 answers: the first calls fail over and succeed, after
                       failures_down of them GW2 is down ("INVITE 503"), a burst sent at once
                       goes only to GW1, the probes bring GW2 back, and over a few seconds of
                       calls it gets at most (failures_down + 1) INVITEs per up period
  health_set_state     `sbcctl dispatcher set-state ID disabled` takes a live gateway out of
                       routing and probing (capture: no new OPTIONS to it), `active` puts it back
                       (calls and probes reach it again at once)

The gateway stand-ins are sipp uas_simple.xml and uas_503.xml: each OPTIONS probe is a "call" of
its own there, answered 200 and ended (so it counts as a successful call, never a failed one).
INVITEs are counted from a capture on pub0 in ns sbc: what the SBC sent, whatever sipp made of it."""
from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from pathlib import Path

from kit.addresses import API_BASE, CARRIER_IP, GW1_IP, GW2_IP, SBC_PRIV, SBC_PUB_IP
from kit.calls import tail_if, wait_calls_down
from kit.ctx import Ctx, check
from kit.pcap import Capture, read_pcap_udp
from kit.proc import nsexec
from kit.provisioning import BASE_CARRIERS, LAB_ROUTING, Provisioned, gw
from kit.registry import lab_test
from kit.sipp import Uas, run_uac

# Probing as the tests run it: every second, a probe unanswered for 500 ms fails, down after 2
# failures, up after 2 answered probes.
HEALTH = {"interval_s": 1, "timeout_ms": 500, "failures_down": 2, "successes_up": 2}
SLACK_S = 1.5                   # scheduling, the API's view, a probe's round trip
SBC_PROBE_PORT = 5080           # probes leave from the SBC's public SIP address


def interval(h: dict) -> float:
    return float(h["interval_s"])


def timeout(h: dict) -> float:
    return h["timeout_ms"] / 1000.0


# --- the dispatcher as the API and sbcctl show it -------------------------------------------------

def dispatcher(ctx: Ctx) -> dict:
    r = ctx.api.request("GET", "/api/v1/dispatcher")
    check(r.code == 200 and isinstance(r.json(), dict), f"GET /api/v1/dispatcher -> {r.code} {r.body[:300]}")
    return r.json()


def is_uri_of(uri: str, ip: str) -> bool:
    return re.search(rf"[:@]{re.escape(ip)}(?:[:;>]|$)", uri or "") is not None


def dest(lst: dict, ip: str) -> dict | None:
    return next((d for d in lst.get("destinations", []) if is_uri_of(d.get("uri"), ip)), None)


def brief(d: dict | None) -> str:
    if d is None:
        return "not listed"
    return (f"{d.get('uri')} {d.get('flags')} {d.get('state')} ({d.get('reason')}; failures "
            f"{d.get('failures')}, probes {d.get('probes')}, probe_failures {d.get('probe_failures')}, "
            f"latency {d.get('latency_last_ms')} ms)")


def wait_dest(ctx: Ctx, ip: str, want, limit: float, poll: float = 0.05) -> tuple[dict | None, float, list]:
    """Poll GET /api/v1/dispatcher until want(entry of `ip`) or `limit` seconds. Returns the last
    entry, the seconds waited (None if never) and the changes seen [(s, flags, state, reason)]."""
    t0 = time.monotonic()
    seen, last = [], None
    while True:
        d = dest(dispatcher(ctx), ip)
        el = time.monotonic() - t0
        key = (d or {}).get("flags"), (d or {}).get("state"), (d or {}).get("reason")
        if not seen or seen[-1][1:] != key:
            seen.append((round(el, 2),) + key)
        last = d
        if d is not None and want(d):
            return d, el, seen
        if el >= limit:
            return last, None, seen
        time.sleep(poll)


def history(seen: list) -> str:
    return "; ".join(f"{t:.2f}s {f} {s} ({r})" for t, f, s, r in seen)


def sbcctl_path(ctx: Ctx) -> Path | None:
    """sbcctl next to the sbc under test (cargo builds both into the same directory)."""
    p = ctx.sbc.binary.with_name("sbcctl")
    return p if p.exists() else None


def sbcctl(ctx: Ctx, *args: str) -> str:
    p = sbcctl_path(ctx)
    r = subprocess.run(nsexec("sbc", [p, "--api", API_BASE] + list(args)), capture_output=True,
                       text=True, timeout=15)
    check(r.returncode == 0, f"sbcctl {' '.join(args)} -> exit {r.returncode}: {r.stderr.strip()}\n{r.stdout}")
    return r.stdout


DISPATCHER_COLUMNS = ["set", "id", "uri", "address", "flags", "priority", "weight", "latency_ms",
                      "state", "since_s", "reason"]


def dispatcher_table(text: str) -> list[dict]:
    """The rows of `sbcctl dispatcher list|set-state` (the reason, last, may hold spaces)."""
    lines = [x for x in text.splitlines() if x.strip()]
    check(bool(lines) and lines[0].split() == DISPATCHER_COLUMNS,
          f"sbcctl dispatcher printed no table with the columns {DISPATCHER_COLUMNS}:\n{text}")
    rows = []
    for line in lines[1:]:
        if line.startswith("("):        # "(probing is off ...)"
            continue
        cells = line.split(None, len(DISPATCHER_COLUMNS) - 1)
        if len(cells) == len(DISPATCHER_COLUMNS):
            rows.append(dict(zip(DISPATCHER_COLUMNS, cells)))
    return rows


def table_row(rows: list[dict], ip: str) -> dict | None:
    return next((r for r in rows if is_uri_of(r["uri"], ip)), None)


# --- captures -------------------------------------------------------------------------------------

_REQ = re.compile(rb"^([A-Z]+) (\S+) SIP/2\.0\r\n")


def _hdr(head: str, *names: str) -> str | None:
    for n in names:
        m = re.search(rf"^{n}\s*:\s*(.*)$", head, re.M | re.I)
        if m:
            return m.group(1).strip()
    return None


def sip_requests(path: Path) -> list[dict]:
    """Every SIP request of a capture: ts, src, sport, dst, dport, method, call_id, branch and
    whether its To has a tag (an initial INVITE has none)."""
    out = []
    for ts, src, sport, dst, dport, payload in read_pcap_udp(path):
        m = _REQ.match(payload)
        if not m:
            continue
        head = payload.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").replace("\r\n", "\n")
        via = _hdr(head, "Via", "v") or ""
        b = re.search(r"branch=([^;,\s]+)", via)
        out.append({"ts": ts, "src": src, "sport": sport, "dst": dst, "dport": dport,
                    "method": m.group(1).decode(), "call_id": _hdr(head, "Call-ID", "i"),
                    "branch": b.group(1) if b else None,
                    "to_tag": re.search(r";\s*tag=", _hdr(head, "To", "t") or "") is not None})
    return out


def initial_invites(reqs: list[dict], ip: str, t0: float = 0.0, t1: float = math.inf) -> set:
    """Call-IDs of the initial INVITEs sent to `ip` within [t0, t1] (retransmissions once)."""
    return {r["call_id"] for r in reqs
            if r["method"] == "INVITE" and r["dst"] == ip and not r["to_tag"] and t0 <= r["ts"] <= t1}


def fmt_ts(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def check_probe_source(reqs: list[dict]) -> None:
    bad = [r for r in reqs if r["method"] == "OPTIONS" and (r["src"], r["sport"]) != (SBC_PUB_IP, SBC_PROBE_PORT)]
    check(not bad, f"{len(bad)} OPTIONS on pub0 not from {SBC_PUB_IP}:{SBC_PROBE_PORT}: "
                   + "; ".join(f"{r['src']}:{r['sport']} -> {r['dst']}" for r in bad[:5]))


# --- the SBC ------------------------------------------------------------------------------------



def state_changes(log: str, ip: str) -> list[str]:
    """The SBC's log lines `destination up|down gateway=IP:5060 ... reason=...` for `ip`."""
    return [x.strip() for x in log.splitlines()
            if re.search(r"destination (?:up|down)", x) and f"gateway={ip}:" in x]


def sip_status(ctx: Ctx) -> dict:
    return ctx.api.status().get("sip") or {}


def delta(after: dict, before: dict, key: str) -> int:
    return int(after.get(key, 0) or 0) - int(before.get(key, 0) or 0)


def uac(ctx: Ctx, name: str, tag: str, calls: int, rate: float, limit: int | None = None,
        duration_ms: int = 200, timeout_s: int = 40):
    """`calls` calls from the carrier (sipp uac_simple) into the SBC; fails the test unless all of
    them succeed. Returns the result and (wall-clock start, end)."""
    t0 = time.time()
    r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, ctx.tdir(name), f"{tag}_uac",
                calls=calls, rate=rate, limit=limit or calls, duration_ms=duration_ms,
                timeout_s=timeout_s, trace_msg=calls <= 50)
    t1 = time.time()
    check(r.ok(calls), f"{tag}: {r.summary()} (want all {calls} successful)\n{r.diagnostics()}")
    return r, (t0, t1)


def uas_clean(res, who: str) -> None:
    check(res.failed == 0, f"{who}: sipp counted {res.failed} failed calls: {res.summary()}\n"
                           f"{tail_if(res.files.get('errors'))}")


@contextlib.contextmanager
def health_on(ctx: Ctx, health: dict):
    """The SBC restarted with `health` as its [health] table, and without it again afterwards."""
    try:
        ctx.sbc.restart(LAB_ROUTING, health=health)
        yield
    finally:
        ctx.sbc.restart(LAB_ROUTING, health={})


# --- the tests ----------------------------------------------------------------------------------

@lab_test(restarts_sbc=True)
def health_dead_gateway(ctx: Ctx):
    """[health] interval 1 s, timeout 500 ms, down after 2, up after 2. Group 1 = GW1 .10
    (priority 1, sipp uas_simple) + GW2 .11 (priority 2: routing would try it first; nothing
    listens there). GW2 is down, reason "OPTIONS timeout", within failures_down x interval + timeout
    (+1.5 s) of provisioning; 300 calls at 50 cps then all succeed, none of them failing over, and
    the pub0 capture has no INVITE to .11 (only OPTIONS from 203.0.113.50:5080); `sbcctl dispatcher
    list` shows GW1 AP with a latency and GW2 IP. A UAS started on .11 brings GW2 up within
    successes_up x interval (+1.5 s), reason "OPTIONS 200", and the next 10 calls all go to it."""
    name = "health_dead_gateway"
    d = ctx.tdir(name)
    h = HEALTH
    calls = 300
    with contextlib.ExitStack() as stack:
        gw1 = stack.enter_context(Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas_10"))
        stack.enter_context(health_on(ctx, h))
        log_off = ctx.sbc.log_size()
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 1), gw(GW2_IP, 1, 2)]))
        t_prov = time.monotonic()
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter="udp")
        stack.callback(cap.stop)

        # 1. GW2 goes down on its probe timeouts.
        limit = h["failures_down"] * interval(h) + timeout(h) + SLACK_S
        g2, took, seen = wait_dest(ctx, GW2_IP, lambda x: x["state"] == "down", limit)
        took_prov = time.monotonic() - t_prov
        check(took is not None, f"GW2 {GW2_IP} (nothing listening) not down {limit:.1f} s after "
                                f"provisioning: {brief(g2)}; seen: {history(seen)}")
        check(g2["reason"] == "OPTIONS timeout" and g2["flags"] == "IP",
              f"GW2 down with flags {g2['flags']}, reason {g2['reason']!r} (want IP, 'OPTIONS timeout'): {brief(g2)}")
        g1 = dest(dispatcher(ctx), GW1_IP)
        check(g1 is not None and g1["state"] == "up" and g1["reason"] == "OPTIONS 200",
              f"GW1 {GW1_IP} (answering) should be up after an answered probe: {brief(g1)}")
        st = ctx.api.status()
        gws = st.get("gateways") or {}
        check(gws.get("probing") is True and gws.get("up") == 1 and gws.get("down") == 1,
              f"status gateways: {gws} (want probing true, up 1, down 1)")

        # 2. 300 calls: all succeed, all go straight to GW1.
        s0 = st.get("sip") or {}
        r, (c0, c1) = uac(ctx, name, "calls300", calls, rate=50, limit=100)
        s1 = sip_status(ctx)
        g2b = dest(dispatcher(ctx), GW2_IP)
        check(g2b["state"] == "down", f"GW2 came up during the calls with nothing listening: {brief(g2b)}")
        check(delta(s1, s0, "failovers") == 0,
              f"status sip.failovers went up by {delta(s1, s0, 'failovers')} during {calls} calls: "
              f"GW2 was tried although down")
        check(delta(s1, s0, "calls_no_gateway_up") == 0,
              f"status sip.calls_no_gateway_up went up by {delta(s1, s0, 'calls_no_gateway_up')} "
              f"while GW1 was up")
        check(delta(s1, s0, "probes_sent") > 0 and delta(s1, s0, "probe_answers") > 0,
              f"status sip probes_sent +{delta(s1, s0, 'probes_sent')}, probe_answers "
              f"+{delta(s1, s0, 'probe_answers')} during {c1 - c0:.1f} s of calls")

        # 3. sbcctl dispatcher list (the API's table).
        if sbcctl_path(ctx):
            out = sbcctl(ctx, "dispatcher", "list")
            (d / "sbcctl_dispatcher_list.txt").write_text(out)
            rows = dispatcher_table(out)
            r1, r2 = table_row(rows, GW1_IP), table_row(rows, GW2_IP)
            check(r1 is not None and r1["flags"] == "AP" and r1["latency_ms"] != "-" and r1["state"] == "up",
                  f"sbcctl dispatcher list: GW1 should be AP, up, with a latency:\n{out}")
            check(r2 is not None and r2["flags"] == "IP" and r2["state"] == "down"
                  and r2["reason"] == "OPTIONS timeout",
                  f"sbcctl dispatcher list: GW2 should be IP, down, OPTIONS timeout:\n{out}")
            shown = f"sbcctl: GW1 {r1['flags']} {r1['latency_ms']} ms, GW2 {r2['flags']} {r2['reason']}"
        else:
            g1 = dest(dispatcher(ctx), GW1_IP)
            check(g1["flags"] == "AP" and g1["latency_last_ms"] is not None,
                  f"GW1 should be AP with a latency: {brief(g1)}")
            shown = f"no sbcctl next to the sbc; API: GW1 {g1['flags']} {g1['latency_last_ms']} ms"

        # 4. GW2 answers again: up after successes_up answered probes, calls reach it.
        t_up0 = time.time()
        gw2 = stack.enter_context(Uas("gw", "uas_simple", GW2_IP, 5060, d, "uas_11"))
        limit = h["successes_up"] * interval(h) + SLACK_S
        g2c, took_up, seen = wait_dest(ctx, GW2_IP, lambda x: x["state"] == "up", limit)
        check(took_up is not None, f"GW2 not up {limit:.1f} s after a UAS started on {GW2_IP}: "
                                   f"{brief(g2c)}; seen: {history(seen)}")
        check(g2c["reason"] == "OPTIONS 200" and g2c["flags"] == "AP",
              f"GW2 back up with flags {g2c['flags']}, reason {g2c['reason']!r} (want AP, 'OPTIONS 200')")
        r2, (a0, a1) = uac(ctx, name, "after_up", 10, rate=10)
        wait_calls_down(ctx)
        log = ctx.sbc.log_since(log_off, None)
        cap.stop()
        ur1, ur2 = gw1.stop(), gw2.stop()
    reqs = sip_requests(d / "pub0.pcap")
    to_gw2 = [x for x in reqs if x["dst"] == GW2_IP and x["ts"] < t_up0]
    inv2 = initial_invites(reqs, GW2_IP, 0, t_up0)
    inv1 = initial_invites(reqs, GW1_IP, c0, c1)
    methods = sorted({x["method"] for x in to_gw2})
    check(not inv2, f"{len(inv2)} INVITEs left pub0 for GW2 {GW2_IP} while it was down, e.g. at "
                    + ", ".join(fmt_ts(x["ts"]) for x in to_gw2 if x["method"] == "INVITE")[:200])
    check(methods == ["OPTIONS"], f"requests to GW2 while down: {methods} (want only OPTIONS probes)")
    check(len(inv1) == calls, f"GW1 {GW1_IP} got {len(inv1)} initial INVITEs during the {calls} calls")
    check_probe_source(reqs)
    after = initial_invites(reqs, GW2_IP, a0, a1)
    after1 = initial_invites(reqs, GW1_IP, a0, a1)
    check(len(after) == 10 and not after1,
          f"after GW2 came back up, 10 calls went {len(after)} to GW2 (priority 2) and {len(after1)} to GW1")
    downs = [x for x in state_changes(log, GW2_IP) if "destination down" in x]
    check(any("reason=OPTIONS timeout" in x for x in downs),
          f"no SBC log line 'destination down gateway={GW2_IP}:5060 ... reason=OPTIONS timeout': {downs}")
    uas_clean(ur1, "GW1")
    uas_clean(ur2, "GW2")
    print(f"  (GW2 down {took_prov:.2f} s after provisioning, {len(to_gw2)} OPTIONS to it and no INVITE "
          f"while down; {calls} calls in {c1 - c0:.1f} s all at GW1; {shown}; GW2 up {took_up:.2f} s "
          f"after its UAS started, then 10/10 calls there)", flush=True)


@lab_test(restarts_sbc=True)
def health_503_gateway(ctx: Ctx):
    """[health] interval 2 s (a down gateway stays down for at least one interval: successes_up 2
    needs two answered probes an interval apart), timeout 500 ms, down after 2, up after 2. Group 1
    = GW1 .10 (priority 1, answers) + GW2 .11 (priority 2, sipp uas_503: OPTIONS 200, INVITE 503).
    A: 5 calls at 50 cps all succeed; GW2 gets 2 INVITEs (failures_down; 3 allowed should a probe
    answer reset the count between them), each failed over (sip.failovers), and is then down,
    logged "destination down ... reason=INVITE 503". B: 20 calls at 100 cps sent at once all go to
    GW1 only. C: probes bring GW2 up ("OPTIONS 200") within successes_up x interval (+1.5 s). D:
    40 calls at 10 cps all succeed; GW2 gets at least failures_down and at most (failures_down + 1)
    x (1 + duration / interval) of their INVITEs (one up period per interval at most)."""
    name = "health_503_gateway"
    d = ctx.tdir(name)
    h = dict(HEALTH, interval_s=2)
    fd = h["failures_down"]
    with contextlib.ExitStack() as stack:
        gw1 = stack.enter_context(Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas_10"))
        gw2 = stack.enter_context(Uas("gw", "uas_503", GW2_IP, 5060, d, "uas_11"))
        stack.enter_context(health_on(ctx, h))
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 1), gw(GW2_IP, 1, 2)]))
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter="udp")
        stack.callback(cap.stop)
        log_off = ctx.sbc.log_size()
        g2, took, seen = wait_dest(ctx, GW2_IP, lambda x: x["probes"] >= 1 and x["reason"] == "OPTIONS 200",
                                   timeout(h) + SLACK_S)
        check(took is not None and g2["state"] == "up",
              f"GW2 (answers OPTIONS 200) should be up after its first probe: {brief(g2)}; seen: {history(seen)}")

        # A. The first calls: GW2 first, 503, failover to GW1; after failures_down GW2 is down.
        s0 = sip_status(ctx)
        _, (a0, a1) = uac(ctx, name, "A_takedown", 5, rate=50, duration_ms=0)
        s1 = sip_status(ctx)
        lst = dispatcher(ctx)
        g2a = dest(lst, GW2_IP)
        # A probe answered since it went down makes the reason "OPTIONS 200" (1 of successes_up).
        check(g2a["state"] == "down" and g2a["reason"] in ("INVITE 503", "OPTIONS 200"),
              f"after 5 calls that GW2 answered 503 it should be down (reason INVITE 503): {brief(g2a)}")
        fo_a = delta(s1, s0, "failovers")

        # B. A burst right away: all at GW1.
        _, (b0, b1) = uac(ctx, name, "B_burst", 20, rate=100, duration_ms=0)
        s2 = sip_status(ctx)
        g2b = dest(dispatcher(ctx), GW2_IP)
        fo_b = delta(s2, s1, "failovers")

        # C. The probes bring it back.
        limit = h["successes_up"] * interval(h) + SLACK_S
        g2c, took_up, seen = wait_dest(ctx, GW2_IP, lambda x: x["state"] == "up", limit)
        t_up = time.time()
        check(took_up is not None, f"GW2 (answering OPTIONS 200) not up {limit:.1f} s after the burst: "
                                   f"{brief(g2c)}; seen: {history(seen)}")
        check(g2c["reason"] == "OPTIONS 200", f"GW2 back up with reason {g2c['reason']!r} (want 'OPTIONS 200')")
        down_for = t_up - a1

        # D. Steady calls: GW2 taken down again and again, a few INVITEs each time.
        s3 = sip_status(ctx)
        _, (d0, d1) = uac(ctx, name, "D_steady", 40, rate=10, duration_ms=0)
        s4 = sip_status(ctx)
        wait_calls_down(ctx)
        log = ctx.sbc.log_since(log_off, None)
        cap.stop()
        ur1, ur2 = gw1.stop(), gw2.stop()
    reqs = sip_requests(d / "pub0.pcap")
    check_probe_source(reqs)
    a2, a1n = initial_invites(reqs, GW2_IP, a0, a1), initial_invites(reqs, GW1_IP, a0, a1)
    b2, b1n = initial_invites(reqs, GW2_IP, b0, b1), initial_invites(reqs, GW1_IP, b0, b1)
    d2, d1n = initial_invites(reqs, GW2_IP, d0, d1), initial_invites(reqs, GW1_IP, d0, d1)
    changes = state_changes(log, GW2_IP)
    check(fd <= len(a2) <= fd + 1 and len(a1n) == 5,
          f"A: GW2 got {len(a2)} INVITEs (want {fd}, the failures_down, or {fd + 1}), GW1 {len(a1n)} (want 5)")
    check(fo_a == len(a2), f"A: status sip.failovers went up by {fo_a}, GW2 got {len(a2)} INVITEs (503 each)")
    check(any("destination down" in x and "reason=INVITE 503" in x for x in changes),
          f"no SBC log line 'destination down gateway={GW2_IP}:5060 ... reason=INVITE 503': {changes}")
    check(not b2 and len(b1n) == 20,
          f"B: the burst sent right after GW2 went down: {len(b2)} INVITEs to GW2 (want 0), {len(b1n)} to GW1 "
          f"(want 20); GW2 after the burst: {brief(g2b)}; burst {b0 - a1:.2f}-{b1 - a1:.2f} s after A")
    check(fo_b == 0, f"B: status sip.failovers went up by {fo_b} (want 0: GW2 skipped)")
    check(g2b["state"] == "down", f"B: GW2 up again {b1 - a1:.2f} s after going down: {brief(g2b)}")
    span = d1 - d0
    most = (fd + 1) * (1 + math.floor(span / interval(h)))
    check(fd <= len(d2) <= most and len(d1n) == 40,
          f"D: of 40 calls in {span:.1f} s GW2 got {len(d2)} INVITEs (want {fd}..{most}: at most "
          f"{fd + 1} per up period, one up period per {interval(h):.0f} s), GW1 {len(d1n)} (want 40)")
    fo_d = delta(s4, s3, "failovers")
    check(fo_d == len(d2), f"D: status sip.failovers went up by {fo_d}, GW2 got {len(d2)} INVITEs")
    check(delta(s4, s0, "calls_no_gateway_up") == 0,
          f"status sip.calls_no_gateway_up went up by {delta(s4, s0, 'calls_no_gateway_up')} while GW1 was up")
    uas_clean(ur1, "GW1")
    uas_clean(ur2, "GW2")
    print(f"  (A: GW2 {len(a2)} INVITEs of 5 calls, then down; B: 20 calls {b0 - a1:.2f} s later all at "
          f"GW1; C: GW2 up {down_for:.1f} s after A; D: GW2 {len(d2)} of 40 calls in {span:.1f} s "
          f"(bound {most}); {len([x for x in changes if 'down' in x])} downs logged)", flush=True)


@lab_test(restarts_sbc=True)
def health_set_state(ctx: Ctx):
    """[health] interval 1 s, timeout 500 ms. Group 1 = GW1 .10 (priority 1) + GW2 .11 (priority 2),
    both answering. `sbcctl dispatcher set-state <GW2> disabled` shows it DX, down, "set disabled";
    for the next 3 s no new OPTIONS leaves pub0 for .11 (a probe in flight when the API answered
    may be resent until its 500 ms timeout) while GW1 is still probed, and 10 calls all go to GW1. `set-state <GW2> active`
    shows it AP, up at once (logged "set active"): 10 calls all go to GW2 and its probes resume."""
    name = "health_set_state"
    d = ctx.tdir(name)
    h = HEALTH
    use_sbcctl = sbcctl_path(ctx) is not None

    def set_state(gid: int, state: str) -> dict:
        if use_sbcctl:
            out = sbcctl(ctx, "dispatcher", "set-state", str(gid), state)
            rows = dispatcher_table(out)
            check(len(rows) == 1, f"sbcctl dispatcher set-state {gid} {state} printed:\n{out}")
            return rows[0]
        r = ctx.api.request("POST", "/api/v1/dispatcher/state", {"id": gid, "state": state})
        check(r.code == 200, f"POST /api/v1/dispatcher/state {gid} {state} -> {r.code} {r.body[:300]}")
        return r.json()["destinations"][0]

    with contextlib.ExitStack() as stack:
        gw1 = stack.enter_context(Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas_10"))
        gw2 = stack.enter_context(Uas("gw", "uas_simple", GW2_IP, 5060, d, "uas_11"))
        stack.enter_context(health_on(ctx, h))
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 1), gw(GW2_IP, 1, 2)]))
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter="udp")
        stack.callback(cap.stop)
        log_off = ctx.sbc.log_size()
        g2, took, seen = wait_dest(ctx, GW2_IP, lambda x: x["probes"] >= 1 and x["reason"] == "OPTIONS 200",
                                   timeout(h) + SLACK_S)
        check(took is not None and g2["flags"] == "AP", f"GW2 should be AP after its first probe: {brief(g2)}")
        gid = g2["id"]

        row = set_state(gid, "disabled")
        t_dis = time.time()     # the API answers once the engine has applied the state
        check(row["flags"] == "DX" and row["state"] == "down" and row["reason"] == "set disabled",
              f"set-state {gid} disabled: {row} (want flags DX, down, 'set disabled')")
        g2d = dest(dispatcher(ctx), GW2_IP)
        check(g2d["admin"] == "disabled", f"GW2 after set-state disabled: admin {g2d['admin']!r}")
        _, (c0, c1) = uac(ctx, name, "disabled", 10, rate=10, duration_ms=0)
        time.sleep(max(0.0, t_dis + 3 * interval(h) - time.time()))
        t_act = time.time()
        row = set_state(gid, "active")
        # Active probes at once: the answer may show that probe's result already.
        check(row["flags"] == "AP" and row["state"] == "up" and row["reason"] in ("set active", "OPTIONS 200"),
              f"set-state {gid} active: {row} (want flags AP, up, 'set active' or 'OPTIONS 200')")
        _, (e0, e1) = uac(ctx, name, "active", 10, rate=10, duration_ms=0)
        time.sleep(interval(h) + 0.3)
        t_end = time.time()
        g2e = dest(dispatcher(ctx), GW2_IP)
        wait_calls_down(ctx)
        log = ctx.sbc.log_since(log_off, None)
        cap.stop()
        ur1, ur2 = gw1.stop(), gw2.stop()
    reqs = sip_requests(d / "pub0.pcap")
    check_probe_source(reqs)
    opts = lambda ip, t0, t1: [r for r in reqs if r["method"] == "OPTIONS" and r["dst"] == ip and t0 <= r["ts"] < t1]
    before = {r["branch"] for r in opts(GW2_IP, 0, t_dis)}
    while_dis = opts(GW2_IP, t_dis, t_act)
    new = [r for r in while_dis if r["branch"] not in before]
    late = [r for r in while_dis if r["ts"] > t_dis + timeout(h) + 0.2]
    check(not new and not late,
          f"OPTIONS to disabled GW2 {GW2_IP}: {len(new)} new probes, {len(late)} sent over "
          f"{timeout(h):.1f} s after set-state disabled ({fmt_ts(t_dis)}): "
          + ", ".join(fmt_ts(r["ts"]) for r in (new + late)[:5]))
    g1_probes = opts(GW1_IP, t_dis, t_act)
    check(len(g1_probes) >= 2, f"GW1 got {len(g1_probes)} OPTIONS in the {t_act - t_dis:.1f} s GW2 was disabled")
    c2, c1n = initial_invites(reqs, GW2_IP, c0, c1), initial_invites(reqs, GW1_IP, c0, c1)
    check(not c2 and len(c1n) == 10, f"calls while GW2 was disabled: {len(c2)} to GW2, {len(c1n)} to GW1 (want 0, 10)")
    e2, e1n = initial_invites(reqs, GW2_IP, e0, e1), initial_invites(reqs, GW1_IP, e0, e1)
    check(len(e2) == 10 and not e1n, f"calls after set-state active: {len(e2)} to GW2 (priority 2), "
                                     f"{len(e1n)} to GW1 (want 10, 0)")
    changes = state_changes(log, GW2_IP)
    want = ["destination down", "reason=set disabled", "destination up", "reason=set active"]
    check(len(changes) == 2 and all(w in changes[i // 2] for i, w in enumerate(want)),
          f"SBC log: GW2's changes of state {changes} (want down 'set disabled', then up 'set active')")
    resumed = opts(GW2_IP, t_act, t_end)
    check(len(resumed) >= 1, f"no OPTIONS to GW2 in the {t_end - t_act:.1f} s after set-state active")
    check(g2e["state"] == "up" and g2e["flags"] == "AP", f"GW2 at the end: {brief(g2e)}")
    uas_clean(ur1, "GW1")
    uas_clean(ur2, "GW2")
    print(f"  (GW2 disabled {t_act - t_dis:.1f} s: {len(while_dis)} OPTIONS to it "
          f"({len(new)} new), GW1 probed {len(g1_probes)} times, 10/10 calls at GW1; active again: "
          f"10/10 calls at GW2, {len(resumed)} probes to it in {t_end - t_act:.1f} s)", flush=True)
