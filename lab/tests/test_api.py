"""Tests of the REST API: provisioning CRUD and the status fields (api_crud), POST /api/v1/route
against the real call for each way of finding a tenant (route_api), and a gateway change taking
effect on the very next call (api_change_next_call)."""
from __future__ import annotations

import re
import time

from kit.addresses import (CARRIER2_IP, CARRIER_IP, GW1_IP, GW2_IP, GW3_IP, SBC_PRIV, SBC_PRIV_IP,
                           SBC_PUB, TENANT_TRUNK_IP, gw_uri)
from kit.calls import invites_at, run_calls, where
from kit.ctx import Ctx, TestFailure, check
from kit.provisioning import Provisioned, gw, tenant
from kit.registry import lab_test
from kit.sipp import Uas, run_uac


@lab_test
def api_crud(ctx: Ctx):
    """POST/GET/DELETE of carriers, gateways and tenants; status fields."""
    api = ctx.api
    st = api.status()
    check("calls_up" in st and isinstance(st["calls_up"], int), f"status lacks integer calls_up: {st}")
    check("snapshot_version" in st, f"status lacks snapshot_version: {st}")

    r = api.request("POST", "/api/v1/carriers", {"ip": "10.0.1.99", "mask": 32, "name": "tmp", "group": 1})
    check(r.code == 201, f"POST carriers -> {r.code} {r.body[:200]}")
    c = r.json() or {}
    check("id" in c and c.get("ip") == "10.0.1.99" and c.get("mask") == 32 and c.get("name") == "tmp"
          and c.get("group") == 1, f"POST carriers answer: {r.body[:300]}")
    check(any(x.get("id") == c["id"] for x in api.list("carriers")), "new carrier not in GET list")
    r = api.request("DELETE", f"/api/v1/carriers/{c['id']}")
    check(r.code == 204, f"DELETE carrier -> {r.code} {r.body[:200]}")
    check(not any(x.get("id") == c["id"] for x in api.list("carriers")), "deleted carrier still listed")

    gw = {"destination": "sip:203.0.113.12:5060", "group": 2, "priority": 5, "weight": 3,
          "description": "tmp-gw"}
    r = api.request("POST", "/api/v1/gateways", gw)
    check(r.code == 201, f"POST gateways -> {r.code} {r.body[:200]}")
    g = r.json() or {}
    check("id" in g and all(g.get(k) == v for k, v in gw.items()), f"POST gateways answer: {r.body[:300]}")
    check(any(x.get("id") == g["id"] for x in api.list("gateways")), "new gateway not in GET list")
    r = api.request("DELETE", f"/api/v1/gateways/{g['id']}")
    check(r.code == 204, f"DELETE gateway -> {r.code} {r.body[:200]}")
    check(not any(x.get("id") == g["id"] for x in api.list("gateways")), "deleted gateway still listed")

    t = {"tenant_id": "acme", "source_ip": "10.0.1.50", "gateway_group": 1, "max_cps": 10,
         "max_concurrent": 10}
    r = api.request("POST", "/api/v1/tenants", t)
    check(r.code in (200, 201), f"POST tenants -> {r.code} {r.body[:200]}")
    t2 = dict(t, max_cps=20)
    r = api.request("POST", "/api/v1/tenants", t2)  # POST adds or updates
    check(r.code in (200, 201), f"POST tenants (update) -> {r.code} {r.body[:200]}")
    rows = [x for x in api.list("tenants") if x.get("tenant_id") == "acme"]
    check(len(rows) == 1, f"tenant acme listed {len(rows)} times after add+update")
    check(rows[0].get("max_cps") == 20 and rows[0].get("source_ip") == "10.0.1.50",
          f"tenant after update: {rows[0]}")
    r = api.request("DELETE", "/api/v1/tenants/acme")
    check(r.code == 204, f"DELETE tenant -> {r.code} {r.body[:200]}")
    check(not any(x.get("tenant_id") == "acme" for x in api.list("tenants")), "deleted tenant still listed")
    time.sleep(1.0)


def host_of(uri: str) -> str | None:
    m = re.match(r"^sips?:(?:[^@]*@)?([\d.]+)", uri or "")
    return m.group(1) if m else None


