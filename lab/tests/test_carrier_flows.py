"""Real carrier call flows (issue 11), each with real peers and real RTP, checked from captures on
both SBC interfaces or from what the peers received: a held line silent past the media timeout
(restarts the SBC), an ICE offer from the carrier, a T.38 re-INVITE the gateway refuses, a media
port move whose answer comes late, SIP-I multipart bodies both ways, and an outbound call the
carrier challenges with 407.

The audio is the start of sip-tester's g711a.pcap, cut to a few seconds (cf_audio.pcap in the
test's directory, which the cf_*.xml scenarios play from their working directory). The flows sipp
cannot express (a caller that moves its media port, binary multipart bodies) are played by
kit/uapeer.py, run inside the carrier namespace."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from kit.addresses import (CARRIER_IP, GW1_IP, MEDIA_PORTS, PRIVATE_RE, SBC_PRIV, SBC_PRIV_IP, SBC_PUB,
                           SBC_PUB_IP, SIPP_MEDIA_PORT)
from kit.calls import tail_if, wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.media import (check_anchored, check_crossing, check_no_leak, crossing, rtp_call,
                       wait_media_idle)
from kit.netns import wait_udp_listen
from kit.paths import LAB, sipp_pcap
from kit.pcap import Capture, read_pcap_udp, rtp_packets, trim_pcap
from kit.proc import nsexec, spawn, stop_process, tail
from kit.provisioning import LAB_ROUTING
from kit.registry import lab_test
from kit.sip import received_invites, sipp_messages
from kit.sipp import Uas, run_uac
from kit.uapeer import ISUP_ANM, ISUP_IAM, Msg, multipart_parts

UAPEER = LAB / "kit" / "uapeer.py"
PCAP_INTERVAL = 0.03            # g711a.pcap: one packet every 30 ms


def audio(ctx: Ctx, name: str, seconds: float) -> int:
    """Put cf_audio.pcap (the first `seconds` of g711a.pcap) in the test's directory, where the
    cf_*.xml scenarios play it from; returns its number of RTP packets."""
    pcap = sipp_pcap()
    check(pcap.exists(), f"{pcap} not found (sip-tester ships it: dpkg -L sip-tester | grep pcap)")
    n = int(seconds / PCAP_INTERVAL)
    trim_pcap(pcap, ctx.tdir(name) / "cf_audio.pcap", n)
    return n


def in_relay_range(port) -> bool:
    lo, hi = MEDIA_PORTS
    return isinstance(port, int) and port % 2 == 0 and lo <= port <= hi


def first_received(msgs, pick):
    return next((m for m in msgs if m.direction == "received" and pick(m)), None)


def sbc_byes(run) -> list[str]:
    """BYEs either endpoint of an rtp_call received (the SBC's own or the other side's)."""
    return [f"{who} got {m.first_line} (Reason: {m.header('Reason')})"
            for who, msgs in (("carrier", run.uac_msgs), ("gateway", run.uas_msgs))
            for m in msgs if m.direction == "received" and m.is_request("BYE")]


# --- 1. a held line outlives the media timeout -------------------------------------------------

@lab_test(restarts_sbc=True)
def cf_hold_past_media_timeout(ctx: Ctx):
    """[media] timeout_s = 3. An inbound call with 2 s of audio (both ways), then the carrier
    holds it with a re-INVITE a=inactive (the gateway answers a=inactive) and both sides send
    nothing for ~6.8 s; the SBC must not end the call: no BYE reaches either side, stats/calls
    media_timeout and sip.media_timeouts stay as they were, while sip.media_timeouts_held shows
    the silence was seen. Then the carrier resumes (a=sendrecv), 2 s of audio cross both ways on
    the same relay ports, and the carrier's BYE ends the call (recorded as answered)."""
    name = "cf_hold_past_media_timeout"
    try:
        ctx.sbc.restart(LAB_ROUTING, media={"timeout_s": 3})
        n = audio(ctx, name, 2.0)
        mt0 = ctx.api.call_stats()["totals"].get("media_timeout", 0)
        sip0 = (ctx.api.status().get("sip") or {})
        check("media_timeouts_held" in sip0, f"status sip has no media_timeouts_held: {sip0}")
        try:
            run = rtp_call(ctx, name, uac_scen="cf_uac_hold_silent", uas_scen="cf_uas_hold",
                           duration_ms=2500)
        except TestFailure as e:
            d = ctx.tdir(name)
            byes = [f"{who} got {m.first_line} at {time.strftime('%H:%M:%S', time.localtime(m.ts))}"
                    f" (Reason: {m.header('Reason')})"
                    for who, f in (("carrier", "uac"), ("gateway", "uas"))
                    for m in sipp_messages(d / f"{f}.messages.log")
                    if m.direction == "received" and m.is_request("BYE")]
            raise TestFailure(f"the held call did not complete as the carrier played it; BYEs "
                              f"received: {byes or 'none'}\n{e}") from None
        sip1 = ctx.api.status().get("sip") or {}
        mt1 = ctx.api.call_stats()["totals"].get("media_timeout", 0)
        check_anchored(run)
        dirs_b = [s.direction for s in run.offers()]
        dirs_a = [s.direction for s in run.answers()]
        check(dirs_b == ["sendrecv", "inactive", "sendrecv"],
              f"directions in the INVITEs the gateway got: {dirs_b} (want sendrecv, inactive, sendrecv)")
        check(dirs_a == ["sendrecv", "inactive", "sendrecv"],
              f"directions in the 200s the carrier got: {dirs_a} (want sendrecv, inactive, sendrecv)")
        # Only the carrier's own BYE, relayed to the gateway, after it was sent.
        carrier_bye = next(m for m in run.uac_msgs if m.direction == "sent" and m.is_request("BYE"))
        byes = sbc_byes(run)
        gw_byes = [m for m in run.uas_msgs if m.direction == "received" and m.is_request("BYE")]
        check(len(byes) == 1 and len(gw_byes) == 1 and gw_byes[0].ts >= carrier_bye.ts - 0.05,
              f"BYEs received: {byes} (want only the carrier's own, relayed to the gateway)")
        check(mt1 == mt0, f"stats/calls totals media_timeout went from {mt0} to {mt1} for a held call")
        check(int(sip1.get("media_timeouts", 0)) == int(sip0.get("media_timeouts", 0)),
              f"status sip.media_timeouts went from {sip0.get('media_timeouts')} to "
              f"{sip1.get('media_timeouts')}")
        held = int(sip1.get("media_timeouts_held", 0)) - int(sip0.get("media_timeouts_held", 0))
        check(held >= 1, f"status sip.media_timeouts_held went up by {held}: the relay never reported "
                         f"the held line silent, so the silence did not outlast the timeout")
        # The silence really was longer than the timeout: the gap in the carrier's RTP.
        oks = run.answer_msgs()
        check(len(oks) == 3, f"the carrier got {len(oks)} 200s to INVITEs (want 3)")
        pa, pb = run.relay_ports()
        ts = sorted(p.ts for p in run.pkts["priv0"] if p.src == CARRIER_IP and p.dport == pa)
        gap = max((b - a for a, b in zip(ts, ts[1:])), default=0.0)
        check(gap >= 6.0, f"the longest silence in the carrier's RTP was {gap:.1f} s (want >= 6 s, "
                          f"twice the 3 s media timeout)")
        before = crossing(run)
        check(before["fwd_ok"] > 0 and before["back_ok"] > 0, f"no audio crossed before the hold: {before}")
        after = crossing(run, since=oks[2].ts)
        check_crossing(run, after, int(0.95 * n), "after the resume: ")
        rec = {}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            rec = (ctx.api.calls(1) or [{}])[0]
            if rec.get("caller_call_id") == run.call_id():
                break
            time.sleep(0.2)
        check(rec.get("caller_call_id") == run.call_id() and rec.get("result") == "answered",
              f"the SBC's record of the call: {rec} (want result answered)")
        print(f"  ({gap:.1f} s of silence on hold, media_timeouts_held +{held}, no BYE from the SBC; "
              f"after the resume {after['fwd_ok']}/{after['sent']} and {after['back_ok']}/{after['back']} "
              f"via relay ports {after['ports']})", flush=True)
    finally:
        ctx.sbc.restart(LAB_ROUTING)


