"""Tests of the call statistics: GET /api/v1/stats/calls counts, per tenant, the outcomes of the
calls the test makes itself (before/after deltas), its totals add up, and status
sip.calls_limited agrees with them."""
from __future__ import annotations

import json
import time

from kit.addresses import CARRIER_IP, GW1_IP, TENANT_TRUNK_IP
from kit.calls import burst, run_calls, sip_counter
from kit.ctx import Ctx, check
from kit.provisioning import NUMBER, Provisioned, gw, tenant
from kit.registry import lab_test

KEYS = ("answered", "failed", "cancelled", "rejected", "limit_exceeded")


def by_tenant(ctx: Ctx) -> tuple[dict, dict]:
    """(GET /api/v1/stats/calls, its by_tenant object)."""
    st = ctx.api.call_stats()
    return st, st.get("by_tenant") or {}


@lab_test
def stats_calls(ctx: Ctx):
    """Tenants found by source IP (statsrc), by X-Tenant-ID (stathdr) and by prefix (statten,
    max_concurrent 2) make calls that end answered, in 486, CANCEL, the SBC's own 503 and over the
    concurrency limit. GET /api/v1/stats/calls: each tenant's counts went up by exactly those
    outcomes (answered, failed, cancelled, rejected, limit_exceeded), totals add up, no call is
    up, and status sip.calls_limited agrees."""
    want: dict[str, dict[str, int]] = {}

    def outcome(tenant_id: str, **counts: int) -> None:
        per = want.setdefault(tenant_id, {})
        for k, v in counts.items():
            per[k] = per.get(k, 0) + v

    tenants = [tenant("statsrc", TENANT_TRUNK_IP, 1), tenant("stathdr", "10.0.9.4", 1),
               tenant("statten", "10.0.9.5", 1, 1000, 2)]
    with Provisioned(ctx, [(CARRIER_IP, 32), (TENANT_TRUNK_IP, 32)], [gw(GW1_IP, 1)], tenants):
        _, before = by_tenant(ctx)
        r, _ = run_calls(ctx, "stats_calls", tag="source_ip", uac_ip=TENANT_TRUNK_IP,
                         uas={GW1_IP: "uas_simple"}, calls=2, rate=10, limit=1)
        check(r.ok(2), f"source_ip: {r.summary()}\n{r.diagnostics()}")
        outcome("statsrc", answered=2)
        r, _ = run_calls(ctx, "stats_calls", tag="header", uac_scen="uac_xtenant",
                         extra=["-key", "tenant", "stathdr"], uas={GW1_IP: "uas_simple"})
        check(r.ok(1), f"header: {r.summary()}\n{r.diagnostics()}")
        outcome("stathdr", answered=1)
        for tag, uas_scen, uac_scen, result in (("answered", "uas_simple", "uac_simple", "answered"),
                                                ("busy", "uas_486", "uac_486", "failed"),
                                                ("cancel", "uas_ring", "uac_cancel", "cancelled"),
                                                ("gw503", "uas_503", "uac_503", "failed")):
            r, _ = run_calls(ctx, "stats_calls", tag=tag, uas={GW1_IP: uas_scen}, uac_scen=uac_scen,
                             calls=2, rate=10, limit=1, service=f"statten_{NUMBER}")
            check(r.ok(2), f"{tag}: {r.summary()}\n{r.diagnostics()}")
            outcome("statten", **{result: 2})
        acc, lim, span, r, o = burst(ctx, "stats_calls", "limit", tenant_prefix="statten", calls=5,
                                     hold_ms=2000)
        outcome("statten", answered=acc, limit_exceeded=lim)
        check(lim > 0, f"limit: none of 5 simultaneous calls refused (max_concurrent 2; INVITEs sent "
                       f"within {span * 1000:.0f} ms)")

        deadline = time.monotonic() + 3
        while True:
            st, by = by_tenant(ctx)
            got = {t: {k: by.get(t, {}).get(k, 0) - before.get(t, {}).get(k, 0) for k in KEYS}
                   for t in want}
            bad = {t: {k: (got[t][k], per.get(k, 0)) for k in KEYS if got[t][k] != per.get(k, 0)}
                   for t, per in want.items()}
            bad = {t: v for t, v in bad.items() if v}
            if (not bad and st.get("calls_up") == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        lim = sip_counter(ctx, "calls_limited")
    (ctx.tdir("stats_calls") / "stats.json").write_text(
        json.dumps({"before": before, "after": st, "want": want}, indent=1))
    check(not bad, f"per-tenant counts went up by other amounts (got, want): {bad}\n"
                   f"  before: {json.dumps(before)}\n  after: {json.dumps(by)}")
    for k in ("since_s", "calls_up", "by_tenant", "totals"):
        check(k in st, f"stats lacks {k}: {st}")
    tot = st.get("totals") or {}
    for k in KEYS:
        s = sum(int(per.get(k, 0)) for per in by.values())
        check(int(tot.get(k, 0)) == s, f"totals.{k} = {tot.get(k)} but the tenants add up to {s}")
    check(st.get("calls_up") == 0, f"calls_up {st.get('calls_up')} with no call running")
    check(lim == int(tot.get("limit_exceeded", 0)),
          f"status sip.calls_limited {lim} != totals.limit_exceeded {tot.get('limit_exceeded')}")
    print("  (" + "; ".join(f"{t}: " + ",".join(f"{k}={v}" for k, v in sorted(per.items()))
                          for t, per in sorted(want.items())) + ")", flush=True)
