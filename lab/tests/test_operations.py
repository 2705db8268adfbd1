"""Tests of what operators read about calls: the Prometheus endpoint (GET /metrics on [metrics]
listen, 127.0.0.1:9494 inside ns sbc with the lab's config) and the CDRs (table `cdrs`, GET
/api/v1/cdrs, the window of GET /api/v1/stats/calls?since=, sbcctl cdrs / stats). The two
*_match_calls tests each make the same kind of batch of real calls, of a tenant and to a gateway
stand-in of their own: 20 answered calls with audio both ways (sip-tester's g711a.pcap from the
carrier, echoed by the gateway with sipp -rtp_echo; the RTP leaving both peers is captured in
their namespaces), 5 refused with 486 by the gateway, 2 INVITEs from 10.0.1.20 (no carrier)
rejected with 403.

  ops_metrics_format       /metrics parses with prometheus_client's text-format parser and is
                           valid in the format its Content-Type names (Prometheus picks its
                           parser by that header); no calls needed.
  ops_metrics_match_calls  /metrics before and after the batch, parsed with prometheus_client's
                           text-format parser: sbc_calls_total deltas by tenant, direction and
                           result are the calls made and agree with GET /api/v1/stats/calls;
                           sbc_sip_calls_total rose by the dialogs made; setup and duration
                           histograms counted the answered calls (durations about sipp's -d);
                           sbc_rtp_packets_total / _bytes_total per side within 3 % of what the
                           peers sent; sbc_calls_up 0 afterwards; sbc_build_info names the lab's
                           backend.
  ops_cdrs_match_calls     GET /api/v1/cdrs?since=5m: one row per carrier Call-ID of the
                           batch (none for the rejected INVITEs), result, final code, reason,
                           ended_by, direction, tenant, addresses and attempts right, times in
                           the test's wall-clock window, answered durations within 0.5 s of
                           sipp's -d, RTP figures near the g711a.pcap's 236 packets; the
                           stats window shows the same attempts, answered, ASR, ACD and 486s
                           for the tenant and for the gateway; sbcctl cdrs and sbcctl stats
                           (inside ns sbc) print them.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.addresses import (API_BASE, CARRIER2_IP, CARRIER_IP, GW2_IP, GW3_IP, SBC_PRIV,
                           SIPP_MEDIA_PORT)
from kit.calls import tail_if, wait_calls_down
from kit.ctx import Ctx, check
from kit.media import PCAP_PACKETS, wait_media_idle
from kit.paths import sipp_pcap
from kit.pcap import Capture, read_pcap_udp
from kit.proc import nsexec
from kit.provisioning import BASE_CARRIERS, NUMBER, Provisioned, tenant
from kit.registry import lab_test
from kit.sip import sipp_messages
from kit.sipp import SippResult, Uas, run_uac

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # the tests that need it fail with this, the others run
    text_string_to_metric_families = None
    PROM_IMPORT_ERROR = str(e)
else:
    PROM_IMPORT_ERROR = ""

METRICS_URL = "http://127.0.0.1:9494/metrics"   # [metrics] listen default 0.0.0.0:9494, ns sbc
HOLD_MS = 8000          # sipp -d of the answered calls: longer than g711a.pcap's 7 s of audio
ANSWERED, BUSY, REJECTED = 20, 5, 2
CALL_RESULTS = ("answered", "failed", "cancelled", "rejected", "limit_exceeded", "media_timeout")
# The metric types the Prometheus text format 0.0.4 knows (Prometheus' own parser refuses others).
TEXT_004_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


# --- the batch of calls both tests make -------------------------------------------------------

@dataclass
class Batch:
    """What run_batch() did: its wall-clock window, the sipp results, the carrier's Call-IDs per
    kind and what the peers sent as RTP (packets, bytes of UDP payload) per SBC side."""
    d: Path
    tenant: str
    gateway: str                                    # ip:port of the gateway stand-in
    t0: float = 0.0
    t1: float = 0.0
    results: dict = field(default_factory=dict)     # kind -> SippResult
    call_ids: dict = field(default_factory=dict)    # kind -> [Call-ID]
    sent: dict = field(default_factory=dict)        # side -> (packets, bytes)

    @property
    def dialogs(self) -> int:
        return len(self.call_ids["answered"]) + len(self.call_ids["busy"])


def gateway_row(ip: str, port: int, group: int) -> dict:
    return {"destination": f"sip:{ip}:{port}", "group": group, "priority": 1, "weight": 1,
            "description": f"ops-{ip.rsplit('.', 1)[1]}-{port}"}


def invite_call_ids(r: SippResult) -> list[str]:
    """The Call-IDs of the initial INVITEs a sipp UAC sent (its message trace)."""
    seen = []
    for m in sipp_messages(r.files.get("messages")):
        if m.direction == "sent" and m.is_request("INVITE") and m.call_id not in seen:
            seen.append(m.call_id)
    return seen


def udp_sent(path: Path) -> tuple[int, int]:
    """(datagrams, bytes of UDP payload) of a capture."""
    n = b = 0
    for _ts, _s, _sp, _d, _dp, payload in read_pcap_udp(path):
        n += 1
        b += len(payload)
    return n, b


def run_batch(ctx: Ctx, name: str, tenant_id: str, gw_ip: str, gw_port: int) -> Batch:
    """ANSWERED calls of tenant `tenant_id` (by prefix) from the carrier, held HOLD_MS with
    g711a.pcap played by the caller and echoed by the gateway stand-in on gw_ip:gw_port; then
    BUSY calls that the stand-in refuses with 486; then REJECTED INVITEs from 10.0.1.20, which is
    no carrier (403). Fails the test unless every call ended as meant."""
    pcap = sipp_pcap()
    check(pcap.exists(), f"{pcap} not found (sip-tester ships it: dpkg -L sip-tester | grep pcap)")
    d = ctx.tdir(name)
    b = Batch(d, tenant_id, f"{gw_ip}:{gw_port}")
    svc = f"{tenant_id}_{NUMBER}"
    mp = ["-mp", str(SIPP_MEDIA_PORT)]
    caps = {"private": Capture("carrier", "c0", d / "carrier_rtp.pcap",
                               f"udp and src host {CARRIER_IP} and src port {SIPP_MEDIA_PORT}"),
            "public": Capture("gw", "g0", d / "gw_rtp.pcap",
                              f"udp and src host {gw_ip} and src port {SIPP_MEDIA_PORT}")}
    b.t0 = time.time()
    try:
        with Uas("gw", "uas_call", gw_ip, gw_port, d, "uas_answer", extra=["-rtp_echo"] + mp) as uas:
            r = run_uac("carrier", "uac_rtp", CARRIER_IP, 5060, SBC_PRIV, d, "uac_answer",
                        calls=ANSWERED, rate=ANSWERED, limit=ANSWERED, duration_ms=HOLD_MS,
                        timeout_s=40, service=svc, extra=mp)
            ur = uas.stop()
    finally:
        for c in caps.values():
            c.stop()
    check(r.ok(ANSWERED), f"answered calls: {r.diagnostics()}\n--- gateway stand-in: {ur.summary()}\n"
                          f"{tail_if(ur.files.get('errors'))}")
    b.results["answered"] = r
    with Uas("gw", "uas_486", gw_ip, gw_port, d, "uas_busy") as uas:
        r = run_uac("carrier", "uac_486", CARRIER_IP, 5060, SBC_PRIV, d, "uac_busy", calls=BUSY,
                    rate=10, limit=BUSY, timeout_s=20, service=svc)
        ur = uas.stop()
    check(r.ok(BUSY), f"calls refused by the gateway (486 expected): {r.diagnostics()}\n"
                      f"--- gateway stand-in: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    b.results["busy"] = r
    r = run_uac("carrier", "uac_403", CARRIER2_IP, 5060, SBC_PRIV, d, "uac_rejected",
                calls=REJECTED, rate=10, limit=REJECTED, timeout_s=10, service=svc)
    check(r.ok(REJECTED), f"INVITEs from {CARRIER2_IP} (no carrier; 403 expected): {r.diagnostics()}")
    b.results["rejected"] = r
    b.t1 = time.time()
    want = {"answered": ANSWERED, "busy": BUSY, "rejected": REJECTED}
    for kind, res in b.results.items():
        b.call_ids[kind] = invite_call_ids(res)
        check(len(b.call_ids[kind]) == want[kind],
              f"{kind}: {len(b.call_ids[kind])} Call-IDs in the caller's trace "
              f"{res.files.get('messages')}, want {want[kind]}")
    b.sent = {side: udp_sent(c.path) for side, c in caps.items()}
    (d / "batch.json").write_text(json.dumps(
        {"t0": b.t0, "t1": b.t1, "tenant": tenant_id, "gateway": b.gateway, "call_ids": b.call_ids,
         "rtp_sent": b.sent}, indent=1))
    return b


def settle(ctx: Ctx) -> None:
    """No call up, no relay stream, and the API's 250 ms drain of the engine's rings done."""
    wait_calls_down(ctx)
    wait_media_idle(ctx)
    time.sleep(0.6)


# --- /metrics ---------------------------------------------------------------------------------

@dataclass
class Scrape:
    content_type: str
    text: str
    samples: dict            # (sample name, ((label, value), ...) sorted) -> value

    def get(self, name: str, **labels) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def series(self, name: str) -> dict:
        """{labels tuple: value} of every sample called `name`."""
        return {lab: v for (n, lab), v in self.samples.items() if n == name}


def scrape(ctx: Ctx, d: Path, tag: str) -> Scrape:
    """GET /metrics inside ns sbc, saved as <tag>.metrics.txt, parsed with prometheus_client."""
    check(text_string_to_metric_families is not None,
          f"cannot check /metrics: the Python package prometheus-client is not installed "
          f"({PROM_IMPORT_ERROR}); install it with `python3 -m pip install prometheus-client` "
          f"(.ci/run does)")
    r = subprocess.run(nsexec("sbc", ["curl", "-sS", "-m", "5", "-i", METRICS_URL]),
                       capture_output=True, timeout=15)
    raw = r.stdout.decode("utf-8", "replace")
    (d / f"{tag}.metrics.txt").write_text(raw)
    check(r.returncode == 0, f"GET {METRICS_URL} inside ns sbc: curl exit {r.returncode}: "
                             f"{r.stderr.decode('utf-8', 'replace').strip()}")
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    status = head.split("\n", 1)[0]
    check(" 200" in status, f"GET {METRICS_URL}: {status}\n{body[:500]}")
    ctype = next((line.split(":", 1)[1].strip() for line in head.split("\n")
                  if line.lower().startswith("content-type:")), "")
    try:
        families = list(text_string_to_metric_families(body))
    except Exception as e:  # noqa: BLE001
        raise_parse(e, body, d / f"{tag}.metrics.txt")
    samples = {}
    for fam in families:
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    check(samples, f"GET {METRICS_URL} parsed to no sample at all ({d / f'{tag}.metrics.txt'})")
    return Scrape(ctype, body, samples)


def raise_parse(e: Exception, body: str, path: Path) -> None:
    check(False, f"prometheus_client.parser could not parse GET {METRICS_URL}: "
                 f"{type(e).__name__}: {e} (text in {path}; first lines:\n{body[:600]})")


def deltas(a: Scrape, b: Scrape, name: str) -> dict:
    """{labels: b - a} of the samples called `name` that changed."""
    sa, sb = a.series(name), b.series(name)
    out = {}
    for lab in set(sa) | set(sb):
        v = sb.get(lab, 0.0) - sa.get(lab, 0.0)
        if v:
            out[lab] = v
    return out


def fmt_labels(lab: tuple) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in lab) + "}"


def format_problems(ctype: str, text: str) -> list[str]:
    """Why Prometheus would refuse the text as the format its Content-Type names: a 0.0.4 body
    (text/plain; version=0.0.4) may only TYPE metrics as counter, gauge, histogram, summary or
    untyped (Prometheus' textparse.PromParser fails the whole scrape with `invalid metric type`
    otherwise); an OpenMetrics body must pass prometheus_client's strict OpenMetrics parser."""
    if "openmetrics" in ctype:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
        try:
            list(om(text))
        except Exception as e:  # noqa: BLE001
            return [f"not valid OpenMetrics: {type(e).__name__}: {e}"]
        return []
    bad = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[1] == "TYPE" and parts[3] not in TEXT_004_TYPES:
            bad.append(line)
    if not bad:
        return []
    om_note = ""
    try:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
        list(om(text))
        om_note = ("; the body does parse as OpenMetrics 1.0 (prometheus_client.openmetrics.parser), "
                   "so it is OpenMetrics text served as 0.0.4")
    except Exception as e:  # noqa: BLE001
        om_note = f"; nor is it valid OpenMetrics ({type(e).__name__}: {e})"
    return [f"Content-Type {ctype!r} but {len(bad)} TYPE line(s) the 0.0.4 format does not have "
            f"(Prometheus' parser for that Content-Type fails the whole scrape with `invalid metric "
            f"type`): {bad[:5]}{om_note}"]