@lab_test
def route_api(ctx: Ctx):
    """POST /api/v1/route for each way of finding a tenant (and none, and a non-carrier, and two
    outbound cases); then the same call for real: it must land where candidates[0] says, with
    the Request-URI user and X-Tenant-ID the answer gives."""
    tenants = [tenant("srcten", TENANT_TRUNK_IP, 2), tenant("hdrten", "10.0.9.9", 3),
               tenant("preften", "10.0.9.8", 2)]
    g = lambda ip: gw_uri(ip)  # noqa: E731
    # (name, source, to-user, X-Tenant-ID, expected answer fields)
    cases = [
        ("source_ip", TENANT_TRUNK_IP, "91000000001", None,
         dict(direction="inbound", tenant_id="srcten", gateway_group=2, user="91000000001",
              candidates=[g(GW2_IP), g(GW3_IP)])),
        ("header", CARRIER_IP, "91000000002", "hdrten",
         dict(direction="inbound", tenant_id="hdrten", gateway_group=3, user="91000000002",
              candidates=[g(GW3_IP)])),
        ("prefix", CARRIER_IP, "preften_91000000003", None,
         dict(direction="inbound", tenant_id="preften", gateway_group=2, user="91000000003",
              candidates=[g(GW2_IP), g(GW3_IP)])),
        ("no_tenant", CARRIER_IP, "91000000004", None,
         dict(direction="inbound", tenant_id=None, gateway_group=1, user="91000000004",
              candidates=[g(GW1_IP), g(GW3_IP)])),
        ("not_a_carrier", CARRIER2_IP, "91000000005", None,
         dict(action="reject", code=403, candidates=[])),
        ("outbound", GW1_IP, "91000000006", None,
         dict(direction="outbound", tenant_id=None, user="91000000006",
              candidates=[gw_uri(CARRIER_IP), gw_uri(TENANT_TRUNK_IP)])),
        ("outbound_prefix", GW1_IP, "srcten_91000000007", None,
         dict(direction="outbound", tenant_id="srcten", user="91000000007",
              candidates=[gw_uri(TENANT_TRUNK_IP)])),
    ]
    with Provisioned(ctx, [(CARRIER_IP, 32), (TENANT_TRUNK_IP, 32)],
                     [gw(GW1_IP, 1), gw(GW2_IP, 2), gw(GW3_IP, 3)], tenants):
        for name, src, user, hdr, want in cases:
            outbound = src.startswith("203.")
            to = f"sip:{user}@{SBC_PUB if outbound else SBC_PRIV_IP}"
            dec = ctx.api.route(src, to, {"X-Tenant-ID": hdr} if hdr else None)
            want = dict({"action": "route"}, **want)
            bad = {k: (dec.get(k), v) for k, v in want.items() if dec.get(k) != v}
            check(not bad, f"{name}: POST /api/v1/route source {src} to {to} header {hdr}: {dec}\n"
                           f"  wrong fields (got, want): {bad}")
            # the real call
            if dec["action"] == "reject":
                r, res = run_calls(ctx, "route_api", tag=name, uac_ip=src, uac_scen="uac_403",
                                   service=user, uas={GW1_IP: "uas_simple"})
                check(r.ok(1), f"{name}: API says reject {dec.get('code')}, the call: {r.summary()}")
                check(not invites_at(res)[GW1_IP], f"{name}: rejected call reached a gateway")
                continue
            if outbound:
                uas = {CARRIER_IP: "uas_simple", TENANT_TRUNK_IP: "uas_simple"}
                kw = dict(uas_ns="carrier", uac_ns="gw", uac_ip=src, target=SBC_PUB)
            else:
                uas = {GW1_IP: "uas_simple", GW2_IP: "uas_simple", GW3_IP: "uas_simple"}
                kw = dict(uac_ip=src)
            if hdr:
                kw.update(uac_scen="uac_xtenant", extra=["-key", "tenant", hdr])
            r, res = run_calls(ctx, "route_api", tag=name, uas=uas, service=user, **kw)
            check(r.ok(1), f"{name}: call failed: {r.summary()} ({where(res)})\n{r.diagnostics()}")
            inv = invites_at(res)
            landed = [ip for ip, v in inv.items() if v]
            first = host_of(dec["candidates"][0])
            check(landed == [first], f"{name}: API candidates {dec['candidates']}, the call went to {landed}")
            m = inv[first][0]
            check(m.ruri_user == dec.get("user"),
                  f"{name}: API user {dec.get('user')!r}, the gateway got {m.first_line}")
            if not outbound:
                want_hdr = [dec["tenant_id"]] if dec.get("tenant_id") else []
                check(m.headers("X-Tenant-ID") == want_hdr,
                      f"{name}: X-Tenant-ID at the gateway {m.headers('X-Tenant-ID')}, want {want_hdr}")


@lab_test
def api_change_next_call(ctx: Ctx):
    """Replace gateway .10 by .11 over the API: the very next call must land on .11."""
    api = ctx.api
    d = ctx.tdir("api_change_next_call")
    base = [g for g in api.list("gateways") if g.get("destination") == gw_uri(GW1_IP)]
    check(len(base) == 1 and base[0].get("id") is not None,
          f"no provisioned gateway .10 with an id: {api.list('gateways')}")
    api.delete_gateway(base[0]["id"])
    new = api.add_gateway(f"sip:{GW2_IP}:5060", 1, 1, 1, "gw1b")
    try:
        with Uas("gw", "uas_simple", GW2_IP, 5060, d, "uas_11") as uas:
            r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, d, "uac_11",
                        calls=1, rate=1, duration_ms=200, timeout_s=45)
            ur = uas.stop()
        if not r.ok(1):
            raise TestFailure(f"call after the change failed: {r.summary()}\n{r.diagnostics()}")
        check(ur.successful == 1, f"UAS on {GW2_IP} did not get the call: {ur.summary()}")
    finally:
        api.delete_gateway(new["id"])
        api.add_gateway(f"sip:{GW1_IP}:5060", 1, 1, 1, "gw1")
    # restored: the next call goes to .10 again
    with Uas("gw", "uas_simple", GW1_IP, 5060, d, "uas_10") as uas:
        r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, d, "uac_10",
                    calls=1, rate=1, duration_ms=200, timeout_s=45)
        uas.stop()
    if not r.ok(1):
        raise TestFailure(f"call after restoring gateway .10 failed: {r.summary()}\n{r.diagnostics()}")
