"""Calls through the SBC with sipp, and what they produced: a UAS per gateway and one UAC run
(run_calls, call_test, expect_code_test), the INVITEs each gateway received, the outcomes the
caller saw, bursts against a tenant's limits, and waiting for calls_up to drop to 0."""
from __future__ import annotations

import time
from pathlib import Path

from .addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PUB
from .api import ApiError
from .ctx import Ctx, TestFailure, check
from .proc import tail
from .provisioning import NUMBER
from .sip import received_invites, sipp_messages
from .sipp import SippResult, Uas, run_uac


# Who calls whom with which sipp scenarios, for call_test(): the call kinds the signalling tests
# run and no_private_leak captures on pub0.
CALL_KINDS = {
    "inbound": dict(uas_ns="gw", uas_ip=GW1_IP, uas_scen="uas_call",
                    uac_ns="carrier", uac_ip=CARRIER_IP, uac_scen="uac_call", target=SBC_PRIV),
    "outbound": dict(uas_ns="carrier", uas_ip=CARRIER_IP, uas_scen="uas_call",
                     uac_ns="gw", uac_ip=GW1_IP, uac_scen="uac_call", target=SBC_PUB),
    "cancel": dict(uas_ns="gw", uas_ip=GW1_IP, uas_scen="uas_ring",
                   uac_ns="carrier", uac_ip=CARRIER_IP, uac_scen="uac_cancel", target=SBC_PRIV),
    "reinvite_both": dict(uas_ns="gw", uas_ip=GW1_IP, uas_scen="uas_reinvite_both",
                          uac_ns="carrier", uac_ip=CARRIER_IP, uac_scen="uac_reinvite_both",
                          target=SBC_PRIV),
}