# --- 2. ICE offered by the carrier --------------------------------------------------------------

ICE_ATTRS = ("a=candidate", "a=remote-candidates", "a=end-of-candidates", "a=ice-", "a=rtcp-mux")


@lab_test
def cf_ice_stripped(ctx: Ctx):
    """An inbound INVITE whose SDP carries ICE (a=ice-ufrag, a=ice-pwd, a=ice-options, host
    candidates for RTP and RTCP, a=end-of-candidates) and a=rtcp-mux: the INVITE the gateway gets
    has none of them, names the SBC's public address and an even relay port in c=/o=/m=, keeps
    the codecs, carries no 10.x anywhere; 2 s of audio cross both ways."""
    name = "cf_ice_stripped"
    n = audio(ctx, name, 2.0)
    run = rtp_call(ctx, name, uac_scen="cf_uac_ice", duration_ms=2500)
    sent = next((m for m in run.uac_msgs if m.direction == "sent" and m.is_request("INVITE")), None)
    check(sent is not None and "a=candidate:1 1 UDP" in sent.body and "a=rtcp-mux" in sent.body,
          f"the carrier's INVITE carried no ICE offer to strip:\n{sent.text if sent else '-'}")
    offers = run.offers()
    check(offers, f"the gateway got no INVITE with SDP (traces in {run.d})")
    got = offers[0].text.replace("\r\n", "\n")
    left = [ln for ln in got.split("\n") if ln.strip().startswith(ICE_ATTRS)]
    check(not left, f"the INVITE the gateway got still carries {left}:\n{got}")
    for want in ("a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
                 "a=ptime:20", "a=sendrecv"):
        check(want in got, f"the SDP the gateway got lost {want!r}:\n{got}")
    check(offers[0].conn == SBC_PUB_IP and in_relay_range(offers[0].port),
          f"the gateway's SDP names {offers[0].conn}:{offers[0].port}, want {SBC_PUB_IP} and an even "
          f"relay port:\n{got}")
    check_anchored(run)
    c = crossing(run)
    check_crossing(run, c, int(0.95 * n))
    check_no_leak(run)
    print(f"  (ICE and rtcp-mux gone from the gateway's SDP; audio {c['fwd_ok']}/{c['sent']} and "
          f"{c['back_ok']}/{c['back']} via {SBC_PUB_IP}:{c['ports'][1]})", flush=True)


