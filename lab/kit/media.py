"""Calls with audio through the SBC's media relay: rtp_call() places one (the caller plays
sip-tester's g711a.pcap, the callee echoes it) with both SBC interfaces captured whole; RtpRun
holds what it produced, and the checks read it: SDP anchored on the SBC, RTP crossing unchanged,
the status media counters, no address leaking across, the SBC's call record. MediaSampler
watches the relay's streams and sockets while other calls run."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .addresses import (CARRIER_IP, GW1_IP, MEDIA_PORTS, SBC_PRIV, SBC_PRIV_IP, SBC_PUB, SBC_PUB_IP,
                        SIPP_MEDIA_PORT)
from .calls import tail_if
from .ctx import Ctx, check
from .paths import sipp_pcap
from .pcap import Capture, private_header_leaks, private_sip_leaks, rtp_flow, rtp_packets
from .sip import sipp_messages
from .sipp import SippResult, Uas, run_uac


@dataclass(frozen=True)
class Leg:
    """One side of the SBC as the RTP tests see it: the sipp endpoint there (RTP on
    ip:SIPP_MEDIA_PORT), the SBC interface that faces it and the SBC's media address on it."""
    ns: str
    ip: str
    iface: str
    sbc_ip: str

    @property
    def media(self) -> tuple[str, int]:
        return self.ip, SIPP_MEDIA_PORT


CARRIER_LEG = Leg("carrier", CARRIER_IP, "priv0", SBC_PRIV_IP)
GW_LEG = Leg("gw", GW1_IP, "pub0", SBC_PUB_IP)
MEDIA_KEYS = ("streams", "sockets", "relayed", "dropped_unknown_port", "dropped_wrong_source",
              "dropped_no_destination", "bind_errors", "tx_errors")
PCAP_PACKETS = 236          # RTP packets in sip-tester's g711a.pcap (30 ms apart: 7 s)


@dataclass
class RtpRun:
    """What one rtp_call() produced."""
    d: Path
    a: Leg                  # the caller's side (sipp UAC playing g711a.pcap)
    b: Leg                  # the callee's side (sipp UAS uas_call with -rtp_echo)
    r: SippResult
    ur: SippResult
    uac_msgs: list
    uas_msgs: list
    pcaps: dict             # iface -> pcap path
    pkts: dict              # iface -> [RtpPkt]
    m0: dict                # media counters before the call
    m1: dict                # ... after it (once streams were back to where they were)
    extra: dict

    @staticmethod
    def _first_per_cseq(msgs: list, pick) -> list:
        seen, out = set(), []
        for m in msgs:
            if m.direction == "received" and pick(m) and m.sdp and m.header("CSeq") not in seen:
                seen.add(m.header("CSeq"))
                out.append(m)
        return out

    def call_id(self) -> str | None:
        """The Call-ID of the caller's INVITE (the caller leg's, as the SBC records it)."""
        return next((m.call_id for m in self.uac_msgs
                     if m.direction == "sent" and m.is_request("INVITE")), None)

    def answer_msgs(self) -> list:
        """Every 200 to an INVITE with SDP the caller received (first copy per CSeq)."""
        return self._first_per_cseq(self.uac_msgs, lambda m: m.is_response(200, "INVITE"))

    def answers(self) -> list:
        """Their SDP (the SBC's side-a address)."""
        return [m.sdp for m in self.answer_msgs()]

    def offers(self) -> list:
        """SDP of every INVITE the callee received (the SBC's side-b address)."""
        return [m.sdp for m in self._first_per_cseq(self.uas_msgs, lambda m: m.is_request("INVITE"))]

    def relay_ports(self) -> tuple[int, int]:
        a, b = self.answers(), self.offers()
        check(a and b, f"no SDP seen: {len(a)} answers at the caller, {len(b)} offers at the callee "
                       f"(traces in {self.d})")
        return a[0].port, b[0].port

    def delta(self, key: str) -> int:
        return int(self.m1.get(key, 0)) - int(self.m0.get(key, 0))