def scrape_until(ctx: Ctx, d: Path, before: Scrape, want_calls: dict, answered: int,
                 timeout: float = 6.0) -> Scrape:
    """Scrape until sbc_calls_total moved by `want_calls` and the answered calls' records were
    counted (setup histogram), or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        after = scrape(ctx, d, "after")
        got = deltas(before, after, "sbc_calls_total")
        setup = sum(deltas(before, after, "sbc_call_setup_seconds_count").values())
        if (got == want_calls and setup >= answered) or time.monotonic() > deadline:
            return after
        time.sleep(0.3)


def stats_deltas(a: dict, b: dict) -> dict:
    """{(tenant, result): n} by which GET /api/v1/stats/calls by_tenant moved."""
    out = {}
    ta, tb = a.get("by_tenant") or {}, b.get("by_tenant") or {}
    for t in set(ta) | set(tb):
        for k in CALL_RESULTS:
            v = int((tb.get(t) or {}).get(k, 0)) - int((ta.get(t) or {}).get(k, 0))
            if v:
                out[(t, k)] = v
    return out


def near(got: float, want: float, rel: float) -> bool:
    return abs(got - want) <= rel * want


@lab_test
def ops_metrics_format(ctx: Ctx):
    """GET /metrics answers 200, prometheus_client's text-format parser reads it, and the body is
    valid in the format its Content-Type names, as Prometheus picks its parser by that header:
    text/plain; version=0.0.4 may TYPE metrics only as counter, gauge, histogram, summary or
    untyped (anything else fails the whole scrape with `invalid metric type`);
    application/openmetrics-text must pass prometheus_client's strict OpenMetrics parser."""
    d = ctx.tdir("ops_metrics_format")
    s = scrape(ctx, d, "scrape")
    problems = format_problems(s.content_type, s.text)
    check(not problems, f"GET {METRICS_URL}: " + "; ".join(problems) + f" (text in {d / 'scrape.metrics.txt'})")
    print(f"  ({len(s.samples)} samples; Content-Type {s.content_type})", flush=True)


