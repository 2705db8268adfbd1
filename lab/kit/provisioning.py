"""Provisioning for the lab: the base every test starts from (carrier 10.0.1.10/32 in group 1,
gateway group 1 = sip:203.0.113.10:5060), a test's own (`with Provisioned(...)`, the base again
afterwards), rows for gateways and tenants, and the SBC's [routing] table in the lab."""
from __future__ import annotations

from .addresses import CARRIER_IP, GW1_IP, gw_uri
from .api import Api, provision

# The SBC's [routing] table in the lab: a silent gateway is left after 1 s instead of 5 s.
LAB_ROUTING = {"failover_timeout_ms": 1000}
FAILOVER_TIMEOUT_S = LAB_ROUTING["failover_timeout_ms"] / 1000.0
NUMBER = "919876543210"


def gw(ip: str, group: int = 1, priority: int = 1, weight: int = 1, description: str | None = None,
       profile: str | None = None) -> dict:
    """A gateway row; `profile` ("transparent", "livekit") only when given."""
    row = {"destination": gw_uri(ip), "group": group, "priority": priority, "weight": weight,
           "description": description or f"gw-{ip.rsplit('.', 1)[1]}-g{group}"}
    if profile is not None:
        row["profile"] = profile
    return row


def tenant(tenant_id: str, source_ip: str, group: int, max_cps: int = 1000, max_concurrent: int = 1000,
           **numbers) -> dict:
    """A tenant row; `numbers` (number_format, country_code, strip_prefix) only when given."""
    row = {"tenant_id": tenant_id, "source_ip": source_ip, "gateway_group": group,
           "max_cps": max_cps, "max_concurrent": max_concurrent}
    row.update({k: v for k, v in numbers.items() if v is not None})
    return row


BASE_CARRIERS = [(CARRIER_IP, 32, "carrier1", 1)]
BASE_GATEWAYS = [gw(GW1_IP, 1, 1, 1, "gw1")]


def provision_base(api: Api) -> dict:
    """Back to the provisioning every test expects: carrier 10.0.1.10/32, gateway .10 in group 1."""
    return provision(api, BASE_CARRIERS, BASE_GATEWAYS)


class Provisioned:
    """`with Provisioned(ctx, carriers, gateways, tenants) as p:` replaces the whole provisioning
    for one test and restores the base provisioning afterwards, whatever happens."""

    def __init__(self, ctx, carriers=BASE_CARRIERS, gateways=(), tenants=()):
        self.api, self.args = ctx.api, (carriers, gateways, tenants)

    def __enter__(self):
        try:
            return provision(self.api, *self.args)
        except Exception:
            provision_base(self.api)
            raise

    def __exit__(self, *exc):
        provision_base(self.api)
        return False