def media_counters(ctx: Ctx) -> dict:
    m = ctx.api.media()
    missing = [k for k in MEDIA_KEYS if k not in m]
    check(not missing, f"status media lacks {missing}: {m}")
    return m


def wait_media_idle(ctx: Ctx, streams: int = 0, timeout: float = 5.0) -> dict:
    """Wait until status media.streams is back at `streams`; returns the counters."""
    deadline = time.monotonic() + timeout
    while True:
        m = media_counters(ctx)
        if int(m["streams"]) <= streams or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


def wait_answer_sdp(path, timeout: float = 10.0):
    """The SDP of the first 2xx to an INVITE in a sipp UAC's message trace, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in sipp_messages(path):
            if m.direction == "received" and m.is_response(200, "INVITE") and m.sdp:
                return m.sdp
        time.sleep(0.1)
    return None


def rtp_call(ctx: Ctx, name: str, *, inbound: bool = True, uac_scen: str = "uac_rtp",
             duration_ms: int = 8000, during=None, uas_scen: str = "uas_call") -> RtpRun:
    """One call with audio through the SBC, both SBC interfaces captured whole (ARP included).
    The caller (carrier when `inbound`, else gateway .10) plays g711a.pcap (scenario `uac_scen`)
    to the address of the SDP answer it gets; the callee (`uas_scen`, uas_call by default, with
    -rtp_echo) sends each packet back. `during(run_dir, answer_sdp)` runs once the caller has the
    answer."""
    pcap = sipp_pcap()
    check(pcap.exists(), f"{pcap} not found (sip-tester ships it: dpkg -L sip-tester | grep pcap)")
    d = ctx.tdir(name)
    a, b = (CARRIER_LEG, GW_LEG) if inbound else (GW_LEG, CARRIER_LEG)
    target = SBC_PRIV if inbound else SBC_PUB
    mp = ["-mp", str(SIPP_MEDIA_PORT)]
    m0 = wait_media_idle(ctx)
    caps = {i: Capture("sbc", i, d / f"{i}.pcap", filter=None) for i in ("priv0", "pub0")}
    res, extra = {}, {}
    try:
        with Uas(b.ns, uas_scen, b.ip, 5060, d, "uas", extra=["-rtp_echo"] + mp) as uas:
            th = threading.Thread(target=lambda: res.setdefault("uac", run_uac(
                a.ns, uac_scen, a.ip, 5060, target, d, "uac", calls=1, rate=1,
                duration_ms=duration_ms, timeout_s=60, extra=mp)))
            th.start()
            try:
                if during is not None:
                    sdp = wait_answer_sdp(d / "uac.messages.log")
                    check(sdp is not None, f"the caller got no 200 with SDP (trace {d / 'uac.messages.log'})")
                    extra = during(d, sdp) or {}
            finally:
                th.join(90)
                ur = uas.stop()
    finally:
        for c in caps.values():
            c.stop()
    r = res.get("uac")
    check(r is not None and r.ok(1), f"call failed: {r.diagnostics() if r else 'no UAC result'}\n"
                                     f"--- UAS: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    m1 = wait_media_idle(ctx, int(m0["streams"]))
    run = RtpRun(d, a, b, r, ur, sipp_messages(r.files.get("messages")),
                 sipp_messages(ur.files.get("messages")), {i: c.path for i, c in caps.items()},
                 {i: rtp_packets(c.path) for i, c in caps.items()}, m0, m1, extra)
    (d / "media.json").write_text(json.dumps({"before": m0, "after": m1, "extra": extra}, indent=1,
                                             default=str))
    return run


def check_anchored(run: RtpRun) -> None:
    """Every SDP each endpoint got names the SBC's media address on that side (c= and o=) and an
    even relay port in the SBC's range; the ports stay the same through re-INVITEs."""
    lo, hi = MEDIA_PORTS
    for who, leg, sdps in (("caller", run.a, run.answers()), ("callee", run.b, run.offers())):
        check(sdps, f"the {who} got no SDP (traces in {run.d})")
        for s in sdps:
            check(s.conn == leg.sbc_ip and s.origin == leg.sbc_ip,
                  f"the {who} got SDP with c={s.conn} o={s.origin}, want the SBC's {leg.sbc_ip}:\n{s.text}")
            check(s.port is not None and s.port % 2 == 0 and lo <= s.port <= hi,
                  f"the {who} got m=audio port {s.port}: want an even port in {lo}-{hi}")
        ports = sorted({s.port for s in sdps})
        check(len(ports) == 1, f"the {who}'s SDPs name different relay ports {ports} during one call")