# --- 3. a T.38 re-INVITE refused -----------------------------------------------------------------

T38_PORT = SIPP_MEDIA_PORT + 4


@lab_test
def cf_t38_reinvite_refused(ctx: Ctx):
    """An inbound call with 4 s of audio (both ways); 1.2 s in, the carrier offers T.38 in a
    re-INVITE (m=image 6004 udptl t38); the gateway (no fax) answers 488, which reaches the
    carrier (who ACKs it; the gateway gets the SBC's ACK). The refused offer changes nothing: the
    audio after the 488 crosses both ways, >= 99 %, on the original relay ports to the original
    addresses; no RTP ever goes to the carrier's T.38 port; the BYE ends the call."""
    name = "cf_t38_reinvite_refused"
    audio(ctx, name, 4.0)
    rb0 = (ctx.api.status().get("sip") or {}).get("offers_rolled_back")
    run = rtp_call(ctx, name, uac_scen="cf_uac_t38", uas_scen="cf_uas_t38_refuse", duration_ms=3500)
    rb1 = (ctx.api.status().get("sip") or {}).get("offers_rolled_back")
    t38_in = first_received(run.uas_msgs, lambda m: m.is_request("INVITE") and "m=image" in m.body)
    check(t38_in is not None, f"the gateway never got the T.38 re-INVITE (trace {run.ur.files.get('messages')})")
    body = t38_in.body.replace("\r\n", "\n")
    m = re.search(r"^m=image (\d+) udptl t38", body, re.M)
    conns = re.findall(r"^c=IN IP4 (\S+)", body, re.M)
    check(m and in_relay_range(int(m.group(1))) and conns and set(conns) == {SBC_PUB_IP}
          and not PRIVATE_RE.search(t38_in.text.encode()),
          f"the T.38 offer the gateway got is not anchored on {SBC_PUB_IP} and a relay port:\n{t38_in.text}")
    r488 = first_received(run.uac_msgs, lambda m: m.is_response(488, "INVITE"))
    check(r488 is not None, f"the carrier never got the gateway's 488 (trace {run.r.files.get('messages')})")
    acked = [m for m in run.uac_msgs if m.direction == "sent" and m.is_request("ACK")
             and m.header("CSeq") == (r488.header("CSeq") or "").replace("INVITE", "ACK")]
    check(acked, "the carrier sent no ACK for the 488")
    gw_ack = [m for m in run.uas_msgs if m.direction == "received" and m.is_request("ACK")
              and m.ts >= t38_in.ts]
    check(gw_ack, "the gateway got no ACK for its 488 (the SBC must ACK a non-2xx it relays)")
    check_anchored(run)
    pa, pb = run.relay_ports()
    after = crossing(run, since=r488.ts)
    check_crossing(run, after, int(0.95 * (4.0 - 1.5) / PCAP_INTERVAL), "after the 488: ")
    to_t38 = [p for p in run.pkts["priv0"] if p.dst == CARRIER_IP and p.dport in (T38_PORT, T38_PORT + 1)]
    check(not to_t38, f"{len(to_t38)} RTP packets went to the carrier's T.38 port {T38_PORT} (the "
                      f"refused offer's), the first {to_t38[0].ts - t38_in.ts:+.3f} s after the "
                      f"gateway got the re-INVITE" if to_t38 else "")
    strays = [p for p in run.pkts["priv0"] if p.src == SBC_PRIV_IP and (p.dst, p.dport) != run.a.media]
    check(not strays, f"{len(strays)} RTP packets left priv0 for somewhere else than {run.a.media}")
    if isinstance(rb0, int) and isinstance(rb1, int):
        check(rb1 - rb0 == 1, f"status sip.offers_rolled_back went up by {rb1 - rb0} (want 1: the refused "
                              f"T.38 offer)")
    byes = sbc_byes(run)
    check(len(byes) == 1, f"BYEs received: {byes} (want the carrier's, relayed to the gateway)")
    print(f"  (488 relayed and ACKed; after it {after['fwd_ok']}/{after['sent']} and "
          f"{after['back_ok']}/{after['back']} on relay ports {pa}/{pb}; nothing to port {T38_PORT}; "
          f"offers_rolled_back {rb0} -> {rb1})", flush=True)