@lab_test
def ops_metrics_match_calls(ctx: Ctx):
    """/metrics scraped before and after a batch of calls of tenant opsmet (gateway stand-in
    203.0.113.11:5071): 20 answered with RTP both ways, 5 refused 486 by the gateway, 2 INVITEs
    from 10.0.1.20 (no carrier) rejected. The text parses with prometheus_client's parser;
    sbc_calls_total moved by exactly {opsmet,inbound,answered} 20, {opsmet,inbound,failed} 5,
    {-,inbound,rejected} 2, as GET /api/v1/stats/calls did; sbc_sip_calls_total by the 25
    dialogs; sbc_call_setup_seconds_count and sbc_call_duration_seconds_count {inbound} by 20
    (mean duration within 0.5 s of sipp's -d 8 s); sbc_rtp_packets_total and sbc_rtp_bytes_total
    per side within 3 % of what the carrier (private) and the gateway (public) sent, per the
    captures in their namespaces, nothing counted lost beyond 1 %, one jitter observation per
    call and side; afterwards sbc_calls_up 0, sbc_sip_calls_total equal to status sip.calls_total,
    sbc_database_up 1 and sbc_build_info{backend} the lab's backend."""
    name = "ops_metrics_match_calls"
    d = ctx.tdir(name)
    tid, gw_ip, gw_port, group = "opsmet", GW2_IP, 5071, 6
    with Provisioned(ctx, BASE_CARRIERS, [gateway_row(gw_ip, gw_port, group)],
                     [tenant(tid, "10.0.9.21", group)]):
        settle(ctx)
        before = scrape(ctx, d, "before")
        st0 = ctx.api.call_stats()
        b = run_batch(ctx, name, tid, gw_ip, gw_port)
        want_calls = {(("direction", "inbound"), ("result", "answered"), ("tenant", tid)): ANSWERED,
                      (("direction", "inbound"), ("result", "failed"), ("tenant", tid)): BUSY,
                      (("direction", "inbound"), ("result", "rejected"), ("tenant", "-")): REJECTED}
        settle(ctx)
        after = scrape_until(ctx, d, before, want_calls, ANSWERED)
        st1 = ctx.api.call_stats()
        status = ctx.api.status()
    (d / "stats.json").write_text(json.dumps({"before": st0, "after": st1}, indent=1))

    # sbc_calls_total: the calls made, and the same as GET /api/v1/stats/calls.
    got = deltas(before, after, "sbc_calls_total")
    show = lambda m: ", ".join(f"{fmt_labels(k)} +{v:g}" for k, v in sorted(m.items())) or "nothing"  # noqa: E731
    check(got == want_calls, f"sbc_calls_total moved by {show(got)}; the calls made: {show(want_calls)}")
    by_api = stats_deltas(st0, st1)
    by_metric = {}
    for lab, v in got.items():
        dl = dict(lab)
        by_metric[(dl["tenant"], dl["result"])] = by_metric.get((dl["tenant"], dl["result"]), 0) + int(v)
    check(by_api == by_metric, f"GET /api/v1/stats/calls by_tenant moved by {by_api}, "
                               f"sbc_calls_total by {by_metric}")

    # Dialogs, setup and duration histograms.
    calls = after.get("sbc_sip_calls_total") - before.get("sbc_sip_calls_total")
    check(calls == b.dialogs, f"sbc_sip_calls_total went up by {calls:g}; {b.dialogs} dialogs were "
                              f"made ({ANSWERED} answered + {BUSY} refused by the gateway; the "
                              f"{REJECTED} rejected INVITEs make none)")
    for metric in ("sbc_call_setup_seconds", "sbc_call_duration_seconds"):
        n = deltas(before, after, f"{metric}_count")
        check(n == {(("direction", "inbound"),): ANSWERED},
              f"{metric}_count moved by {show(n)}; want {{direction=\"inbound\"}} +{ANSWERED} "
              f"(the answered calls)")
    dur = (after.get("sbc_call_duration_seconds_sum", direction="inbound")
           - before.get("sbc_call_duration_seconds_sum", direction="inbound")) / ANSWERED
    check(abs(dur - HOLD_MS / 1000) <= 0.5,
          f"mean answered duration per sbc_call_duration_seconds: {dur:.3f} s; sipp held each call "
          f"{HOLD_MS / 1000:.1f} s (-d)")
    setup = (after.get("sbc_call_setup_seconds_sum", direction="inbound")
             - before.get("sbc_call_setup_seconds_sum", direction="inbound")) / ANSWERED
    check(0 < setup < 1.0, f"mean setup per sbc_call_setup_seconds: {setup:.3f} s (want > 0 and < 1 s "
                           f"on the lab's veths)")

    # RTP per side against what the peers sent.
    rtp = {}
    for side in ("private", "public"):
        sent_n, sent_b = b.sent[side]
        pk = after.get("sbc_rtp_packets_total", side=side) - before.get("sbc_rtp_packets_total", side=side)
        by = after.get("sbc_rtp_bytes_total", side=side) - before.get("sbc_rtp_bytes_total", side=side)
        lost = after.get("sbc_rtp_lost_total", side=side) - before.get("sbc_rtp_lost_total", side=side)
        jit = (after.get("sbc_rtp_jitter_seconds_count", side=side)
               - before.get("sbc_rtp_jitter_seconds_count", side=side))
        rtp[side] = f"{side}: metric +{pk:.0f} packets / +{by:.0f} bytes, sent {sent_n} / {sent_b}"
        who = "the carrier" if side == "private" else "the gateway (echo)"
        check(sent_n >= 0.95 * ANSWERED * PCAP_PACKETS,
              f"{who} sent only {sent_n} RTP packets in {ANSWERED} calls of {PCAP_PACKETS} each "
              f"(captures in {d}): the batch did not carry the audio it should")
        check(near(pk, sent_n, 0.03), f"sbc_rtp_packets_total{{side=\"{side}\"}} went up by {pk:g}; "
                                      f"{who} sent {sent_n} RTP packets (captures in {d})")
        check(near(by, sent_b, 0.03), f"sbc_rtp_bytes_total{{side=\"{side}\"}} went up by {by:.0f}; "
                                      f"{who} sent {sent_b} bytes of UDP payload (captures in {d})")
        check(0 <= lost <= 0.01 * sent_n, f"sbc_rtp_lost_total{{side=\"{side}\"}} went up by {lost:g} "
                                          f"for {sent_n} packets sent on a lossless veth")
        check(jit == ANSWERED, f"sbc_rtp_jitter_seconds_count{{side=\"{side}\"}} went up by {jit:g}; "
                               f"want one observation per answered call ({ANSWERED})")

    # The gauges and the build.
    up = after.series("sbc_calls_up")
    check(up == {(): 0.0}, f"sbc_calls_up after the calls: {up} (want 0)")
    sip_total = int((status.get("sip") or {}).get("calls_total", -1))
    check(after.get("sbc_sip_calls_total") == sip_total,
          f"sbc_sip_calls_total {after.get('sbc_sip_calls_total'):g}, status sip.calls_total {sip_total}")
    check(after.series("sbc_database_up") == {(): 1.0},
          f"sbc_database_up: {after.series('sbc_database_up')} (want 1: the database answers)")
    info = after.series("sbc_build_info")
    backends = [dict(lab).get("backend") for lab in info]
    check(len(info) == 1 and backends == [ctx.sbc.backend] and list(info.values()) == [1.0]
          and dict(next(iter(info))).get("version"),
          f"sbc_build_info: {[(fmt_labels(k), v) for k, v in info.items()]} (want one sample, value 1, "
          f"a version and backend=\"{ctx.sbc.backend}\")")

    print(f"  ({show(got)}; sip calls +{calls:g}; {rtp['private']}; {rtp['public']}; "
          f"mean duration {dur:.2f} s, setup {setup * 1000:.1f} ms)", flush=True)


