"""Tests of the routing policy, rule by rule: tenants found by source IP, X-Tenant-ID header and
number prefix; weighted dispatch; failover on 503 and on silence; the backup group; failover
between carriers for outbound calls; CPS and concurrency limits per tenant; and INVITEs from an
unknown source answered 403 or dropped (unknown_source; restarts the SBC)."""
from __future__ import annotations

import time

from kit.addresses import (CARRIER2_IP, CARRIER_IP, GW1_IP, GW2_IP, GW3_IP, SBC_PRIV, SBC_PRIV_IP,
                           SBC_PUB, TENANT_TRUNK_IP, gw_uri)
from kit.calls import (burst, first_trace, invites_at, run_calls, sip_counter, uac_outcomes,
                       wait_calls_down, where)
from kit.ctx import Ctx, check
from kit.provisioning import (BASE_CARRIERS, BASE_GATEWAYS, FAILOVER_TIMEOUT_S, LAB_ROUTING, NUMBER,
                              Provisioned, gw, tenant)
from kit.registry import lab_test
from kit.sip import options_status, sipsend


@lab_test
def tenant_by_source_ip(ctx: Ctx):
    """Tenant srcten = source 10.0.1.50, group 2 (.11). A call from 10.0.1.50 lands on .11 with
    X-Tenant-ID: srcten; a call from 10.0.1.10 (no tenant) stays on group 1 (.10) without it."""
    with Provisioned(ctx, [(CARRIER_IP, 32), (TENANT_TRUNK_IP, 32)],
                     [gw(GW1_IP, 1), gw(GW2_IP, 2)],
                     [tenant("srcten", TENANT_TRUNK_IP, 2)]):
        r, res = run_calls(ctx, "tenant_by_source_ip", uac_ip=TENANT_TRUNK_IP, tag="src50",
                           uas={GW1_IP: "uas_simple", GW2_IP: "uas_simple"})
        inv = invites_at(res)
        check(r.ok(1), f"call from {TENANT_TRUNK_IP} failed: {r.summary()} ({where(res)})\n{r.diagnostics()}")
        check(len(inv[GW2_IP]) == 1 and not inv[GW1_IP],
              f"call from {TENANT_TRUNK_IP} should reach {GW2_IP} (group 2 of srcten): {where(res)}")
        hdr = inv[GW2_IP][0].headers("X-Tenant-ID")
        check(hdr == ["srcten"], f"X-Tenant-ID at the gateway: {hdr} (want ['srcten'])\n"
                                 + first_trace(res, GW2_IP))
        r, res = run_calls(ctx, "tenant_by_source_ip", uac_ip=CARRIER_IP, tag="src10",
                           uas={GW1_IP: "uas_simple", GW2_IP: "uas_simple"})
        inv = invites_at(res)
        check(r.ok(1) and len(inv[GW1_IP]) == 1 and not inv[GW2_IP],
              f"call from {CARRIER_IP} (no tenant) should reach {GW1_IP}: {r.summary()}; {where(res)}")
        hdr = inv[GW1_IP][0].headers("X-Tenant-ID")
        check(hdr == [], f"call without a tenant carries X-Tenant-ID {hdr}\n" + first_trace(res, GW1_IP))


@lab_test
def tenant_by_header(ctx: Ctx):
    """Tenant hdrten (source 10.0.9.9, group 3 = .12): a call from 10.0.1.10 with
    X-Tenant-ID: hdrten lands on .12 with exactly one X-Tenant-ID: hdrten; .10 (group 1) gets nothing."""
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1), gw(GW3_IP, 3)],
                     [tenant("hdrten", "10.0.9.9", 3)]):
        r, res = run_calls(ctx, "tenant_by_header", uac_scen="uac_xtenant", extra=["-key", "tenant", "hdrten"],
                           uas={GW1_IP: "uas_simple", GW3_IP: "uas_simple"})
        inv = invites_at(res)
        check(r.ok(1), f"call failed: {r.summary()} ({where(res)})\n{r.diagnostics()}")
        check(len(inv[GW3_IP]) == 1 and not inv[GW1_IP],
              f"call with X-Tenant-ID: hdrten should reach {GW3_IP} (group 3): {where(res)}")
        hdr = inv[GW3_IP][0].headers("X-Tenant-ID")
        check(hdr == ["hdrten"], f"X-Tenant-ID at the gateway: {hdr} (want exactly ['hdrten'])\n"
                                 + first_trace(res, GW3_IP))