# --- 4 and 5. flows played by kit/uapeer.py -----------------------------------------------------

class PeerRun:
    """kit/uapeer.py running FLOW in a namespace; result() waits for it and returns its JSON."""

    def __init__(self, ctx: Ctx, d: Path, tag: str, ns: str, flow: str, args: list[str],
                 bind: tuple[str, int] = (CARRIER_IP, 5060)):
        self.out = d / f"{tag}.json"
        self._f = open(self.out, "wb")
        self.proc = spawn(nsexec(ns, [sys.executable, UAPEER, flow] + args), stdout=self._f,
                          stderr=subprocess.STDOUT)
        # A flow that already ended (it failed at once) has its result to give: result() reads it.
        if not wait_udp_listen(ns, bind[0], bind[1], 5.0) and self.proc.poll() is None:
            self.result(0.1)
            raise TestFailure(f"uapeer {flow} did not bind {bind[0]}:{bind[1]}:\n{tail(self.out, 20)}")

    def result(self, timeout: float = 30.0) -> dict:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        stop_process(self.proc)
        self._f.close()
        for line in reversed(self.out.read_text(errors="replace").splitlines()):
            if line.startswith("{") and '"flow"' in line:
                return json.loads(line)
        raise TestFailure(f"uapeer gave no result:\n{tail(self.out, 20)}")


def captures(d: Path, tag: str = "") -> dict:
    return {i: Capture("sbc", i, d / f"{tag}{i}.pcap", filter=None) for i in ("priv0", "pub0")}


def stop_captures(caps: dict) -> dict:
    for c in caps.values():
        c.stop()
    return {i: c.path for i, c in caps.items()}


def sip_datagrams(path: Path, dst: str, first: bytes) -> list[tuple[float, bytes]]:
    """(ts, bytes) of the SIP datagrams to `dst` in a capture whose start line begins with
    `first` (b"INVITE ", b"SIP/2.0 200")."""
    return [(ts, data) for ts, _s, _sp, d, _dp, data in read_pcap_udp(path)
            if d == dst and data.startswith(first)]