def crossing(run: RtpRun, since: float | None = None) -> dict:
    """RTP of the call, per direction, as the captures on both SBC interfaces show it:
    sent = caller's packets arriving at the SBC's side-a port, out = those leaving the SBC's
    side-b port for the callee; back/home likewise for the echo. `delivered` counts packets
    (by SSRC and sequence number, payload compared) that came out the other side."""
    pa, pb = run.relay_ports()
    a, b = run.a, run.b
    sent = rtp_flow(run.pkts[a.iface], a.media, (a.sbc_ip, pa), since)
    out = rtp_flow(run.pkts[b.iface], (b.sbc_ip, pb), b.media, since)
    back = rtp_flow(run.pkts[b.iface], b.media, (b.sbc_ip, pb), since)
    home = rtp_flow(run.pkts[a.iface], (a.sbc_ip, pa), a.media, since)

    def matched(src, dst):
        got = {}
        for p in dst:
            got.setdefault(p.key, set()).add(p.payload)
        ok = sum(1 for p in src if p.payload in got.get(p.key, ()))
        changed = sum(1 for p in src if p.key in got and p.payload not in got[p.key])
        return ok, changed

    fwd_ok, fwd_changed = matched(sent, out)
    back_ok, back_changed = matched(back, home)
    return {"ports": (pa, pb), "sent": len(sent), "out": len(out), "fwd_ok": fwd_ok,
            "fwd_changed": fwd_changed, "back": len(back), "home": len(home), "back_ok": back_ok,
            "back_changed": back_changed}


def check_crossing(run: RtpRun, c: dict, min_sent: int, what: str = "") -> None:
    a, b = run.a, run.b
    pa, pb = c["ports"]
    desc = (f"{what}{a.ip}:{SIPP_MEDIA_PORT} -> {a.sbc_ip}:{pa} [{a.iface}] {c['sent']} packets, "
            f"{b.sbc_ip}:{pb} -> {b.ip}:{SIPP_MEDIA_PORT} [{b.iface}] {c['out']} ({c['fwd_ok']} matched); "
            f"echo {b.ip} -> {b.sbc_ip}:{pb} {c['back']}, {a.sbc_ip}:{pa} -> {a.ip} {c['home']} "
            f"({c['back_ok']} matched); captures in {run.d}")
    check(c["sent"] >= min_sent, f"the caller's RTP did not reach the SBC as expected "
                                 f"(want >= {min_sent}): {desc}")
    check(c["fwd_changed"] == 0 and c["back_changed"] == 0,
          f"relayed RTP packets differ from what was sent ({c['fwd_changed']} forward, "
          f"{c['back_changed']} back): {desc}")
    check(c["fwd_ok"] >= 0.99 * c["sent"], f"caller -> callee: {c['fwd_ok']}/{c['sent']} RTP packets "
                                           f"relayed (want >= 99 %): {desc}")
    check(c["back"] >= 0.99 * c["fwd_ok"], f"the callee echoed only {c['back']} of {c['fwd_ok']} "
                                           f"packets (is sipp -rtp_echo running?): {desc}")
    check(c["back_ok"] >= 0.99 * c["back"], f"callee -> caller: {c['back_ok']}/{c['back']} RTP packets "
                                            f"relayed (want >= 99 %): {desc}")


