"""The SBC's REST API as the lab reaches it (curl inside ns sbc: the API listens on the
namespace's loopback), and replacing the whole provisioning in one call (provision)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass

from .addresses import API_BASE
from .proc import nsexec


class ApiError(RuntimeError):
    pass


@dataclass
class Response:
    code: int
    body: str

    def json(self):
        try:
            return json.loads(self.body) if self.body.strip() else None
        except json.JSONDecodeError:
            return None


class Api:
    """The API of the SBC in namespace `ns` (ns sbc, or a cluster node's)."""

    def __init__(self, base: str = API_BASE, ns: str = "sbc"):
        self.base = base
        self.ns = ns

    def request(self, method: str, path: str, body=None, timeout: float = 5.0) -> Response:
        argv = ["curl", "-sS", "-m", str(timeout), "-X", method, "-o", "-",
                "-w", "\n__HTTP_CODE__%{http_code}", self.base + path]
        data = None
        if body is not None:
            argv[1:1] = ["-H", "Content-Type: application/json", "--data-binary", "@-"]
            data = json.dumps(body)
        r = subprocess.run(nsexec(self.ns, argv), input=data, capture_output=True, text=True,
                           timeout=timeout + 5)
        out = r.stdout
        m = re.search(r"\n__HTTP_CODE__(\d{3})$", out)
        if not m:
            raise ApiError(f"{method} {path}: curl failed (rc {r.returncode}): {r.stderr.strip()}")
        return Response(int(m.group(1)), out[:m.start()])

    def ready(self) -> bool:
        try:
            return self.request("GET", "/api/v1/status", timeout=1.0).code == 200
        except (ApiError, subprocess.TimeoutExpired):
            return False

    def status(self) -> dict:
        r = self.request("GET", "/api/v1/status")
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"GET /api/v1/status -> {r.code} {r.body[:200]}")
        return r.json()

    def media(self) -> dict:
        """The "media" object of GET /api/v1/status (streams, sockets, relayed, dropped_*, ...)."""
        m = self.status().get("media")
        if not isinstance(m, dict):
            raise ApiError("GET /api/v1/status has no media object")
        return m

    def snapshot_version(self):
        try:
            return self.status().get("snapshot_version")
        except ApiError:
            return None

    def wait_applied(self, before, timeout: float = 2.0) -> bool:
        """Wait until the SIP engine has a newer routing snapshot than `before`.
        Without a usable snapshot_version, just sleep a second."""
        if not isinstance(before, (int, float)):
            time.sleep(1.0)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.snapshot_version()
            if isinstance(v, (int, float)) and v > before:
                return True
            time.sleep(0.05)
        return False

    def _create(self, path: str, obj: dict, expect=(200, 201)) -> dict:
        before = self.snapshot_version()
        r = self.request("POST", path, obj)
        if r.code not in expect:
            raise ApiError(f"POST {path} {json.dumps(obj)} -> {r.code} {r.body[:300]}")
        self.wait_applied(before)
        j = r.json()
        return j if isinstance(j, dict) else {}

    def _delete(self, path: str) -> None:
        before = self.snapshot_version()
        r = self.request("DELETE", path)
        if r.code not in (200, 204):
            raise ApiError(f"DELETE {path} -> {r.code} {r.body[:300]}")
        self.wait_applied(before)

    def add_carrier(self, ip, mask=32, name="carrier", group=1) -> dict:
        return self._create("/api/v1/carriers", {"ip": ip, "mask": mask, "name": name, "group": group})

    def add_gateway(self, destination, group=1, priority=1, weight=1, description="gw",
                    profile: str | None = None, media_encryption: str | None = None) -> dict:
        """`profile` ("transparent", "livekit") is sent only when given (None: the SBC's
        [routing] default_profile applies); `media_encryption` ("disable", "allow", "require":
        SDES toward a TLS gateway) likewise (None: the SBC's default, disable)."""
        body = {"destination": destination, "group": group, "priority": priority,
                "weight": weight, "description": description}
        if profile is not None:
            body["profile"] = profile
        if media_encryption is not None:
            body["media_encryption"] = media_encryption
        return self._create("/api/v1/gateways", body)

    def add_tenant(self, tenant_id, source_ip, gateway_group=1, max_cps=10, max_concurrent=10,
                   **numbers) -> dict:
        """`numbers`: the tenant's number rules (number_format, country_code, strip_prefix), sent
        only when given."""
        body = {"tenant_id": tenant_id, "source_ip": source_ip, "gateway_group": gateway_group,
                "max_cps": max_cps, "max_concurrent": max_concurrent}
        body.update({k: v for k, v in numbers.items() if v is not None})
        return self._create("/api/v1/tenants", body)

    def route(self, source_ip: str, to: str, headers: dict | None = None,
              from_uri: str | None = None) -> dict:
        body = {"source_ip": source_ip, "to": to}
        if headers is not None:
            body["headers"] = headers
        if from_uri is not None:
            body["from"] = from_uri
        r = self.request("POST", "/api/v1/route", body)
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"POST /api/v1/route {json.dumps(body)} -> {r.code} {r.body[:300]}")
        return r.json()

    def call_stats(self) -> dict:
        r = self.request("GET", "/api/v1/stats/calls")
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"GET /api/v1/stats/calls -> {r.code} {r.body[:300]}")
        return r.json()

    def calls(self, limit: int = 1) -> list:
        """The latest finished calls (GET /api/v1/calls), newest first."""
        r = self.request("GET", f"/api/v1/calls?limit={limit}")
        if r.code != 200 or not isinstance(r.json(), dict):
            raise ApiError(f"GET /api/v1/calls -> {r.code} {r.body[:300]}")
        return r.json()["calls"]

    def delete_carrier(self, cid) -> None:
        self._delete(f"/api/v1/carriers/{cid}")

    def delete_gateway(self, gid) -> None:
        self._delete(f"/api/v1/gateways/{gid}")

    def delete_tenant(self, tenant_id) -> None:
        self._delete(f"/api/v1/tenants/{tenant_id}")

    def list(self, what: str) -> list:
        r = self.request("GET", f"/api/v1/{what}")
        if r.code != 200:
            raise ApiError(f"GET /api/v1/{what} -> {r.code} {r.body[:300]}")
        j = r.json()
        if isinstance(j, dict):  # tolerate {"gateways": [...]} style envelopes
            for v in j.values():
                if isinstance(v, list):
                    return v
        return j if isinstance(j, list) else []


