"""Gateways by host name (RFC 3263; issue 14): a destination `sip:HOST[:port]` is resolved by the
control plane with the resolver configuration the SBC sees at start (/etc/resolv.conf and
/etc/hosts inside ns sbc: `ip netns exec` bind-mounts /etc/netns/sbc/{resolv.conf,hosts} over
them). Each test writes those files, restarts the SBC, and at the end removes them and restarts it
with the lab config again (so it runs after the others); the DNS tests' server is kit/dns.py
(dnslib) on 127.0.0.1:53 inside ns sbc, its zone rewritten while the SBC runs:

  dns_quick_start_host_name  the README's `sbcctl add-gateway 1 "sip:livekit-gw1.example.com:5060"
                             "LiveKit Primary" 10 50` with the name in a hosts file: stored, shown
                             resolved in GET /api/v1/gateways and /dispatcher, calls reach the UAS
  dns_srv_ttl_moves_calls    `sip:lk.example.test` (no port: NAPTR, SRV, A; TTL 1 s) added to the
                             running SBC: calls follow the SRV target's A record when it changes
                             (none lost), SRV priority picks the target, a 503 there fails over to
                             the next SRV target, removing a target moves the calls; health probes
                             reach every resolved address; the NAPTR path (SIP+D2U chosen over
                             SIP+D2T, its replacement used) and the A fallback at 5060 seen in
                             GET /api/v1/gateways
  dns_unresolvable_is_down   names that do not resolve (NXDOMAIN) in group 1: their gateways have
                             no address, listed down with a "DNS: ..." reason; every call goes to
                             the backup group at once (no failover, no delay); sips: with
                             ;transport=udp, ;transport=sctp and bad host names are refused naming the field
                             `destination`
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path

from kit.addresses import API_BASE, CARRIER_IP, GW1_IP, GW2_IP, GW3_IP, SBC_PRIV, gw_uri
from kit.calls import uac_outcomes, wait_calls_down
from kit.ctx import Ctx, check
from kit.dns import DnsServer, brief_queries, netns_etc
from kit.proc import nsexec
from kit.provisioning import BASE_CARRIERS, LAB_ROUTING, Provisioned
from kit.registry import lab_test
from kit.sip import received_invites, sipp_messages
from kit.sipp import Uas, run_uac

TTL = 1                         # the records that change, seconds
REFRESH_LIMIT = TTL + 3.5       # TTL, the SBC's 1 s expiry check, a second answer kept by the
                                # resolver's cache a moment longer, slack
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
SOA = "example.test. 1 IN SOA ns.example.test. hostmaster.example.test. 1 1 1 1 1\n"
PROBE_WINDOW_S = 3.0            # [health] interval_s 1: two probes of a new address within this
SLACK_S = 0.5                   # the API shows a new answer a moment before the engine routes with it


# --- the API's view of names ----------------------------------------------------------------------

def gateways(ctx: Ctx) -> list[dict]:
    r = ctx.api.request("GET", "/api/v1/gateways")
    check(r.code == 200 and isinstance(r.json(), list), f"GET /api/v1/gateways -> {r.code} {r.body[:300]}")
    return r.json()


def gateway(ctx: Ctx, destination: str) -> dict:
    rows = [g for g in gateways(ctx) if g.get("destination") == destination]
    check(len(rows) == 1, f"GET /api/v1/gateways: {len(rows)} rows with destination {destination}: "
                          f"{json.dumps(gateways(ctx))[:600]}")
    return rows[0]


def dispatcher_dest(ctx: Ctx, gid: int) -> dict:
    r = ctx.api.request("GET", "/api/v1/dispatcher")
    check(r.code == 200 and isinstance(r.json(), dict), f"GET /api/v1/dispatcher -> {r.code} {r.body[:300]}")
    found = [d for d in r.json().get("destinations", []) if d.get("id") == gid]
    check(len(found) == 1, f"GET /api/v1/dispatcher: gateway {gid} listed {len(found)} times: {r.body[:600]}")
    return found[0]


def addresses(row: dict) -> list[str] | None:
    dns = row.get("dns")
    return [a.get("address") for a in dns.get("addresses", [])] if isinstance(dns, dict) else None


def wait_addresses(ctx: Ctx, destination: str, want: list[str], limit: float) -> tuple[dict, float | None, list]:
    """Poll GET /api/v1/gateways until the gateway's dns.addresses are `want` (in that order).
    Returns the last row, the seconds waited (None: never) and the answers seen [(s, addresses)]."""
    t0 = time.monotonic()
    seen: list = []
    while True:
        row = gateway(ctx, destination)
        el = time.monotonic() - t0
        a = addresses(row)
        if not seen or seen[-1][1] != a:
            seen.append((round(el, 2), a))
        if a == want:
            return row, el, seen
        if el >= limit:
            return row, None, seen
        time.sleep(0.05)


def dns_changed_lines(ctx: Ctx, offset: int) -> list[str]:
    try:
        with open(ctx.sbc.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return [f"<{e}>"]
    return [x.strip() for x in text.splitlines() if "DNS answer changed" in x]


def sbcctl_path(ctx: Ctx) -> Path | None:
    p = ctx.sbc.binary.with_name("sbcctl")
    return p if p.exists() else None


def sbcctl_run(ctx: Ctx, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(nsexec("sbc", [sbcctl_path(ctx), "--api", API_BASE] + list(args)),
                          capture_output=True, text=True, timeout=20)


# --- the SBC with a resolver configuration ---------------------------------------------------------

@contextlib.contextmanager
def sbc_resolving(ctx: Ctx, files: dict[str, str], health: dict | None = None):
    """/etc/netns/sbc/<files> written and the SBC restarted to read them (with `health` as its
    [health] table, if given); afterwards the files removed and the SBC restarted with the lab
    config (no [health])."""
    try:
        with netns_etc("sbc", files):
            ctx.sbc.restart(LAB_ROUTING, health=health or {})
            yield
    finally:
        ctx.sbc.restart(LAB_ROUTING, health={})


def invites(uas: Uas, t0: float = 0.0, t1: float = float("inf")) -> list:
    """Initial INVITEs the (stopped) UAS received within [t0, t1] (wall clock)."""
    return [m for m in received_invites(uas.files.get("messages")) if t0 <= m.ts <= t1]


def options(uas: Uas, t0: float = 0.0, t1: float = float("inf")) -> list:
    return [m for m in sipp_messages(uas.files.get("messages"))
            if m.direction == "received" and m.is_request("OPTIONS") and t0 <= m.ts <= t1]


def uac(ctx: Ctx, name: str, tag: str, calls: int, rate: float):
    """`calls` calls from the carrier into the SBC (sipp uac_simple, 100 ms each). Returns the
    result and its wall-clock window."""
    t0 = time.time()
    r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, ctx.tdir(name), f"{tag}_uac",
                calls=calls, rate=rate, limit=max(10, int(rate)), duration_ms=100, timeout_s=30)
    return r, (t0, time.time())


def sip_counter(ctx: Ctx, key: str) -> int:
    return int((ctx.api.status().get("sip") or {}).get(key, 0) or 0)


def ts(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


# --- the tests -----------------------------------------------------------------------------------

@lab_test(restarts_sbc=True)
def dns_quick_start_host_name(ctx: Ctx):
    """The README's quick start by name: /etc/netns/sbc/hosts maps livekit-gw1.example.com to
    203.0.113.10 (resolv.conf: 127.0.0.1, where nothing answers), the SBC restarted. `sbcctl
    add-gateway 1 "sip:livekit-gw1.example.com:5060" "LiveKit Primary" 10 50` exits 0 (it used to
    be refused: "host must be an IPv4 address"); GET /api/v1/gateways shows its dns.addresses
    [203.0.113.10:5060 (priority 0, weight 0)] with no error and an expiry; GET /api/v1/dispatcher
    lists it with addresses [203.0.113.10:5060], not down; 5 calls from the carrier all reach the
    sipp UAS on 203.0.113.10 and succeed."""
    name = "dns_quick_start_host_name"
    d = ctx.tdir(name)
    host = "livekit-gw1.example.com"
    dest = f"sip:{host}:5060"
    want = f"{GW1_IP}:5060"
    files = {"hosts": f"127.0.0.1 localhost\n{GW1_IP} {host}\n", "resolv.conf": RESOLV_CONF}
    with contextlib.ExitStack() as stack:
        stack.enter_context(sbc_resolving(ctx, files))
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, []))
        if sbcctl_path(ctx):
            r = sbcctl_run(ctx, "add-gateway", "1", dest, "LiveKit Primary", "10", "50")
            (d / "sbcctl_add_gateway.txt").write_text(f"exit {r.returncode}\n{r.stdout}{r.stderr}")
            check(r.returncode == 0, f"sbcctl add-gateway 1 {dest!r} 'LiveKit Primary' 10 50 -> exit "
                                     f"{r.returncode}: {r.stderr.strip()} {r.stdout.strip()}")
            how = "sbcctl"
        else:
            ctx.api.add_gateway(dest, 1, 10, 50, "LiveKit Primary")
            how = "API (no sbcctl next to the sbc)"
        row = gateway(ctx, dest)
        (d / "gateways.json").write_text(json.dumps(gateways(ctx), indent=1))
        check(row.get("group") == 1 and row.get("priority") == 10 and row.get("weight") == 50
              and row.get("description") == "LiveKit Primary", f"stored gateway: {row}")
        dns = row.get("dns")
        check(isinstance(dns, dict), f"GET /api/v1/gateways: no `dns` object for {dest}: {row}")
        check(dns.get("addresses") == [{"address": want, "priority": 0, "weight": 0}]
              and dns.get("error") is None,
              f"dns of {dest}: {dns} (want addresses [{want} priority 0 weight 0], error null)")
        exp = dns.get("expires_in_s")
        check(isinstance(exp, int) and 0 < exp <= 3600, f"dns.expires_in_s of {dest}: {exp!r} (want 1..3600)")
        dd = dispatcher_dest(ctx, row["id"])
        check(dd.get("addresses") == [want] and dd.get("state") == "up"
              and not str(dd.get("reason", "")).startswith("DNS:"),
              f"GET /api/v1/dispatcher for {dest}: {dd} (want addresses [{want}], up)")

        t0 = time.time()
        with Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas_10") as u:
            r, _ = uac(ctx, name, "calls", 5, 10)
            u.stop()
        got = invites(u, t0)
        check(r.ok(5), f"calls to the gateway by name: {r.summary()}\n{r.diagnostics()}")
        check(len(got) == 5, f"the UAS on {GW1_IP} got {len(got)} INVITEs of 5 calls")
        wait_calls_down(ctx)
    print(f"  ({how}: {dest} stored, resolved to {want} (expires in {exp} s); 5/5 calls at {GW1_IP}, "
          f"Request-URI {got[0].first_line.split()[1]})", flush=True)


def lk_zone(srv: list[tuple[int, int, int, str]], a: dict[str, str], ttl: int = TTL) -> str:
    """lk.example.test: SRV _sip._udp.lk.example.test -> `srv` [(priority, weight, port, target)],
    A records `a` {target: ip}; plus the API-only names of dns_srv_ttl_moves_calls."""
    lines = [SOA]
    lines += [f"_sip._udp.lk.example.test. {ttl} IN SRV {p} {w} {port} {t}.\n" for p, w, port, t in srv]
    lines += [f"{t}. {ttl} IN A {ip}\n" for t, ip in a.items()]
    return "".join(lines) + STATIC_ZONE


# Names that do not change (TTL 60): nap.example.test by NAPTR -- SIP+D2T (order 10, skipped:
# TCP) and SIP+D2U (order 20) -> _sip._udp.pool.example.test -> u.pool:5070 = .10 (the
# _sip._udp.nap.example.test SRV, pointing elsewhere, must not be used); plain.example.test with
# neither NAPTR nor SRV: its A record at 5060. Over TCP nap.example.test takes the SIP+D2T NAPTR
# (-> t.pool:5090 = .11); sips:sec.example.test has no NAPTR: SRV _sips._tcp -> u.pool:5061 = .10.
STATIC_ZONE = f"""\
nap.example.test. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.pool.example.test.
nap.example.test. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.pool.example.test.
_sip._tcp.pool.example.test. 60 IN SRV 10 5 5090 t.pool.example.test.
_sip._udp.pool.example.test. 60 IN SRV 10 5 5070 u.pool.example.test.
_sip._udp.nap.example.test. 60 IN SRV 10 5 5080 t.pool.example.test.
t.pool.example.test. 60 IN A {GW2_IP}
u.pool.example.test. 60 IN A {GW1_IP}
plain.example.test. 60 IN A {GW1_IP}
_sips._tcp.sec.example.test. 60 IN SRV 10 5 5061 u.pool.example.test.
"""


@lab_test(restarts_sbc=True)
def dns_srv_ttl_moves_calls(ctx: Ctx):
    """The lab DNS server on 127.0.0.1:53 in ns sbc; the SBC restarted with resolv.conf pointing
    there and [health] interval 1 s (failures_down 10: probes only watched). Then, on the running
    SBC, group 1 = `sip:lk.example.test` (no port; no NAPTR: SRV _sip._udp.lk.example.test, TTL 1 s).
    UASes run on .10, .11, .12 (200) and .12:5062 (503) throughout.
    1. SRV 10 -> a.lk, A .10: GET /api/v1/gateways shows [.10:5060 priority 10 weight 1],
       expires_in_s <= 1; the dispatcher [.10:5060]; 5 calls all at .10.
    2. While 140 calls run at 20 cps, a.lk's A record becomes .11: GET /api/v1/gateways shows
       .11:5060 within TTL + 3.5 s, the SBC logs "DNS answer changed"; every call succeeds, no
       INVITE reaches .10 after the change was shown (+0.5 s), none reaches .11 before the change,
       and the later calls all go to .11.
    3. SRV 10 -> a.lk (.11), SRV 20 -> b.lk (.12): both shown in that order; 10 calls all at .11.
    4. SRV 10 -> c.lk:5062 (.12, answers 503), SRV 20 -> b.lk (.12:5060): 5 calls each tried at
       .12:5062 and then .12:5060 (sip.failovers +5), all succeed.
    5. Only SRV 20 -> b.lk: shown alone; 10 calls all at .12:5060.
    Probes: no OPTIONS reaches .12:5060 before it is a target, at least 2 in the 3 s (at least)
    it is the second SRV target (3-4). Also: `sip:nap.example.test` (group 7) resolves through its SIP+D2U NAPTR to
    [.10:5070 priority 10 weight 5] and `sip:plain.example.test` (group 8) to its A record
    [.10:5060 priority 0 weight 0], expiring in 60 s at most; the dispatcher shows the same;
    `sip:nap.example.test;transport=tcp` (group 9) through its SIP+D2T NAPTR to [.11:5090] and
    `sips:sec.example.test` (group 10) through SRV _sips._tcp to [.10:5061], shown as tcp and tls."""
    name = "dns_srv_ttl_moves_calls"
    d = ctx.tdir(name)
    lk = "sip:lk.example.test"
    a10, a11, a12, a12b = (f"{GW1_IP}:5060", f"{GW2_IP}:5060", f"{GW3_IP}:5060", f"{GW3_IP}:5062")
    health = {"interval_s": 1, "timeout_ms": 500, "failures_down": 10, "successes_up": 1}
    gws = [{"destination": lk, "group": 1, "priority": 1, "weight": 1, "description": "lk by SRV"},
           {"destination": "sip:nap.example.test", "group": 7, "priority": 1, "weight": 1,
            "description": "by NAPTR"},
           {"destination": "sip:plain.example.test", "group": 8, "priority": 1, "weight": 1,
            "description": "by A"},
           {"destination": "sip:nap.example.test;transport=tcp", "group": 9, "priority": 1, "weight": 1,
            "description": "by NAPTR over TCP"},
           {"destination": "sips:sec.example.test", "group": 10, "priority": 1, "weight": 1,
            "description": "by SRV over TLS"}]
    notes = []
    with contextlib.ExitStack() as stack:
        uas = {k: stack.enter_context(Uas("gw", scen, ip, port, d, k))
               for k, scen, ip, port in (("uas_10", "uas_simple", GW1_IP, 5060),
                                         ("uas_11", "uas_simple", GW2_IP, 5060),
                                         ("uas_12", "uas_simple", GW3_IP, 5060),
                                         ("uas_12_5062", "uas_503", GW3_IP, 5062))}
        dns = stack.enter_context(DnsServer(d, lk_zone([(10, 1, 5060, "a.lk.example.test")],
                                                        {"a.lk.example.test": GW1_IP})))
        stack.enter_context(sbc_resolving(ctx, {"resolv.conf": RESOLV_CONF}, health))
        log_off = ctx.sbc.log_size()
        t_prov = time.time()
        p = stack.enter_context(Provisioned(ctx, BASE_CARRIERS, gws))
        gid = p["gateways"][0]["id"]

        def diag(since: float) -> str:
            return (f"\n--- GET /api/v1/gateways: {json.dumps(gateways(ctx))}\n--- SBC log 'DNS answer "
                    f"changed': {dns_changed_lines(ctx, log_off)}\n--- DNS queries since "
                    f"{ts(since)}:\n{brief_queries(dns.queries(since))}")

        # 0. The NAPTR and A paths, from the API.
        for dest, want, transport in (
                ("sip:nap.example.test", [{"address": f"{GW1_IP}:5070", "priority": 10, "weight": 5}], "udp"),
                ("sip:plain.example.test", [{"address": a10, "priority": 0, "weight": 0}], "udp"),
                ("sip:nap.example.test;transport=tcp", [{"address": f"{GW2_IP}:5090", "priority": 10, "weight": 5}],
                 "tcp"),
                ("sips:sec.example.test", [{"address": f"{GW1_IP}:5061", "priority": 10, "weight": 5}], "tls")):
            row = gateway(ctx, dest)
            check(row.get("transport") == transport, f"{dest}: transport {row.get('transport')!r} (want {transport})")
            v = row.get("dns") or {}
            check(v.get("addresses") == want and v.get("error") is None
                  and isinstance(v.get("expires_in_s"), int) and 0 <= v["expires_in_s"] <= 60,
                  f"{dest}: dns {v} (want addresses {want}, error null, expires_in_s 0..60)" + diag(t_prov))
            dd = dispatcher_dest(ctx, row["id"])
            check(dd.get("addresses") == [x["address"] for x in want],
                  f"GET /api/v1/dispatcher for {dest}: addresses {dd.get('addresses')}")
        asked = {(q["type"], q["name"]) for q in dns.queries(t_prov)}
        check(("SRV", "_sip._udp.pool.example.test.") in asked and ("SRV", "_sip._udp.nap.example.test.") not in asked
              and ("SRV", "_sip._tcp.nap.example.test.") not in asked
              and ("SRV", "_sip._tcp.pool.example.test.") in asked and ("SRV", "_sips._tcp.sec.example.test.") in asked,
              f"sip:nap.example.test: the SBC should ask only the NAPTRs' SRVs (_sip._udp.pool.example.test for "
              f"UDP, _sip._tcp.pool.example.test for TCP) and _sips._tcp.sec.example.test for sips:; it asked "
              f"{sorted(asked)}")

        # 1. SRV -> a.lk -> .10
        row = gateway(ctx, lk)
        v = row.get("dns") or {}
        check(v.get("addresses") == [{"address": a10, "priority": 10, "weight": 1}] and v.get("error") is None,
              f"{lk}: dns {v} (want [{a10} priority 10 weight 1], no error)" + diag(t_prov))
        check(isinstance(v.get("expires_in_s"), int) and v["expires_in_s"] <= TTL,
              f"{lk}: dns.expires_in_s {v.get('expires_in_s')!r} (TTL {TTL} s)")
        check(("NAPTR", "lk.example.test.") in asked and ("SRV", "_sip._udp.lk.example.test.") in asked
              and ("A", "a.lk.example.test.") in asked,
              f"{lk}: want NAPTR lk, SRV _sip._udp.lk and A a.lk asked; the SBC asked {sorted(asked)}")
        dd = dispatcher_dest(ctx, gid)
        check(dd.get("addresses") == [a10], f"GET /api/v1/dispatcher for {lk}: {dd}")
        r1, w1 = uac(ctx, name, "p1", 5, 10)
        check(r1.ok(5), f"1: calls to {lk} (-> {a10}): {r1.summary()}\n{r1.diagnostics()}")

        # 2. a.lk's A record moves to .11 while calls run.
        res: dict = {}
        th = threading.Thread(target=lambda: res.update(r=uac(ctx, name, "p2", 140, 20)))
        t2_0 = time.time()
        th.start()
        try:
            time.sleep(1.0)
            t_change = dns.set_zone(lk_zone([(10, 1, 5060, "a.lk.example.test")], {"a.lk.example.test": GW2_IP}))
            row, took, seen = wait_addresses(ctx, lk, [a11], REFRESH_LIMIT)
            t_seen = time.time()
            changed = dns_changed_lines(ctx, log_off)
            moved_diag = diag(t_change - 3)
        finally:
            th.join(60)
        r2, w2 = res["r"]
        lk_asked = [q["t"] for q in dns.queries(t_prov) if "lk.example.test" in q["name"]]
        check(took is not None,
              f"2: {lk}: a.lk.example.test's A record changed to {GW2_IP} (TTL {TTL} s) at {ts(t_change)}, "
              f"GET /api/v1/gateways still shows {addresses(row)} {REFRESH_LIMIT:.1f} s later "
              f"(answers seen: {seen}); the SBC's last question about lk.example.test was at "
              f"{ts(max(lk_asked)) if lk_asked else 'never'} (gateway added at {ts(t_prov)}){moved_diag}")
        check(r2.ok(140), f"2: calls while the record changed: {r2.summary()}\n{r2.diagnostics()}")
        check(any("lk.example.test" in x and GW2_IP in x for x in changed),
              f"2: no SBC log line 'DNS answer changed' for lk.example.test -> {GW2_IP}: {changed}")
        notes.append(f"2: A change shown after {took:.2f} s")

        # 3. Two SRV targets: priority 10 (.11) takes every call.
        t3_change = dns.set_zone(lk_zone([(10, 1, 5060, "a.lk.example.test"), (20, 1, 5060, "b.lk.example.test")],
                                         {"a.lk.example.test": GW2_IP, "b.lk.example.test": GW3_IP}))
        row, took, seen = wait_addresses(ctx, lk, [a11, a12], REFRESH_LIMIT)
        t3_seen = time.time()
        check(took is not None, f"3: {lk}: a second SRV target (priority 20, {a12}) not shown "
                                f"{REFRESH_LIMIT:.1f} s after the change; seen {seen}" + diag(t3_change - 1))
        v = row["dns"]
        check(v["addresses"] == [{"address": a11, "priority": 10, "weight": 1},
                                 {"address": a12, "priority": 20, "weight": 1}] and v.get("error") is None,
              f"3: {lk}: dns {v}")
        check(isinstance(v.get("expires_in_s"), int) and v["expires_in_s"] <= TTL,
              f"3: {lk}: dns.expires_in_s {v.get('expires_in_s')!r} (TTL {TTL} s)")
        dd = dispatcher_dest(ctx, gid)
        check(dd.get("addresses") == [a11, a12], f"3: GET /api/v1/dispatcher for {lk}: {dd}")
        notes.append(f"3: second target shown after {took:.2f} s")
        r3, w3 = uac(ctx, name, "p3", 10, 20)
        check(r3.ok(10), f"3: {r3.summary()}\n{r3.diagnostics()}")

        # 4. The priority-10 target answers 503: each call fails over to the priority-20 one.
        t4_change = dns.set_zone(lk_zone([(10, 1, 5062, "c.lk.example.test"), (20, 1, 5060, "b.lk.example.test")],
                                         {"c.lk.example.test": GW3_IP, "b.lk.example.test": GW3_IP}))
        row, took, seen = wait_addresses(ctx, lk, [a12b, a12], REFRESH_LIMIT)
        check(took is not None, f"4: {lk}: [{a12b}, {a12}] not shown {REFRESH_LIMIT:.1f} s after the "
                                f"change; seen {seen}" + diag(t4_change - 1))
        fo0 = sip_counter(ctx, "failovers")
        r4, w4 = uac(ctx, name, "p4", 5, 10)
        fo4 = sip_counter(ctx, "failovers") - fo0
        check(r4.ok(5), f"4: calls with the priority-10 target answering 503: {r4.summary()}\n{r4.diagnostics()}")

        # 5. The priority-10 target removed from DNS: the priority-20 one takes the calls. (.12:5060
        # has been the second target for PROBE_WINDOW_S by then, time for 2 probes at least.)
        time.sleep(max(0.0, t3_seen + PROBE_WINDOW_S - time.time()))
        t5_change = dns.set_zone(lk_zone([(20, 1, 5060, "b.lk.example.test")], {"b.lk.example.test": GW3_IP}))
        row, took, seen = wait_addresses(ctx, lk, [a12], REFRESH_LIMIT)
        check(took is not None, f"5: {lk}: [{a12}] not shown {REFRESH_LIMIT:.1f} s after the priority-10 "
                                f"target was removed; seen {seen}" + diag(t5_change - 1))
        r5, w5 = uac(ctx, name, "p5", 10, 20)
        check(r5.ok(10), f"5: {r5.summary()}\n{r5.diagnostics()}")
        wait_calls_down(ctx)
        stopped = {k: u.stop(linger=0.2) for k, u in uas.items()}
    u10, u11, u12, u12b = (uas[k] for k in ("uas_10", "uas_11", "uas_12", "uas_12_5062"))

    def at(u: Uas, w) -> list:
        return invites(u, *w)

    c1 = [len(at(u, w1)) for u in (u10, u11, u12, u12b)]
    check(c1 == [5, 0, 0, 0], f"1: INVITEs at .10/.11/.12/.12:5062: {c1} (want all 5 at .10)")
    i10, i11 = at(u10, w2), at(u11, w2)
    late10 = [m for m in i10 if m.ts > t_seen + SLACK_S]
    early11 = [m for m in i11 if m.ts < t_change]
    after = [m for m in i11 if m.ts > t_seen + SLACK_S]
    others = len(at(u12, w2)) + len(at(u12b, w2))
    check(len(i10) + len(i11) == 140 and not others,
          f"2: of 140 calls .10 got {len(i10)}, .11 {len(i11)}, .12 {others} INVITEs")
    check(not late10, f"2: {len(late10)} INVITEs reached .10 after the API showed .11 ({ts(t_seen)}), "
                      f"e.g. at {', '.join(ts(m.ts) for m in late10[:5])}")
    check(not early11, f"2: {len(early11)} INVITEs reached .11 before its A record changed ({ts(t_change)})")
    check(len(after) >= 10, f"2: only {len(after)} calls reached .11 after the change was shown "
                            f"({ts(t_seen)}; run {ts(w2[0])}-{ts(w2[1])})")
    last10 = max((m.ts for m in i10), default=t2_0)
    c3 = [len(at(u, w3)) for u in (u10, u11, u12, u12b)]
    check(c3 == [0, 10, 0, 0], f"3: INVITEs at .10/.11/.12/.12:5062: {c3} (want all 10 at .11, SRV priority 10)")
    c4 = [len(at(u, w4)) for u in (u10, u11, u12, u12b)]
    check(c4 == [0, 0, 5, 5], f"4: INVITEs at .10/.11/.12/.12:5062: {c4} (want 5 at .12:5062, the "
                              f"priority-10 target answering 503, and 5 at .12:5060 after it)")
    check(fo4 == 5, f"4: status sip.failovers went up by {fo4} (want 5)")
    c5 = [len(at(u, w5)) for u in (u10, u11, u12, u12b)]
    check(c5 == [0, 0, 10, 0], f"5: INVITEs at .10/.11/.12/.12:5062: {c5} (want all 10 at .12)")
    pre = options(u12, 0, t3_change)
    during = options(u12, t3_seen, t5_change)
    check(not pre, f"{len(pre)} OPTIONS reached {a12} before it was a target of {lk}")
    check(len(during) >= 2, f"{len(during)} OPTIONS reached {a12} in the {t5_change - t3_seen:.1f} s it "
                            f"was {lk}'s second SRV target (probing every 1 s)")
    for k, st in stopped.items():
        if st.failed:
            print(f"  note: {k}: {st.summary()}", flush=True)
    print(f"  ({'; '.join(notes)}; 2: last INVITE at .10 {last10 - t_change:+.2f} s after the change, "
          f"{len(i10)} at .10, {len(i11)} at .11; {len(during)} probes to the second target)", flush=True)


@lab_test(restarts_sbc=True)
def dns_unresolvable_is_down(ctx: Ctx):
    """The lab DNS server answers NXDOMAIN for everything; the SBC restarted to use it. Group 1 =
    `sip:gone.example.test` (no port: NAPTR, SRV, A asked) and `sip:gone-a.example.test:5060`
    (port: only A asked), both priority 2; backup group 3 = 203.0.113.12. Both are stored (201),
    GET /api/v1/gateways shows them with dns.addresses [], an error "DNS: ..." and expires_in_s
    1..30; the dispatcher lists them down, reason "DNS: ...", addresses []. 10 calls all reach .12
    at once: no failover, setup under 0.5 s each. `sbcctl add-gateway` (or the API) refuses
    `sips:x.example.test;transport=udp`, `sip:x.example.test;transport=sctp` (400, exit 1,
    naming `destination` and "only SIP over UDP") and the bad hosts `sip:bad_host.example.test`
    and `sip:-x.example.test` (400 naming `destination`); `sip:x.example.test;transport=udp` is
    accepted."""
    name = "dns_unresolvable_is_down"
    d = ctx.tdir(name)
    gone, gone_a = "sip:gone.example.test", "sip:gone-a.example.test:5060"
    gws = [{"destination": gone, "group": 1, "priority": 2, "weight": 1, "description": "gone"},
           {"destination": gone_a, "group": 1, "priority": 2, "weight": 1, "description": "gone-a"},
           {"destination": gw_uri(GW3_IP), "group": 3, "priority": 1, "weight": 1, "description": "backup"}]
    with contextlib.ExitStack() as stack:
        dns = stack.enter_context(DnsServer(d, SOA))
        stack.enter_context(sbc_resolving(ctx, {"resolv.conf": RESOLV_CONF}))
        t_prov = time.time()
        p = stack.enter_context(Provisioned(ctx, BASE_CARRIERS, gws))
        took_prov = time.time() - t_prov
        ids = {g["destination"]: g["id"] for g in p["gateways"]}
        for dest in (gone, gone_a):
            row = gateway(ctx, dest)
            v = row.get("dns")
            check(isinstance(v, dict) and v.get("addresses") == [] and str(v.get("error") or "").startswith("DNS:")
                  and isinstance(v.get("expires_in_s"), int) and 0 < v["expires_in_s"] <= 30,
                  f"{dest} (NXDOMAIN): dns {v} (want addresses [], error 'DNS: ...', expires_in_s 1..30)")
            dd = dispatcher_dest(ctx, ids[dest])
            check(dd.get("state") == "down" and str(dd.get("reason", "")).startswith("DNS:")
                  and dd.get("addresses") == [],
                  f"GET /api/v1/dispatcher for {dest}: {dd} (want down, reason 'DNS: ...', addresses [])")
        dd = dispatcher_dest(ctx, ids[gw_uri(GW3_IP)])
        check(dd.get("addresses") == [f"{GW3_IP}:5060"] and dd.get("state") == "up",
              f"GET /api/v1/dispatcher for the backup gateway: {dd}")
        check(gateway(ctx, gw_uri(GW3_IP)).get("dns", "absent") == "absent",
              f"an IPv4 literal has no `dns` in GET /api/v1/gateways: {gateway(ctx, gw_uri(GW3_IP))}")
        asked = [(q["type"], q["name"]) for q in dns.queries(t_prov)]
        check({("NAPTR", "gone.example.test."), ("SRV", "_sip._udp.gone.example.test."),
               ("A", "gone.example.test.")} <= set(asked),
              f"{gone}: want NAPTR, SRV _sip._udp and A asked; the SBC asked {asked}")
        check([x for x in asked if "gone-a" in x[1]] and all(t == "A" for t, n in asked if "gone-a" in n),
              f"{gone_a} (port written): only A should be asked; the SBC asked {asked}")

        fo0 = sip_counter(ctx, "failovers")
        t0 = time.time()
        with Uas("gw", "uas_simple", GW3_IP, 5060, d, "uas_12") as u:
            r, _ = uac(ctx, name, "calls", 10, 10)
            u.stop()
        fo = sip_counter(ctx, "failovers") - fo0
        check(r.ok(10), f"calls with group 1 unresolvable: {r.summary()}\n{r.diagnostics()}")
        got = invites(u, t0)
        check(len(got) == 10, f"the backup gateway {GW3_IP} got {len(got)} INVITEs of 10 calls")
        check(fo == 0, f"status sip.failovers went up by {fo}: an unresolvable gateway was tried")
        setup = sorted(uac_outcomes(r)["setup"].values())
        check(len(setup) == 10 and setup[-1] < 0.5, f"call setup times {[round(x, 3) for x in setup]} "
                                                    f"(want each under 0.5 s: nothing to wait for)")
        wait_calls_down(ctx)

        # Refused destinations.
        n0 = len(gateways(ctx))
        refused = {"sips:x.example.test;transport=udp": "cannot name transport=udp",
                   "sip:x.example.test;transport=sctp": "transport must be udp, tcp or tls",
                   "sip:bad_host.example.test": "",
                   "sip:-x.example.test": ""}
        for dest, words in refused.items():
            body = {"destination": dest, "group": 9, "priority": 1, "weight": 1, "description": "refused"}
            r = ctx.api.request("POST", "/api/v1/gateways", body)
            err = str((r.json() or {}).get("error", "")) if isinstance(r.json(), dict) else r.body
            check(r.code == 400 and "destination" in err and words in err,
                  f"POST /api/v1/gateways {dest!r} -> {r.code} {r.body[:300]} (want 400 naming "
                  f"`destination`, saying {words!r})")
        if sbcctl_path(ctx):
            for dest in ("sip:x.example.test;transport=sctp",):
                r = sbcctl_run(ctx, "add-gateway", "1", dest, "refused", "1", "1")
                check(r.returncode == 1 and "destination" in r.stderr and "transport must be" in r.stderr,
                      f"sbcctl add-gateway 1 {dest!r} -> exit {r.returncode}, stderr {r.stderr.strip()!r} "
                      f"(want exit 1 naming destination, 'transport must be ...')")
        check(len(gateways(ctx)) == n0, f"refused destinations were stored: {gateways(ctx)}")
        ok = ctx.api.add_gateway("sip:x.example.test;transport=udp", 9, 1, 1, "udp by name")
        check(isinstance(ok.get("id"), int), f"POST sip:x.example.test;transport=udp: {ok}")
    print(f"  (provisioned in {took_prov:.2f} s; 10/10 calls at the backup {GW3_IP}, setup "
          f"{setup[0] * 1000:.0f}-{setup[-1] * 1000:.0f} ms, no failover; "
          f"{len(refused)} destinations refused)", flush=True)