@lab_test
def cf_port_move_answered_late(ctx: Ctx):
    """An inbound call: the carrier (kit/uapeer.py port-move) sends RTP from 10.0.1.10:6000 for
    1 s, then re-INVITEs with an SDP that only moves m=audio to 6002 (same c=), keeps sending from
    6000 until the 200 arrives and from 6002 (new SSRC) for 2 s after it; the gateway plays its
    own audio and answers the re-INVITE 40 ms late. Required: >= 90 % of the packets sent from
    6002 reach the gateway, and >= 90 % of the gateway's RTP sent after the 200 reaches the
    carrier at 6002. (Before the engine took offers at their answer and let the SDP's exact address
    take a latch over, the stragglers from 6000 re-latched the relay and 6002 was dropped.)"""
    name = "cf_port_move_answered_late"
    d = ctx.tdir(name)
    audio(ctx, name, 4.0)
    wait_media_idle(ctx)
    p, q = SIPP_MEDIA_PORT, SIPP_MEDIA_PORT + 2
    caps = captures(d)
    try:
        with Uas("gw", "cf_uas_late_answer", GW1_IP, 5060, d, "uas",
                 extra=["-mp", str(SIPP_MEDIA_PORT)]) as uas:
            peer = PeerRun(ctx, d, "carrier", "carrier", "port-move",
                           ["--ip", CARRIER_IP, "--port", str(p), "--to", SBC_PRIV,
                            "--before", "1.0", "--after", "2.0"])
            res = peer.result(30)
            ur = uas.stop()
    finally:
        pcaps = stop_captures(caps)
    check(res.get("error") is None, f"the carrier's flow failed: {res.get('error')} (output {peer.out})")
    check(ur.successful == 1 and ur.failed == 0, f"gateway: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    marks = res["marks"]
    t200, t_bye = marks["reinvite_answered"], marks["bye"]
    pub = rtp_packets(pcaps["pub0"])
    tx_p = [x for x in res["rtp_tx"] if x[1] == p]
    tx_q = [x for x in res["rtp_tx"] if x[1] == q]
    ssrc_p = tx_p[0][3] if tx_p else None
    ssrc_q = tx_q[0][3] if tx_q else None
    at_gw_p = {x.seq for x in pub if x.dst == GW1_IP and x.ssrc == ssrc_p}
    at_gw_q = {x.seq for x in pub if x.dst == GW1_IP and x.ssrc == ssrc_q}
    gw_out = [x for x in pub if x.src == GW1_IP and x.dst == SBC_PUB_IP]
    gw_after = [x for x in gw_out if t200 + 0.06 <= x.ts <= t_bye - 0.06]
    rx = res["rtp_rx"]
    rx_q_after = [x for x in rx if x[1] == q and x[0] >= t200]
    rx_p_after = [x for x in rx if x[1] == p and x[0] >= t200 + 0.06]
    late = [x for x in tx_p if x[0] >= marks["reinvite"]]
    desc = (f"carrier sent {len(tx_p)} packets from :{p} ({len(late)} while the re-INVITE was "
            f"pending; gateway got {len(at_gw_p)}), then "
            f"{len(tx_q)} from :{q} after the re-INVITE's 200 (gateway got {len(at_gw_q)}); the "
            f"gateway sent {len(gw_after)} packets after the 200, the carrier got {len(rx_q_after)} "
            f"on :{q} and {len(rx_p_after)} on :{p}; re-INVITE answered "
            f"{(t200 - marks['reinvite']) * 1000:.0f} ms after it was sent; captures in {d}")
    check(len(tx_p) > 30 and len(gw_out) > 30, f"too little RTP to judge: {desc}")
    check(late, f"the carrier sent nothing from :{p} while the re-INVITE was pending, so the flow "
                f"proves nothing: {desc}")
    check(len(at_gw_p) >= 0.9 * len(tx_p), f"before the move, the carrier's audio did not cross: {desc}")
    check(len(tx_q) >= 50, f"the carrier sent only {len(tx_q)} packets from :{q}: {desc}")
    check(len(at_gw_q) >= 0.9 * len(tx_q), f"the carrier's RTP from its new port {q} did not reach the "
                                           f"gateway (want >= 90 %): {desc}")
    check(len(gw_after) >= 30 and len(rx_q_after) >= 0.9 * len(gw_after),
          f"the gateway's RTP after the 200 did not reach the carrier's new port {q} (want >= 90 %): {desc}")
    print(f"  ({desc})", flush=True)


def printable(data: bytes) -> str:
    """CRLF-separated lines, each with every byte outside printable ASCII shown as \\xNN."""
    return "\n".join("".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in line)
                     for line in data.split(b"\r\n"))