# --- CDRs -------------------------------------------------------------------------------------

def cdrs_until(ctx: Ctx, call_ids: list[str], tenant_id: str, timeout: float = 6.0) -> tuple[list, int]:
    """GET /api/v1/cdrs?since=5m&limit=1000 until every Call-ID has a row (CDRs are written in
    batches within about a second) or the timeout. Returns (rows, HTTP status)."""
    deadline = time.monotonic() + timeout
    while True:
        r = ctx.api.request("GET", "/api/v1/cdrs?since=5m&limit=1000")
        rows = (r.json() or {}).get("cdrs") if r.code == 200 and isinstance(r.json(), dict) else None
        if rows is not None:
            have = {x.get("caller_call_id") for x in rows}
            if all(c in have for c in call_ids) or time.monotonic() > deadline:
                return rows, r.code
        elif time.monotonic() > deadline:
            return [], r.code
        time.sleep(0.3)


def sbcctl(ctx: Ctx, *args: str) -> str:
    p = ctx.sbc.binary.with_name("sbcctl")
    check(p.exists(), f"no sbcctl next to the sbc under test ({p}): cargo builds both into the same "
                      f"directory")
    r = subprocess.run(nsexec("sbc", [p, "--api", API_BASE] + list(args)), capture_output=True,
                       text=True, timeout=15)
    check(r.returncode == 0, f"sbcctl {' '.join(args)} -> exit {r.returncode}: {r.stderr.strip()}\n"
                             f"{r.stdout}")
    return r.stdout


