"""The load test (only with --load or --only load): 10,000 calls at 200 calls/s through the SBC,
none failing on either side, and calls_up back at 0 afterwards."""
from __future__ import annotations

from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV
from kit.calls import call_test, wait_calls_down
from kit.ctx import Ctx
from kit.registry import lab_test


@lab_test(load=True)
def load(ctx: Ctx):
    call_test(ctx, "load", uas_ns="gw", uas_ip=GW1_IP, uas_scen="uas_simple",
              uac_ns="carrier", uac_ip=CARRIER_IP, uac_scen="uac_simple", target=SBC_PRIV,
              calls=10000, rate=200, limit=2000, duration_ms=500, timeout_s=150, trace_msg=False,
              uas_clean=True)
    wait_calls_down(ctx, strict=True)