def check_media_counters(run: RtpRun, c: dict, wrong_source: int | None = 0) -> None:
    """Status media after the call: streams and sockets back where they were, media.relayed up by
    at least the packets the captures show leaving the relay ports (c = crossing() of the whole
    call), no bind or send errors, and (unless None) dropped_wrong_source up by `wrong_source`."""
    check(int(run.m1["streams"]) == int(run.m0["streams"]) and int(run.m1["sockets"]) == int(run.m0["sockets"]),
          f"media streams/sockets {run.m0['streams']}/{run.m0['sockets']} before the call, "
          f"{run.m1['streams']}/{run.m1['sockets']} after it ended")
    seen = c["out"] + c["home"]
    check(run.delta("relayed") >= seen,
          f"status media.relayed went up by {run.delta('relayed')}, the captures show {seen} relayed")
    for k in ("bind_errors", "tx_errors"):
        check(run.delta(k) == 0, f"status media.{k} went up by {run.delta(k)} during one clean call")
    if wrong_source is not None:
        check(run.delta("dropped_wrong_source") == wrong_source,
              f"status media.dropped_wrong_source went up by {run.delta('dropped_wrong_source')} "
              f"(want {wrong_source})")


def check_no_leak(run: RtpRun) -> None:
    """pub0: no 10.x in SIP/SDP text, nor in any IP header or ARP packet; priv0: no public
    (203.0.113.x) address in any IP header."""
    pub, priv = run.pcaps["pub0"], run.pcaps["priv0"]
    sip, leaks = private_sip_leaks(pub)
    sip_leaks = [x for x in leaks if x[5] != "<non-SIP payload>"]  # RTP payload is binary
    check(sip > 0, f"no SIP captured on pub0 ({pub})")
    check(not sip_leaks, f"{len(sip_leaks)} private addresses in SIP on pub0 ({pub}):\n"
          + "\n".join(f"  {s}:{sp} -> {d}:{dp} [{f}] {line}" for _, s, sp, d, dp, f, line in sip_leaks[:10]))
    for path, prefix in ((pub, "10."), (priv, "203.0.113.")):
        n, bad = private_header_leaks(path, prefix)
        check(n > 0, f"nothing captured in {path}")
        check(not bad, f"{len(bad)} of {n} packets in {path} carry a {prefix}x address in the IP/ARP "
                       f"header: " + "; ".join(f"{k} {s} -> {d}" for _, k, s, d in bad[:8]))


def check_call_record(ctx: Ctx, run: RtpRun, c: dict, result: str) -> dict:
    """The SBC's record of the call just made (GET /api/v1/calls, newest): its result, direction,
    and per-direction RTP figures that agree with the captures (within 1 %) with nothing lost."""
    deadline = time.monotonic() + 3
    while True:
        calls = ctx.api.calls(1)
        rec = calls[0] if calls else {}
        if rec.get("caller_call_id") == run.call_id() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(rec.get("caller_call_id") == run.call_id(),
          f"GET /api/v1/calls has no record of call {run.call_id()}: {calls}")
    want_dir = "inbound" if run.a is CARRIER_LEG else "outbound"
    check(rec["result"] == result and rec["direction"] == want_dir,
          f"call record says {rec['result']}/{rec['direction']}, want {result}/{want_dir}: {rec}")
    check(len(rec["media"]) == 1, f"call record has {len(rec['media'])} media lines, want 1: {rec}")
    m = rec["media"][0]
    for key, seen in (("from_caller", c["sent"]), ("from_callee", c["back"])):
        got = m[key]
        check(abs(got["packets"] - seen) <= max(1, seen // 100) and got["lost"] == 0,
              f"call record {key}: {got['packets']} packets, {got['lost']} lost; the captures show "
              f"{seen} arriving: {rec}")
        check(got["bytes"] >= 172 * got["packets"], f"call record {key}: bytes {got['bytes']} "
              f"for {got['packets']} PCMA packets of 172 bytes: {rec}")
    return rec


class MediaSampler:
    """Polls status media in the background; keeps the largest streams and sockets seen."""

    def __init__(self, ctx: Ctx, every: float = 0.25):
        self.ctx, self.every = ctx, every
        self.max = {"streams": 0, "sockets": 0}
        self.samples = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                m = self.ctx.api.media()
                for k in self.max:
                    self.max[k] = max(self.max[k], int(m.get(k, 0) or 0))
                self.samples += 1
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join(5)
        return False