@lab_test
def tenant_by_prefix(ctx: Ctx):
    """Tenant preften (group 2 = .11): a call to preften_919876543210 reaches .11 as
    919876543210 with X-Tenant-ID: preften. A second one also carries X-Tenant-ID: nosuch (no such
    tenant, so the prefix decides): the gateway must see only X-Tenant-ID: preften."""
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1), gw(GW2_IP, 2)],
                     [tenant("preften", "10.0.9.8", 2)]):
        uas = {GW1_IP: "uas_simple", GW2_IP: "uas_simple"}
        for tag, scen, extra in (("prefix", "uac_simple", None),
                                 ("prefix_bogus_hdr", "uac_xtenant", ["-key", "tenant", "nosuch"])):
            r, res = run_calls(ctx, "tenant_by_prefix", uas=uas, uac_scen=scen, extra=extra,
                               service=f"preften_{NUMBER}", tag=tag)
            inv = invites_at(res)
            check(r.ok(1), f"{tag}: call failed: {r.summary()} ({where(res)})\n{r.diagnostics()}")
            check(len(inv[GW2_IP]) == 1 and not inv[GW1_IP],
                  f"{tag}: call to preften_{NUMBER} should reach {GW2_IP} (group 2): {where(res)}")
            m = inv[GW2_IP][0]
            check(m.ruri_user == NUMBER, f"{tag}: gateway got Request-URI {m.first_line} (want user {NUMBER})")
            check(m.headers("X-Tenant-ID") == ["preften"],
                  f"{tag}: X-Tenant-ID at the gateway: {m.headers('X-Tenant-ID')} (want exactly ['preften'])\n"
                  + first_trace(res, GW2_IP))


@lab_test
def weights(ctx: Ctx):
    """Group 1 = .10 (weight 3) + .11 (weight 1), same priority: 3000 calls at 300 cps, .10 must
    get 70-80 % (expected 75 %), no call may fail and nothing may fail over."""
    calls = 3000
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 1, 3), gw(GW2_IP, 1, 1, 1)]):
        fo0 = sip_counter(ctx, "failovers")
        r, res = run_calls(ctx, "weights", uas={GW1_IP: "uas_simple", GW2_IP: "uas_simple"},
                           calls=calls, rate=300, limit=600, duration_ms=0, timeout_s=90, trace_msg=False)
        fo = sip_counter(ctx, "failovers") - fo0
    n10, n11 = res[GW1_IP].successful, res[GW2_IP].successful
    f10, f11 = res[GW1_IP].failed, res[GW2_IP].failed
    check(r.ok(calls), f"UAC: {r.summary()}\n{r.diagnostics()}")
    check(n10 + n11 == calls and f10 + f11 == 0,
          f"gateways completed {n10}+{n11} calls (failed {f10}+{f11}) of {calls}")
    share = n10 / calls
    print(f"  (.10 got {n10} = {share:.1%}, .11 got {n11}; failovers {fo})", flush=True)
    check(0.70 <= share <= 0.80, f".10 (weight 3 of 4) got {share:.1%} of the calls, want 70-80 %")
    check(fo == 0, f"{fo} failovers while both gateways answer")
    wait_calls_down(ctx)


def check_tried_first(first: list, second: list, a: str, b: str) -> None:
    """Every call seen by `second` was seen by `first` before (same callee Call-ID, or pairwise
    by time when the Call-IDs differ)."""
    by_cid = {m.call_id: m.ts for m in first}
    if all(m.call_id in by_cid for m in second):
        late = [m.call_id for m in second if by_cid[m.call_id] > m.ts]
        check(not late, f"{len(late)} calls reached {b} before {a}: {late[:3]}")
    else:
        t1, t2 = sorted(m.ts for m in first), sorted(m.ts for m in second)
        check(len(t1) >= len(t2) and all(x <= y for x, y in zip(t1, t2)),
              f"INVITE times at {a} do not precede those at {b}")