@lab_test
def ops_cdrs_match_calls(ctx: Ctx):
    """A batch of calls of tenant opscdr (gateway stand-in 203.0.113.12:5072): 20 answered with
    RTP both ways held 8 s, 5 refused 486 by the gateway, 2 INVITEs from 10.0.1.20 (no carrier)
    rejected. GET /api/v1/cdrs?since=5m&limit=1000: exactly one row per Call-ID the carrier sent
    for the 25 dialogs, none for the 2 rejected; every row inbound, tenant opscdr, caller
    10.0.1.10:5060, callee 203.0.113.12:5072, one attempt, start <= answer <= end within the
    test's wall-clock window; the answered ones answered/200/ended_by caller, end - answer within
    0.5 s of 8 s, about 236 RTP packets from the caller and as many echoed, none lost; the refused
    ones failed/486/Busy Here/ended_by callee, no answer_ms, no RTP. GET
    /api/v1/stats/calls?since=5m window: tenant opscdr and gateway 203.0.113.12:5072 each show
    25 attempts, 20 answered, ASR 0.8, ACD about 8 s, top failures [486 x 5]. `sbcctl cdrs
    --since 5m` inside ns sbc lists every Call-ID, `sbcctl stats --since 5m` the tenant and the
    gateway."""
    name = "ops_cdrs_match_calls"
    d = ctx.tdir(name)
    tid, gw_ip, gw_port, group = "opscdr", GW3_IP, 5072, 7
    gateway = f"{gw_ip}:{gw_port}"
    with Provisioned(ctx, BASE_CARRIERS, [gateway_row(gw_ip, gw_port, group)],
                     [tenant(tid, "10.0.9.22", group)]):
        settle(ctx)
        b = run_batch(ctx, name, tid, gw_ip, gw_port)
        ours = b.call_ids["answered"] + b.call_ids["busy"]
        rows, code = cdrs_until(ctx, ours, tid)
        r = ctx.api.request("GET", "/api/v1/stats/calls?since=5m")
        stats = r.json() if r.code == 200 else None
        table = sbcctl(ctx, "cdrs", "--since", "5m", "--tenant", tid, "--limit", "100")
        stats_table = sbcctl(ctx, "stats", "--since", "5m")
    (d / "cdrs.json").write_text(json.dumps({"rows": rows, "stats": stats}, indent=1))
    (d / "sbcctl_cdrs.txt").write_text(table)
    (d / "sbcctl_stats.txt").write_text(stats_table)
    check(code == 200, f"GET /api/v1/cdrs?since=5m&limit=1000 -> {code}")

    # One row per dialog, none for the rejected INVITEs.
    by_cid: dict[str, list] = {}
    for x in rows:
        by_cid.setdefault(x.get("caller_call_id"), []).append(x)
    missing = [c for c in ours if c not in by_cid]
    dup = {c: len(by_cid[c]) for c in ours if len(by_cid.get(c, [])) > 1}
    check(not missing, f"{len(missing)} of {len(ours)} calls have no CDR "
                       f"{(time.time() - b.t1):.1f} s after the last ended (e.g. {missing[:3]}); "
                       f"{len(rows)} rows in the last 5 min (in {d / 'cdrs.json'})")
    check(not dup, f"calls with more than one CDR: {dup}")
    stray = [c for c in b.call_ids["rejected"] if c in by_cid]
    check(not stray, f"rejected INVITEs (no dialog) have CDRs: {[by_cid[c] for c in stray]}")

    # Every row's fields.
    lo, hi = int(b.t0 * 1000) - 500, int(b.t1 * 1000) + 500
    problems = []
    pk_caller, pk_callee = [], []
    for kind, cids in (("answered", b.call_ids["answered"]), ("busy", b.call_ids["busy"])):
        for cid in cids:
            x = by_cid[cid][0]
            bad = []
            expect = {"tenant_id": tid, "direction": "inbound", "caller_addr": f"{CARRIER_IP}:5060",
                      "callee_addr": gateway, "attempts": 1}
            if kind == "answered":
                expect.update(result="answered", final_code=200, ended_by="caller")
            else:
                expect.update(result="failed", final_code=486, ended_by="callee", answer_ms=None,
                              caller_packets=0, callee_packets=0)
            bad += [f"{k}={x.get(k)!r} (want {v!r})" for k, v in expect.items() if x.get(k) != v]
            start, answer, end = x.get("start_ms"), x.get("answer_ms"), x.get("end_ms")
            if not (isinstance(start, int) and isinstance(end, int) and lo <= start <= end <= hi):
                bad.append(f"start_ms {start} / end_ms {end} outside the test's window {lo}..{hi} "
                           f"(or end before start)")
            if not x.get("callee_call_id") or x.get("callee_call_id") == cid:
                bad.append(f"callee_call_id {x.get('callee_call_id')!r}: want our own leg's Call-ID")
            if kind == "answered":
                if not (isinstance(answer, int) and isinstance(start, int) and isinstance(end, int)
                        and start <= answer <= end):
                    bad.append(f"answer_ms {answer} not between start_ms {start} and end_ms {end}")
                else:
                    held = end - answer
                    if abs(held - HOLD_MS) > 500:
                        bad.append(f"end - answer = {held} ms; sipp held the call {HOLD_MS} ms (-d)")
                    if answer - start > 1000:
                        bad.append(f"answer - start = {answer - start} ms (want under 1 s)")
                cp, ep = int(x.get("caller_packets") or 0), int(x.get("callee_packets") or 0)
                pk_caller.append(cp)
                pk_callee.append(ep)
                if not near(cp, PCAP_PACKETS, 0.03):
                    bad.append(f"caller_packets {cp}: the caller played {PCAP_PACKETS}")
                if not (0.97 * cp <= ep <= cp + 2):
                    bad.append(f"callee_packets {ep}: the gateway echoed the {cp} relayed to it")
                if int(x.get("caller_bytes") or 0) < 172 * cp:
                    bad.append(f"caller_bytes {x.get('caller_bytes')} for {cp} PCMA packets of 172 bytes")
                if int(x.get("caller_lost") or 0) > 0.01 * PCAP_PACKETS:
                    bad.append(f"caller_lost {x.get('caller_lost')} on a lossless veth")
            else:
                if "busy" not in str(x.get("reason", "")).lower():
                    bad.append(f"reason {x.get('reason')!r} (want the 486's, Busy Here)")
            if bad:
                problems.append(f"{kind} {cid}: " + "; ".join(bad))
    check(not problems, f"{len(problems)} of {len(ours)} CDRs are wrong (rows in {d / 'cdrs.json'}):\n  "
                        + "\n  ".join(problems[:8]))

    # The stats window, per tenant and per gateway.
    check(isinstance(stats, dict) and isinstance(stats.get("window"), dict),
          f"GET /api/v1/stats/calls?since=5m -> {r.code}: no window object: {r.body[:300]}")
    w = stats["window"]
    check(w.get("since_s") == 300, f"stats window since_s {w.get('since_s')} for since=5m (want 300)")
    n = ANSWERED + BUSY
    for what, key in (("by_tenant", tid), ("by_gateway", gateway)):
        f = (w.get(what) or {}).get(key)
        check(isinstance(f, dict), f"stats window {what} has no {key}: {json.dumps(w.get(what))[:400]}")
        bad = []
        if (f.get("attempts"), f.get("answered")) != (n, ANSWERED):
            bad.append(f"attempts/answered {f.get('attempts')}/{f.get('answered')} (want {n}/{ANSWERED})")
        if not math.isclose(float(f.get("asr", -1)), ANSWERED / n, abs_tol=1e-6):
            bad.append(f"asr {f.get('asr')} (want {ANSWERED / n})")
        if abs(float(f.get("acd_s", 0)) - HOLD_MS / 1000) > 0.5:
            bad.append(f"acd_s {f.get('acd_s')} (want about {HOLD_MS / 1000})")
        if not 0 < float(f.get("setup_avg_ms", 0)) < 1000:
            bad.append(f"setup_avg_ms {f.get('setup_avg_ms')} (want > 0 and < 1000)")
        if f.get("top_failures") != [{"code": 486, "count": BUSY}]:
            bad.append(f"top_failures {f.get('top_failures')} (want [{{code 486, count {BUSY}}}])")
        check(not bad, f"stats window {what}[{key}]: " + "; ".join(bad))

    # sbcctl, inside ns sbc.
    absent = [c for c in ours if c not in table]
    check(not absent, f"`sbcctl cdrs --since 5m --tenant {tid} --limit 100` lacks {len(absent)} of "
                      f"{len(ours)} Call-IDs (e.g. {absent[:2]}):\n{table[:1500]}")
    check(re.search(rf"\b{re.escape(tid)}\b", stats_table) and gateway in stats_table,
          f"`sbcctl stats --since 5m` does not show tenant {tid} and gateway {gateway}:\n{stats_table[:1500]}")
    print(f"  ({len(ours)} CDRs; caller packets {min(pk_caller)}-{max(pk_caller)}, callee "
          f"{min(pk_callee)}-{max(pk_callee)}; window {tid}: ASR {w['by_tenant'][tid]['asr']}, "
          f"ACD {w['by_tenant'][tid]['acd_s']:.2f} s, setup {w['by_tenant'][tid]['setup_avg_ms']:.1f} ms)",
          flush=True)