def call_test(ctx: Ctx, name: str, *, uas_ns: str, uas_ip: str, uas_scen: str, uac_ns: str,
              uac_ip: str, uac_scen: str, target: str, calls: int, rate: float, limit: int | None = None,
              duration_ms: int = 1000, timeout_s: int = 120, trace_msg: bool = True,
              expect_success: int | None = None, uas_clean: bool = False) -> SippResult:
    d = ctx.tdir(name)
    with Uas(uas_ns, uas_scen, uas_ip, 5060, d, "uas", trace_msg=trace_msg) as uas:
        r = run_uac(uac_ns, uac_scen, uac_ip, 5060, target, d, "uac", calls=calls, rate=rate,
                    limit=limit, duration_ms=duration_ms, timeout_s=timeout_s, trace_msg=trace_msg)
        ur = uas.stop()
    want = calls if expect_success is None else expect_success
    if not r.ok(want):
        raise TestFailure(f"{r.summary()} (wanted {want} successful)\n{r.diagnostics()}\n"
                          f"--- UAS: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    if uas_clean and ur.failed:
        raise TestFailure(f"the gateway side saw {ur.failed} failed calls: {ur.summary()}\n"
                          f"{tail_if(ur.files.get('errors'))}")
    return r


def tail_if(path, lines=20) -> str:
    if path and Path(path).exists() and Path(path).stat().st_size:
        return f"{path}:\n{tail(path, lines)}"
    return ""


def expect_code_test(ctx: Ctx, name: str, uac_scen: str, *, uac_ip=CARRIER_IP,
                     uas_scen: str | None = None, timeout_s: int = 30) -> SippResult:
    d = ctx.tdir(name)
    uas = Uas("gw", uas_scen, GW1_IP, 5060, d, "uas") if uas_scen else None
    try:
        r = run_uac("carrier", uac_scen, uac_ip, 5060, SBC_PRIV, d, "uac", calls=1, rate=1,
                    timeout_s=timeout_s)
    finally:
        ur = uas.stop() if uas else None
    if not r.ok(1):
        extra = f"\n--- UAS: {ur.summary()}\n{tail_if(ur.files.get('errors'))}" if ur else ""
        raise TestFailure(f"{r.summary()}\n{r.diagnostics()}{extra}")
    return r


def last_octet(ip: str) -> str:
    return ip.rsplit(".", 1)[1]


def run_calls(ctx: Ctx, name: str, *, uas: dict, uas_ns: str = "gw", uac_ns: str = "carrier",
              uac_ip: str = CARRIER_IP, uac_scen: str = "uac_simple", target: str = SBC_PRIV,
              calls: int = 1, rate: float = 10, limit: int | None = None, duration_ms: int = 200,
              timeout_s: int = 30, service: str = NUMBER, extra: list | None = None,
              trace_msg: bool = True, tag: str = "") -> tuple[SippResult, dict]:
    """One sipp UAS per entry of `uas` ({ip: scenario}, port 5060 in `uas_ns`), one UAC run.
    Returns the UAC result and {ip: UAS result}."""
    d = ctx.tdir(name)
    pre = f"{tag}_" if tag else ""
    running: dict[str, Uas] = {}
    results: dict[str, SippResult] = {}
    try:
        for ip, scen in uas.items():
            running[ip] = Uas(uas_ns, scen, ip, 5060, d, f"{pre}uas_{last_octet(ip)}", trace_msg=trace_msg)
        r = run_uac(uac_ns, uac_scen, uac_ip, 5060, target, d, f"{pre}uac", calls=calls, rate=rate,
                    limit=limit, duration_ms=duration_ms, timeout_s=timeout_s, service=service,
                    trace_msg=trace_msg, extra=extra)
    finally:
        for i, (ip, u) in enumerate(running.items()):
            results[ip] = u.stop(linger=0.5 if i == 0 else 0.0)
    return r, results


def invites_at(results: dict) -> dict:
    """{ip: [initial INVITEs the UAS on ip received]}"""
    return {ip: received_invites(r.files.get("messages")) for ip, r in results.items()}


def where(results: dict) -> str:
    return ", ".join(f"{ip}: {len(v)} INVITE(s)" for ip, v in invites_at(results).items())


def first_trace(results: dict, ip: str, lines: int = 25) -> str:
    inv = invites_at(results).get(ip) or []
    if not inv:
        return f"(no INVITE at {ip})"
    return f"INVITE received by {ip}:\n" + "\n".join("    " + x for x in inv[0].head.split("\n")[:lines])


def uac_outcomes(r: SippResult) -> dict:
    """What the UAC's calls got, from its message trace: {"200": n, "503": n, "retry_after":
    [values of Retry-After on the 503s], "invites": [sent initial INVITEs], "setup": {call-id:
    seconds from the first INVITE to the first final response}}."""
    msgs = sipp_messages(r.files.get("messages"))
    first_inv: dict = {}
    finals: dict = {}
    for m in msgs:
        cid = m.call_id
        if m.direction == "sent" and m.is_request("INVITE") and cid not in first_inv:
            first_inv[cid] = m
        elif m.direction == "received" and m.is_response(method="INVITE"):
            code = int(m.first_line.split()[1])
            if code >= 200 and cid not in finals:
                finals[cid] = m
    out = {"invites": list(first_inv.values()), "finals": finals, "retry_after": [], "setup": {},
           "codes": {}}
    for cid, m in finals.items():
        code = m.first_line.split()[1]
        out["codes"][code] = out["codes"].get(code, 0) + 1
        if code == "503":
            out["retry_after"].append(m.header("Retry-After"))
        if cid in first_inv:
            out["setup"][cid] = m.ts - first_inv[cid].ts
    return out


def sip_counter(ctx: Ctx, key: str) -> int:
    return int((ctx.api.status().get("sip") or {}).get(key, 0) or 0)


def burst(ctx: Ctx, name: str, tag: str, *, tenant_prefix: str, calls: int, hold_ms: int,
          uas_scen: str = "uas_simple") -> tuple[int, int, float, SippResult, dict]:
    """`calls` INVITEs of tenant `tenant_prefix` as fast as sipp sends them (1000/s), each held
    hold_ms when accepted. Returns (accepted, limited, burst duration s, uac result, outcomes);
    fails the test on any other outcome or a 503 without `Retry-After: 1`."""
    r, res = run_calls(ctx, name, uas={GW1_IP: uas_scen}, uac_scen="uac_limit", calls=calls,
                       rate=1000, limit=calls, duration_ms=hold_ms, timeout_s=30 + hold_ms // 1000,
                       service=f"{tenant_prefix}_{NUMBER}", extra=["-rp", "1000"], tag=tag)
    o = uac_outcomes(r)
    at_gw = len(invites_at(res)[GW1_IP])
    accepted, limited = o["codes"].get("200", 0), o["codes"].get("503", 0)
    ts = sorted(m.ts for m in o["invites"])
    span = ts[-1] - ts[0] if ts else 0.0
    check(r.ok(calls), f"{tag}: UAC: {r.summary()} (every call must end in 200 or in 503 with "
                       f"Retry-After; outcomes {o['codes']})\n{r.diagnostics()}")
    check(accepted + limited == calls and set(o["codes"]) <= {"200", "503"},
          f"{tag}: outcomes {o['codes']} for {calls} INVITEs")
    check(at_gw == accepted, f"{tag}: {accepted} callers got 200 but the gateway saw {at_gw} INVITEs")
    bad = [v for v in o["retry_after"] if v != "1"]
    check(not bad, f"{tag}: 503s with Retry-After {bad[:5]} (want 1)")
    return accepted, limited, span, r, o


def wait_calls_down(ctx: Ctx, timeout: float = 5.0, strict: bool = False) -> None:
    """After all calls ended, the SBC's calls_up should drop to 0 (a failure when `strict`)."""
    deadline = time.monotonic() + timeout
    v = None
    while time.monotonic() < deadline:
        try:
            v = ctx.api.status().get("calls_up")
        except ApiError:
            return
        if v == 0:
            return
        time.sleep(0.2)
    if strict:
        raise TestFailure(f"calls_up is still {v} {timeout:.0f} s after the last call ended")
    print(f"  note: calls_up is still {v} {timeout:.0f} s after the last call ended", flush=True)