@lab_test
def failover_503(ctx: Ctx):
    """Group 1 = .10 (priority 2, answers 503) + .11 (priority 1, answers 200). Higher priority
    first, so every call reaches .10, then fails over to .11; no caller sees the 503."""
    calls = 10
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 2), gw(GW2_IP, 1, 1)]):
        fo0 = sip_counter(ctx, "failovers")
        r, res = run_calls(ctx, "failover_503", uas={GW1_IP: "uas_503", GW2_IP: "uas_simple"},
                           calls=calls, rate=5, limit=calls)
        fo = sip_counter(ctx, "failovers") - fo0
    inv = invites_at(res)
    check(r.ok(calls), f"calls did not fail over to {GW2_IP}: {r.summary()} ({where(res)})\n"
                       f"{r.diagnostics()}")
    check(len(inv[GW1_IP]) == calls, f"{GW1_IP} (priority 2, 503) was not tried first: {where(res)}")
    check(len(inv[GW2_IP]) == calls, f"{GW2_IP} did not get every call: {where(res)}")
    check_tried_first(inv[GW1_IP], inv[GW2_IP], GW1_IP, GW2_IP)
    check(fo == calls, f"status sip.failovers went up by {fo}, want {calls}")


@lab_test
def failover_silent(ctx: Ctx):
    """Nothing listens on .10 (priority 2); .11 (priority 1) answers. After failover_timeout_ms
    (1 s in the lab) of silence the SBC tries .11: calls succeed, setup takes about 1 s."""
    calls = 3
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 2), gw(GW2_IP, 1, 1)]):
        fo0 = sip_counter(ctx, "failovers")
        r, res = run_calls(ctx, "failover_silent", uas={GW2_IP: "uas_simple"}, calls=calls,
                           rate=10, limit=calls, timeout_s=20)
        fo = sip_counter(ctx, "failovers") - fo0
    inv = invites_at(res)
    setup = sorted(uac_outcomes(r)["setup"].values())
    check(r.ok(calls), f"UAC: {r.summary()} ({where(res)})\n{r.diagnostics()}")
    check(len(inv[GW2_IP]) == calls, f"{GW2_IP} did not get every call: {where(res)}")
    check(len(setup) == calls, f"setup times for {len(setup)} of {calls} calls")
    print(f"  (setup {', '.join(f'{x:.2f}' for x in setup)} s)", flush=True)
    check(setup[0] >= FAILOVER_TIMEOUT_S - 0.1,
          f"setup {setup[0]:.2f} s: too fast for a failover after {FAILOVER_TIMEOUT_S} s of silence")
    check(setup[-1] <= FAILOVER_TIMEOUT_S + 2.0,
          f"setup {setup[-1]:.2f} s: the failover timer ({FAILOVER_TIMEOUT_S} s) was not used")
    check(fo == calls, f"status sip.failovers went up by {fo}, want {calls}")


@lab_test
def backup_group(ctx: Ctx):
    """Group 1 = .10 + .11, both 503; backup group 3 = .12. With .12 answering, calls succeed
    there after both group-1 gateways; with .12 also answering 503 the caller gets 503."""
    calls = 5
    gws = [gw(GW1_IP, 1, 2), gw(GW2_IP, 1, 1), gw(GW3_IP, 3, 1)]
    with Provisioned(ctx, BASE_CARRIERS, gws):
        r, res = run_calls(ctx, "backup_group", tag="ok", calls=calls, rate=5, limit=calls,
                           uas={GW1_IP: "uas_503", GW2_IP: "uas_503", GW3_IP: "uas_simple"})
        inv = invites_at(res)
        check(r.ok(calls), f"calls did not reach the backup group: {r.summary()} ({where(res)})\n"
                           f"{r.diagnostics()}")
        check(all(len(inv[ip]) == calls for ip in (GW1_IP, GW2_IP, GW3_IP)),
              f"each gateway should see every call once: {where(res)}")
        check_tried_first(inv[GW1_IP], inv[GW2_IP], GW1_IP, GW2_IP)
        check_tried_first(inv[GW2_IP], inv[GW3_IP], GW2_IP, GW3_IP)
        r, res = run_calls(ctx, "backup_group", tag="all503", calls=3, rate=5, limit=3,
                           uac_scen="uac_503",
                           uas={GW1_IP: "uas_503", GW2_IP: "uas_503", GW3_IP: "uas_503"})
        inv = invites_at(res)
        check(r.ok(3), f"with every gateway answering 503 the caller should get 503: {r.summary()} "
                       f"({where(res)})\n{r.diagnostics()}")
        check(all(len(inv[ip]) == 3 for ip in (GW1_IP, GW2_IP, GW3_IP)),
              f"all three gateways should be tried before the 503: {where(res)}")