def check_multipart(what: str, data: bytes, isup: bytes, sdp_ip: str, problems: list) -> int | None:
    """A SIP message with a multipart/mixed body as the SBC sent it: Content-Length right, the
    SDP part anchored on sdp_ip and an even relay port, the ISUP part byte-exact, no 10.x.
    Appends what is wrong to `problems`; returns the SDP part's port."""
    m = Msg(data)
    head, _, body = data.partition(b"\r\n\r\n")
    first = m.first
    ctype = m.header("Content-Type", "c") or ""
    cl = m.header("Content-Length", "l")
    bad = []
    if not ctype.lower().startswith("multipart/mixed"):
        bad.append(f"Content-Type {ctype!r} (want multipart/mixed)")
    if cl is None or not cl.isdigit() or int(cl) != len(body):
        bad.append(f"Content-Length {cl} but the body has {len(body)} bytes")
    if PRIVATE_RE.search(data):
        bad.append(f"a private address in it: {PRIVATE_RE.search(data).group().decode()}")
    bm = re.search(r'boundary="?([^";\s]+)"?', ctype, re.I)
    parts = multipart_parts(body, bm.group(1).encode()) if bm else []
    sdp = [c for h, c in parts if h.get("content-type", "").lower().startswith("application/sdp")]
    isups = [(h, c) for h, c in parts if h.get("content-type", "").lower().startswith("application/isup")]
    port = None
    if len(sdp) != 1:
        bad.append(f"{len(sdp)} application/sdp parts (of {len(parts)} parts)")
    else:
        text = sdp[0].decode("utf-8", "replace")
        conns = re.findall(r"^c=IN IP4 (\S+)", text, re.M)
        mm = re.search(r"^m=audio (\d+) ", text, re.M)
        port = int(mm.group(1)) if mm else None
        if not conns or set(conns) != {sdp_ip} or not in_relay_range(port):
            bad.append(f"its SDP part names c={conns} m=audio {port} (want {sdp_ip} and an even relay "
                       f"port):\n{text}")
    if len(isups) != 1:
        bad.append(f"{len(isups)} application/ISUP parts (of {len(parts)} parts)")
    else:
        h, c = isups[0]
        if c != isup:
            bad.append(f"ISUP part {c.hex(' ')} (want {isup.hex(' ')})")
        if h.get("content-disposition", "").lower() != "signal;handling=optional":
            bad.append(f"ISUP part's Content-Disposition {h.get('content-disposition')!r}")
    if bad:
        problems.append(f"{what} ({first}): " + "; ".join(bad) + "\n--- as sent (bytes outside "
                        f"printable ASCII escaped):\n" + head.decode("utf-8", "replace") + "\n\n"
                        + printable(body))
    return port


