"""Tests of SIP signalling through the SBC: OPTIONS, calls in and out (with hold re-INVITEs),
CANCEL, re-INVITEs from both sides, 486 from the gateway, 403 for a source that is not a
carrier, and 408 when the gateway never answers."""
from __future__ import annotations

import subprocess
import sys

from kit.addresses import CARRIER2_IP, CARRIER_IP, GW1_IP, SBC_PRIV
from kit.calls import CALL_KINDS, call_test, expect_code_test, wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.netns import wait_udp_listen
from kit.paths import SIPSEND
from kit.proc import nsexec, spawn, stop_process
from kit.registry import lab_test
from kit.sip import options_status
from kit.sipp import run_uac


@lab_test
def options_200(ctx: Ctx):
    lines = options_status("carrier", CARRIER_IP, SBC_PRIV, 1.0)
    check(any(s.startswith("SIP/2.0 200") for s in lines), f"OPTIONS to {SBC_PRIV}: replies {lines}")


@lab_test
def inbound_calls(ctx: Ctx):
    call_test(ctx, "inbound_calls", **CALL_KINDS["inbound"], calls=300, rate=50, limit=300,
              duration_ms=1000)
    wait_calls_down(ctx)


@lab_test
def outbound_calls(ctx: Ctx):
    call_test(ctx, "outbound_calls", **CALL_KINDS["outbound"], calls=100, rate=25, limit=100,
              duration_ms=1000)
    wait_calls_down(ctx)


@lab_test
def cancel(ctx: Ctx):
    call_test(ctx, "cancel", **CALL_KINDS["cancel"], calls=5, rate=5, timeout_s=40)


@lab_test
def reinvite_both(ctx: Ctx):
    call_test(ctx, "reinvite_both", **CALL_KINDS["reinvite_both"], calls=10, rate=5, timeout_s=60)
    wait_calls_down(ctx)


@lab_test
def busy_486(ctx: Ctx):
    expect_code_test(ctx, "busy_486", "uac_486", uas_scen="uas_486")


@lab_test
def not_a_carrier_403(ctx: Ctx):
    expect_code_test(ctx, "not_a_carrier_403", "uac_403", uac_ip=CARRIER2_IP,
                     uas_scen="uas_call")


@lab_test
def no_answer_408(ctx: Ctx):
    """Gateway swallows INVITEs (answers OPTIONS probes only): the UAC must get 408 (Timer B, 32 s)."""
    d = ctx.tdir("no_answer_408")
    sink_out = open(d / "sink.out", "wb")
    sink = spawn(nsexec("gw", [sys.executable, SIPSEND, "sink", "--bind", f"{GW1_IP}:5060",
                               "--duration", "60"]),
                 stdout=sink_out, stderr=subprocess.STDOUT)
    try:
        check(wait_udp_listen("gw", GW1_IP, 5060), "sink did not bind")
        r = run_uac("carrier", "uac_408", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=1,
                    rate=1, timeout_s=50)
    finally:
        stop_process(sink)
        sink_out.close()
    if not r.ok(1):
        raise TestFailure(f"{r.summary()}\n{r.diagnostics()}")
    check(r.elapsed <= 40.0, f"408 only after {r.elapsed:.1f} s")
    print(f"  (408 after {r.elapsed:.1f} s)", flush=True)