def clear_provisioning(api: Api) -> None:
    """Delete every tenant, gateway and carrier."""
    for t in api.list("tenants"):
        api.delete_tenant(t["tenant_id"])
    for g in api.list("gateways"):
        api.delete_gateway(g["id"])
    for c in api.list("carriers"):
        api.delete_carrier(c["id"])


def provision(api: Api, carriers=(), gateways=(), tenants=()) -> dict:
    """Replace the whole provisioning. carriers: (ip, mask[, name, group]) tuples, created in this
    order (so ids ascend in it); gateways: dicts for add_gateway (destination, group, priority,
    weight, description[, profile]) or a bare destination; tenants: dicts for add_tenant.
    Returns {"carriers": [...], "gateways": [...], "tenants": [...]} as the API answered."""
    clear_provisioning(api)
    out = {"carriers": [], "gateways": [], "tenants": []}
    for c in carriers:
        ip, mask, *rest = c
        name = rest[0] if rest else f"carrier-{ip}"
        group = rest[1] if len(rest) > 1 else 1
        out["carriers"].append(api.add_carrier(ip, mask, name, group))
    for g in gateways:
        g = {"destination": g} if isinstance(g, str) else dict(g)
        out["gateways"].append(api.add_gateway(**g))
    for t in tenants:
        out["tenants"].append(api.add_tenant(**t))
    return out