@lab_test
def cf_sipi_multipart(ctx: Ctx):
    """SIP-I bodies both ways. Inbound: the carrier (kit/uapeer.py multipart-uac) sends an INVITE
    with Content-Type multipart/mixed;boundary=b1, MIME-Version 1.0, an SDP part (m=audio 6000)
    and an application/ISUP part (Content-Disposition signal;handling=optional) holding a binary
    IAM; the INVITE the gateway gets (pub0 capture) has a correct Content-Length, an SDP part on
    the SBC's public address and an even relay port, the ISUP part byte for byte; 2 s of the
    carrier's RTP reach the gateway and its echo comes back. Outbound: the carrier answers the
    gateway's INVITE with a multipart 200 (SDP + ISUP ANM); the gateway gets the SDP part anchored
    and the ANM byte for byte, and its 2 s of audio reach the carrier and the echo comes back,
    all through the relay port the SDP part names."""
    name = "cf_sipi_multipart"
    d = ctx.tdir(name)
    problems: list[str] = []
    wait_media_idle(ctx)

    # Inbound: multipart INVITE from the carrier, the gateway echoes.
    caps = captures(d, "in_")
    try:
        with Uas("gw", "uas_call", GW1_IP, 5060, d, "in_uas",
                 extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
            peer = PeerRun(ctx, d, "in_carrier", "carrier", "multipart-uac",
                           ["--ip", CARRIER_IP, "--port", str(SIPP_MEDIA_PORT), "--to", SBC_PRIV,
                            "--after", "2.0"])
            res = peer.result(30)
            ur = uas.stop()
    finally:
        pcaps = stop_captures(caps)
    if res.get("error"):
        problems.append(f"inbound: the carrier's flow failed: {res['error']}")
    if ur.failed or ur.successful != 1:
        problems.append(f"inbound: gateway {ur.summary()}")
    invs = sip_datagrams(pcaps["pub0"], GW1_IP, b"INVITE ")
    port = None
    if not invs:
        problems.append("inbound: no INVITE reached the gateway")
    else:
        port = check_multipart("inbound: the INVITE the gateway got", invs[0][1], ISUP_IAM, SBC_PUB_IP,
                               problems)
    sent = [x for x in res.get("rtp_tx", [])]
    ssrc = sent[0][3] if sent else None
    pub = rtp_packets(pcaps["pub0"])
    at_gw = {x.seq for x in pub if x.dst == GW1_IP and x.ssrc == ssrc and (x.src, x.sport) == (SBC_PUB_IP, port)}
    gw_echo = {x.seq for x in pub if x.src == GW1_IP and x.ssrc == ssrc and (x.dst, x.dport) == (SBC_PUB_IP, port)}
    echoed = {x[4] for x in res.get("rtp_rx", []) if x[3] == ssrc}
    if len(sent) < 50 or min(len(at_gw), len(gw_echo), len(echoed)) < 0.95 * len(sent):
        dests = sorted({f"{x.dst}:{x.dport}" for x in pub if x.src == GW1_IP})
        problems.append(f"inbound audio: the carrier sent {len(sent)} packets, {len(at_gw)} reached the "
                        f"gateway from {SBC_PUB_IP}:{port}, it echoed {len(gw_echo)} there, {len(echoed)} "
                        f"came back (want >= 95 % each way); the gateway's RTP went to {dests}")
    wait_calls_down(ctx)
    wait_media_idle(ctx)

    # Outbound: the gateway calls, the carrier answers with a multipart 200 and echoes.
    n = audio(ctx, name, 2.0)
    caps = captures(d, "out_")
    try:
        peer = PeerRun(ctx, d, "out_carrier", "carrier", "multipart-uas",
                       ["--ip", CARRIER_IP, "--port", str(SIPP_MEDIA_PORT), "--wait", "15"])
        r = run_uac("gw", "cf_uac_rtp", GW1_IP, 5060, SBC_PUB, d, "out_uac", calls=1, rate=1,
                    duration_ms=2500, timeout_s=20, extra=["-mp", str(SIPP_MEDIA_PORT)])
        res = peer.result(10)
    finally:
        pcaps = stop_captures(caps)
    if not r.ok(1):
        problems.append(f"outbound: gateway {r.summary()}\n{tail_if(r.files.get('errors'))}")
    if res.get("error"):
        problems.append(f"outbound: the carrier's flow failed: {res['error']}")
    oks = [(ts, x) for ts, x in sip_datagrams(pcaps["pub0"], GW1_IP, b"SIP/2.0 200")
           if re.search(rb"\r\nCSeq:\s*\d+\s+INVITE", x, re.I)]
    port = None
    if not oks:
        problems.append("outbound: no 200 to the INVITE reached the gateway")
    else:
        port = check_multipart("outbound: the 200 the gateway got", oks[0][1], ISUP_ANM, SBC_PUB_IP,
                               problems)
    pub = rtp_packets(pcaps["pub0"])
    gw_sent = [x for x in pub if x.src == GW1_IP and (x.dst, x.dport) == (SBC_PUB_IP, port)]
    at_carrier = {(x[3], x[4]) for x in res.get("rtp_rx", [])}
    back = {(x.ssrc, x.seq) for x in pub if x.dst == GW1_IP and (x.src, x.sport) == (SBC_PUB_IP, port)}
    if len(gw_sent) < 0.9 * n or len(at_carrier) < 0.95 * len(gw_sent) or len(back) < 0.95 * len(gw_sent):
        dests = sorted({f"{x.dst}:{x.dport}" for x in pub if x.src == GW1_IP})
        problems.append(f"outbound audio: the gateway sent {len(gw_sent)} packets (to {dests}), "
                        f"{len(at_carrier)} reached the carrier, {len(back)} came back to the gateway "
                        f"(want >= 95 % each way)")
    check(not problems, "\n".join(problems) + f"\n(captures and peer output in {d})")
    print(f"  (multipart INVITE and 200 anchored, ISUP parts byte-exact, audio both ways in both "
          f"calls; outbound {len(at_carrier)}/{len(gw_sent)} to the carrier, {len(back)} back)", flush=True)


# --- 6. the carrier challenges an outbound call ------------------------------------------------

CHALLENGE_REALM = "carrier.example"                 # as lab/sipp/cf_uas_challenge.xml sends them
CHALLENGE_NONCE = "cf5a1b2c3d4e5f60718293a4b5c6d7e8"


def digest_response(user: str, password: str, method: str, params: dict) -> str:
    """RFC 2617 / RFC 3261 22.4 MD5 digest response for the parameters of a Proxy-Authorization."""
    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()
    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{params['uri']}")
    if params.get("qop"):
        return md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}")
    return md5(f"{ha1}:{params['nonce']}:{ha2}")


def auth_params(value: str) -> dict:
    return {k.lower(): (v1 if v1 else v2) for k, v1, v2 in
            re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value)}