@lab_test
def outbound_failover(ctx: Ctx):
    """Carriers 10.0.1.10/32 (lower id, answers 503) and 10.0.1.20/32 (answers 200): an outbound
    call from gateway .10 without a tenant tries 10.0.1.10 first and succeeds at 10.0.1.20."""
    calls = 3
    with Provisioned(ctx, [(CARRIER_IP, 32), (CARRIER2_IP, 32)], [gw(GW1_IP, 1)]) as p:
        ids = [c.get("id") for c in p["carriers"]]
        check(ids[0] < ids[1], f"carrier ids {ids}: 10.0.1.10 should have the lower id")
        dec = ctx.api.route(GW1_IP, f"sip:{NUMBER}@{SBC_PUB}")
        want = [gw_uri(CARRIER_IP), gw_uri(CARRIER2_IP)]
        check(dec.get("action") == "route" and dec.get("direction") == "outbound"
              and dec.get("candidates") == want, f"POST /api/v1/route for gateway .10: {dec} (want candidates {want})")
        r, res = run_calls(ctx, "outbound_failover", uas_ns="carrier", uac_ns="gw", uac_ip=GW1_IP,
                           target=SBC_PUB, calls=calls, rate=5, limit=calls,
                           uas={CARRIER_IP: "uas_503", CARRIER2_IP: "uas_simple"})
    inv = invites_at(res)
    check(r.ok(calls), f"outbound calls: {r.summary()} ({where(res)})\n{r.diagnostics()}")
    check(len(inv[CARRIER_IP]) == calls and len(inv[CARRIER2_IP]) == calls,
          f"each carrier should see every call once: {where(res)}")
    check_tried_first(inv[CARRIER_IP], inv[CARRIER2_IP], CARRIER_IP, CARRIER2_IP)


@lab_test
def cps_limit(ctx: Ctx):
    """Tenant cpsten: max_cps 5 (bucket of 5, 5 tokens/s). 20 INVITEs at once: 5 accepted, 15 get
    503 + Retry-After: 1 (6 allowed if the burst took over 200 ms). 1 s later: 5 more."""
    with Provisioned(ctx, BASE_CARRIERS, BASE_GATEWAYS, [tenant("cpsten", "10.0.9.7", 1, 5, 1000)]):
        lim0 = sip_counter(ctx, "calls_limited")
        got, refused = [], 0
        for i, tag in enumerate(("burst1", "burst2")):
            if i:
                time.sleep(1.1)
            acc, lim, span, r, o = burst(ctx, "cps_limit", tag, tenant_prefix="cpsten", calls=20, hold_ms=0)
            refused += lim
            allowed = (5, 6) if span > 0.2 else (5,)
            got.append(f"{tag}: {acc} accepted, {lim} refused, INVITEs sent within {span * 1000:.0f} ms")
            check(acc in allowed, f"{tag}: {acc} of 20 INVITEs accepted within {span * 1000:.0f} ms "
                                  f"(max_cps 5: want {' or '.join(map(str, allowed))})")
        lim = sip_counter(ctx, "calls_limited") - lim0
    print("  (" + "; ".join(got) + ")", flush=True)
    check(lim == refused, f"status sip.calls_limited went up by {lim}, {refused} INVITEs were refused")
    wait_calls_down(ctx)