@lab_test
def cf_challenged_outbound(ctx: Ctx):
    """An outbound call (gateway .10 -> SBC public -> carrier) that the carrier challenges: the
    first INVITE gets 407 with Proxy-Authenticate (realm carrier.example); the gateway ACKs and
    sends the INVITE again with Proxy-Authorization (user/secret); the carrier verifies the digest
    (its response= must be the one user/secret give; 403 otherwise) and answers 200; ACK and BYE complete the call. The carrier
    saw both INVITEs with the SAME Call-ID and From tag and CSeq + 1 (RFC 3261 8.1.3.5, 22.2), the
    challenge reached the gateway unchanged, the Proxy-Authorization the carrier got is the one the
    gateway sent, byte for byte, and its digest verifies for the carrier's realm and nonce."""
    name = "cf_challenged_outbound"
    d = ctx.tdir(name)
    # sipp's verifyauth reads Authorization only: the carrier compares the response= it gets with
    # the one user/secret give for its realm and nonce and the uri sipp digests (remote ip:port).
    expected = digest_response("user", "secret", "INVITE", {
        "realm": CHALLENGE_REALM, "nonce": CHALLENGE_NONCE, "uri": f"sip:{SBC_PUB}"})
    with Uas("carrier", "cf_uas_challenge", CARRIER_IP, 5060, d, "uas",
             extra=["-set", "expected", expected]) as uas:
        r = run_uac("gw", "cf_uac_auth", GW1_IP, 5060, SBC_PUB, d, "uac", calls=1, rate=1,
                    duration_ms=500, timeout_s=20, extra=["-au", "user", "-ap", "secret"])
        ur = uas.stop()
    uac, uas_msgs = sipp_messages(r.files.get("messages")), sipp_messages(ur.files.get("messages"))
    check(r.ok(1), f"gateway: {r.diagnostics()}\n--- carrier: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    check(ur.successful == 1 and ur.failed == 0,
          f"carrier: {ur.summary()} (a failed call here means the digest did not verify)\n"
          f"{tail_if(ur.files.get('errors'))}")
    invs = received_invites(ur.files.get("messages"))
    check(len(invs) == 2, f"the carrier got {len(invs)} initial INVITEs (want 2: the challenged one and "
                          f"the one with credentials)")
    i1, i2 = invs
    check(i1.call_id == i2.call_id, f"the carrier got the credentialed INVITE with Call-ID {i2.call_id}, "
                                    f"the challenged one had {i1.call_id}: its nonce may be bound to the call")
    tag = lambda m: (re.search(r";\s*tag=([^;>\s]+)", m.header("From") or "") or [None, None])[1]  # noqa: E731
    check(tag(i1) == tag(i2), f"From tags differ at the carrier: {tag(i1)} vs {tag(i2)}")
    c1, c2 = (int((m.header("CSeq") or "0").split()[0]) for m in (i1, i2))
    check(c2 == c1 + 1, f"CSeq at the carrier: {c1} then {c2} (want + 1)")
    check(i1.header("Proxy-Authorization") is None, "the first INVITE already had Proxy-Authorization")
    sent = [m for m in uac if m.direction == "sent" and m.is_request("INVITE")]
    sent_pa = [m.header("Proxy-Authorization") for m in sent if m.header("Proxy-Authorization")]
    got_pa = i2.header("Proxy-Authorization")
    check(sent_pa and got_pa == sent_pa[0],
          f"Proxy-Authorization changed on the way:\n  gateway sent:  {sent_pa[:1]}\n  carrier got:   {got_pa}")
    chal_sent = next((m.header("Proxy-Authenticate") for m in uas_msgs
                      if m.direction == "sent" and m.is_response(407)), None)
    chal_got = next((m.header("Proxy-Authenticate") for m in uac
                     if m.direction == "received" and m.is_response(407)), None)
    check(chal_got is not None and chal_got == chal_sent,
          f"the 407's Proxy-Authenticate changed on the way: carrier sent {chal_sent!r}, gateway got {chal_got!r}")
    p, ch = auth_params(got_pa), auth_params(chal_sent)
    check(p.get("realm") == CHALLENGE_REALM and p.get("nonce") == ch.get("nonce") == CHALLENGE_NONCE,
          f"Proxy-Authorization {got_pa!r} does not answer the challenge {chal_sent!r}")
    sent_uri = auth_params(sent_pa[0]).get("uri")
    check(p.get("uri") == sent_uri and sent_uri, f"uri= in the Proxy-Authorization the carrier got is "
                                                 f"{p.get('uri')!r}, the gateway sent {sent_uri!r}")
    want = digest_response("user", "secret", "INVITE", p)
    check(p.get("response") == want, f"the digest does not verify: response={p.get('response')} want {want}")
    acks = [m for m in uas_msgs if m.direction == "received" and m.is_request("ACK")]
    check(len(acks) >= 2, f"the carrier got {len(acks)} ACKs (want one for the 407, one for the 200)")
    print(f"  (407 -> credentialed INVITE on Call-ID {i1.call_id[:20]}..., CSeq {c1} -> {c2}; "
          f"Proxy-Authorization byte-exact, uri={p.get('uri')})", flush=True)