@lab_test
def concurrency_limit(ctx: Ctx):
    """Tenant concten: max_concurrent 3. 10 calls held 5 s at once: 3 accepted, 7 refused
    (503 + Retry-After: 1). Then calls that end in 486, in CANCEL and in the SBC's own 503 (gateway
    503, nothing left) one after the other -- more than 3 of them, so a slot that is not given back
    shows -- and finally 10 held calls again: exactly 3 accepted."""
    with Provisioned(ctx, BASE_CARRIERS, BASE_GATEWAYS, [tenant("concten", "10.0.9.6", 1, 1000, 3)]):
        acc, lim, span, r, o = burst(ctx, "concurrency_limit", "held1", tenant_prefix="concten",
                                     calls=10, hold_ms=5000)
        check(acc == 3, f"held1: {acc} of 10 simultaneous calls accepted (max_concurrent 3; "
                        f"INVITEs sent within {span * 1000:.0f} ms)")
        wait_calls_down(ctx)
        svc = f"concten_{NUMBER}"
        for tag, uas_scen, uac_scen in (("busy", "uas_486", "uac_486"),
                                        ("cancel", "uas_ring", "uac_cancel"),
                                        ("gw503", "uas_503", "uac_503")):
            r, res = run_calls(ctx, "concurrency_limit", tag=tag, uas={GW1_IP: uas_scen},
                               uac_scen=uac_scen, calls=4, rate=10, limit=1, service=svc)
            n = len(invites_at(res)[GW1_IP])
            check(r.ok(4) and n == 4, f"{tag}: {r.summary()}, gateway saw {n} of 4 INVITEs (a call slot "
                                      f"not released after an earlier call?)\n{r.diagnostics()}")
        acc, lim, span, r, o = burst(ctx, "concurrency_limit", "held2", tenant_prefix="concten",
                                     calls=10, hold_ms=1500)
        check(acc == 3, f"held2: after all earlier calls ended, {acc} of 10 simultaneous calls "
                        f"accepted (want 3: the live-call count must be back at 0)")
    wait_calls_down(ctx)


def invite_bytes(src_ip: str, src_port: int, callid: str) -> bytes:
    lines = [
        f"INVITE sip:{NUMBER}@{SBC_PRIV} SIP/2.0",
        f"Via: SIP/2.0/UDP {src_ip}:{src_port};branch=z9hG4bK-lab-{callid}",
        "Max-Forwards: 70",
        f"From: <sip:lab@{src_ip}>;tag=lab-{callid}",
        f"To: <sip:{NUMBER}@{SBC_PRIV_IP}>",
        f"Call-ID: {callid}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:lab@{src_ip}:{src_port}>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@lab_test(restarts_sbc=True)
def unknown_source_drop(ctx: Ctx):
    """INVITE from 10.0.1.20 (not a carrier): 403 with unknown_source = "reject" (default); after
    a restart with unknown_source = "drop": no answer at all, the flood guard having dropped it
    before parsing (sip.dropped_not_allowed), with no state kept for its source. The SBC is restarted with the lab config afterwards (counters start again)."""
    d = ctx.tdir("unknown_source_drop")

    def send(tag: str) -> list[str]:
        f = d / f"invite_{tag}.sip"
        f.write_bytes(invite_bytes(CARRIER2_IP, 5062, f"drop-{tag}-{int(time.time() * 1000)}"))
        r = sipsend("carrier", ["send", "--bind", f"{CARRIER2_IP}:5062", "--to", SBC_PRIV,
                                "--file", str(f), "--timeout", "2"])
        (d / f"replies_{tag}.txt").write_text(r.stdout + r.stderr)
        return [line.split(" ", 2)[2] for line in r.stdout.splitlines() if line.startswith("REPLY ")]

    got = send("reject")
    check(any(x.startswith("SIP/2.0 403") for x in got), f"with unknown_source = reject: replies {got}")
    try:
        ctx.sbc.restart(dict(LAB_ROUTING, unknown_source="drop"))
        rej0 = sip_counter(ctx, "dropped_not_allowed")
        got = send("drop")
        rej = sip_counter(ctx, "dropped_not_allowed") - rej0
        check(not got, f"with unknown_source = drop the INVITE from {CARRIER2_IP} got {got}")
        check(rej == 1, f"status sip.dropped_not_allowed went up by {rej} (the flood guard drops the "
                        "INVITE before parsing, keeping no state)")
        ok = options_status()
        check(any(s.startswith("SIP/2.0 200") for s in ok), f"OPTIONS from the carrier afterwards: {ok}")
    finally:
        ctx.sbc.restart(LAB_ROUTING)
