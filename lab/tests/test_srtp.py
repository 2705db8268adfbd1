"""SRTP toward a TLS gateway (SDES, RFC 4568), on both backends: the SBC restarted with [sip]
public_tls = 203.0.113.50:5081 and [tls] cert/key/ca from test certificates (kit/tls.py
make_certs), group 1 = sip:203.0.113.10:5061;transport=tls with media_encryption = require. The
gateway is kit/tls.py's Python UA over TLS in ns gw, which answers or offers RTP/SAVP with an
a=crypto key of its own and runs its own SRTP/SRTCP with libsrtp2 (kit/srtp.py, ctypes); the
carrier is sipp over UDP for the signalling (scenarios written into the test's directory, media
port 7000) and a plain RTP/RTCP end point of kit/srtp.py on 10.0.1.10:7000/7001. Media: 100 PCMA
packets each way (20 ms apart, 160 random payload bytes each) and an RTCP sender report every 25.
pub0 is captured (UDP) for the whole test. Each test restores the lab config at the end (so these
run after the others).

  srtp_gateway_inbound_call    2 carrier calls: the gateway's INVITE has RTP/SAVP, c= 203.0.113.50,
                               and exactly a=crypto:1 AEAD_AES_128_GCM (28-byte key) and a=crypto:2
                               AES_CM_128_HMAC_SHA1_80 (30-byte key); the gateway answers tag 2
                               (call 1) or tag 1 (call 2) with a key of its own; the carrier's 200
                               has RTP/AVP, c= 10.0.0.100 and no a=crypto. The carrier's RTP and
                               RTCP reach the gateway and decrypt with the SBC's offered key to the
                               very bytes sent; the gateway's SRTP/SRTCP reach the carrier as plain
                               RTP/RTCP, byte for byte the gateway's plaintext (nothing else
                               arrives there); on pub0 every packet toward the gateway unprotects
                               with the SBC's key (length = plaintext + the suite's tag) and no
                               UDP payload holds 20 bytes of any plaintext payload; sip.srtp_lines
                               +1 per call at least, media dropped_srtp and srtp_replays +0.
  srtp_gateway_outbound_call   2 gateway calls over TLS offering RTP/SAVP with one a=crypto
                               (tag 5 AES_CM_128_HMAC_SHA1_80, then tag 1 AEAD_AES_128_GCM): the
                               carrier's sipp UAS gets RTP/AVP without a=crypto and answers; the
                               gateway's 200 has RTP/SAVP, c= 203.0.113.50 and exactly one
                               a=crypto, same tag and suite, a key of the SBC's (not the
                               gateway's); media both ways and pub0 as above; BYE 200.
  srtp_require_refuses_plain_answer
                               (first: a UDP gateway with media_encryption require is refused
                               400 naming media_encryption; the TLS one lists `require`.) The
                               gateway answers plain RTP/AVP without a=crypto: the carrier gets
                               502 with a Warning saying the gateway requires keys, the gateway
                               gets ACK then BYE (answered 200), calls_up back to 0.
"""
from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from pathlib import Path

from kit import srtp
from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP
from kit.calls import sip_counter, uac_outcomes, wait_calls_down
from kit.ctx import Ctx, check
from kit.media import wait_answer_sdp
from kit.pcap import Capture, read_pcap_udp
from kit.provisioning import BASE_CARRIERS, LAB_ROUTING, NUMBER, Provisioned
from kit.registry import lab_test
from kit.sip import received_invites
from kit.sipp import Uas, run_uac
from kit.tls import StreamUa, h1, make_certs, parse

TLS_PORT = 5081
SBC_TLS = f"{SBC_PUB_IP}:{TLS_PORT}"
TLS_DEST = f"sip:{GW1_IP}:5061;transport=tls"
CARRIER_MEDIA_PORT = 7000       # sipp itself binds 6000 and 6002 (-mp)
MEDIA = {"count": 100, "interval": 0.02, "rtcp_every": 25, "linger": 1.0}
HOLD_MS = 5000                  # the carrier's call lasts this long after its ACK
GCM, AES_CM = "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"
OFFERED = {1: GCM, 2: AES_CM}   # what the SBC offers a `require` gateway, tag -> suite
CHUNK = 20                      # no captured payload may hold this many bytes of a plaintext

SDP_LINES = """      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {port} RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv
""".format(port=CARRIER_MEDIA_PORT)

INVITE = """  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: [cseq] INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

""" + SDP_LINES + """
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
"""

# The carrier's UAC: its RTP on port 7000 (the test's own end point), -d after the ACK, BYE.
CARRIER_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="srtp_carrier_uac">
""" + INVITE + """  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [cseq] ACK
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [cseq] BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

# The carrier's UAC that expects 502 and ACKs it.
CARRIER_UAC_502 = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="srtp_carrier_uac_502">
""" + INVITE + """  <recv response="502"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: [cseq] ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

# The carrier's UAS: answers with its RTP on port 7000, waits for the BYE.
CARRIER_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="srtp_carrier_uas">
  <recv request="INVITE" rrs="true"/>
  <send>
    <![CDATA[

      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

""" + SDP_LINES + """
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


# --- helpers ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def sbc_tls(ctx: Ctx, certs: dict):
    """The SBC restarted with the TLS listener and [tls]; afterwards the lab config."""
    tls = (f'[tls]\ncert = "{certs["sbc"]}"\nkey = "{certs["sbc_key"]}"\n'
           f'ca = "{certs["ca"]}"\nverify = true\n')
    try:
        ctx.sbc.restart(LAB_ROUTING, health={},
                        sip_extra={"public_tls": SBC_TLS, "stream_idle_timeout_s": 3600},
                        extra_tables=tls)
        yield
    finally:
        ctx.sbc.restart(LAB_ROUTING, health={}, sip_extra={}, extra_tables="")


def gateway_row(mode: str = "require", dest: str = TLS_DEST) -> dict:
    return {"destination": dest, "group": 1, "priority": 1, "weight": 1, "description": "srtp gw",
            "media_encryption": mode}


def setup(ctx: Ctx, name: str, stack: contextlib.ExitStack) -> tuple[Path, dict]:
    """Self-check of the test's libsrtp, certificates, the SBC with TLS, the `require` gateway."""
    srtp.self_check()
    d = ctx.tdir(name)
    certs = make_certs(d / "certs", SBC_PUB_IP, GW1_IP)
    stack.enter_context(sbc_tls(ctx, certs))
    stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [gateway_row()]))
    return d, certs


def counters(ctx: Ctx) -> dict:
    st = ctx.api.status()
    m = st.get("media") or {}
    missing = [k for k in ("dropped_srtp", "srtp_replays") if k not in m]
    check(not missing and "srtp_lines" in (st.get("sip") or {}),
          f"GET /api/v1/status lacks media {missing} or sip.srtp_lines: {json.dumps(st)[:800]}")
    return {"srtp_lines": sip_counter(ctx, "srtp_lines"), "dropped_srtp": int(m["dropped_srtp"]),
            "srtp_replays": int(m["srtp_replays"]), "relayed": int(m.get("relayed", 0))}


def check_counters(c0: dict, c1: dict, calls: int) -> dict:
    dl = {k: c1[k] - c0[k] for k in c0}
    check(dl["srtp_lines"] >= calls, f"sip.srtp_lines +{dl['srtp_lines']} over {calls} SRTP calls "
                                     f"(want >= {calls}); counters moved by {dl}")
    check(dl["dropped_srtp"] == 0 and dl["srtp_replays"] == 0,
          f"media dropped_srtp +{dl['dropped_srtp']}, srtp_replays +{dl['srtp_replays']} during clean "
          f"SRTP calls (want 0); counters moved by {dl}")
    return dl


def key_len_ok(c: dict) -> bool:
    return c["suite"] in srtp.SUITES and c.get("key_b64") is not None and \
        len(base64.b64decode(c["key_b64"])) == srtp.SUITES[c["suite"]][0]


def audio_line(sdp_text: str) -> str:
    return next((ln.strip() for ln in sdp_text.replace("\r\n", "\n").split("\n") if ln.startswith("m=audio")), "")


def wait_log_event(ua: StreamUa, event: str, n: int, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while True:
        row = next((r for r in ua.log() if r.get("event") == event and r.get("n") == n), None)
        if row is not None or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def wait_sipp_invite(path: Path, index: int, timeout: float = 10.0):
    """The index-th initial INVITE (with SDP) a sipp UAS received, once its trace has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inv = [m for m in received_invites(path) if m.sdp]
        if len(inv) > index:
            return inv[index]
        time.sleep(0.1)
    return None


def media_ok(res: dict, who: str) -> None:
    check(isinstance(res, dict) and "error" not in res and res.get("sent") is not None,
          f"{who}'s media end point failed: {str(res.get('error') if isinstance(res, dict) else res)[:800]}")
    check(len(res["sent"]) == MEDIA["count"] and not res.get("errors"),
          f"{who} sent {len(res['sent'])} of {MEDIA['count']} RTP packets; socket errors {res.get('errors')[:5]}")


def match(sent: list, got: list, want_src: str | None, what: str, rtcp: bool = False) -> dict:
    """What of `sent` (our plaintexts) arrived in `got` (plaintexts after unprotect, or as received):
    counts of delivered (identical bytes), errors (did not unprotect), strangers (arrived but are
    none of the plaintexts sent), wrong source."""
    plains = {bytes.fromhex(p["plain"]) for p in sent}
    errs = [g for g in got if g["err"] is not None]
    seen = {bytes.fromhex(g["plain"]) for g in got if g["plain"] is not None}
    strangers = [g for g in got if g["plain"] is not None and bytes.fromhex(g["plain"]) not in plains]
    bad_src = [g["src"] for g in got if want_src and g["src"] != want_src]
    return {"what": what, "sent": len(sent), "got": len(got), "delivered": len(plains & seen),
            "unprotect_errors": len(errs), "err_codes": sorted({g["err"] for g in errs}),
            "strangers": len(strangers), "stranger_sample": [g["wire"][:80] for g in strangers[:3]],
            "bad_src": sorted(set(bad_src))[:3], "rtcp": rtcp}


def check_match(m: dict, ctxt: str) -> None:
    # In the lab nothing is lost: all RTCP (4) and all but at most 2 % of the RTP must arrive.
    need = m["sent"] if m["rtcp"] else m["sent"] - m["sent"] // 50
    check(m["unprotect_errors"] == 0 and m["strangers"] == 0 and not m["bad_src"] and m["delivered"] >= need,
          f"{ctxt}: {m['what']}: {m['delivered']}/{m['sent']} delivered byte-identical (want >= {need}), "
          f"{m['got']} arrived, {m['unprotect_errors']} did not unprotect {m['err_codes']}, {m['strangers']} "
          f"are none of the plaintexts sent {m['stranger_sample']}, sources {m['bad_src']} unexpected")


def check_media_both_ways(ctxt: str, gw: dict, car: dict, sbc_pub_port: int) -> dict:
    """gw: the gateway's media record (SRTP, unprotected with the SBC's key), car: the carrier's
    (plain): each side got the other's plaintexts, RTP and RTCP, from the SBC's address."""
    media_ok(gw, f"{ctxt}: the gateway")
    media_ok(car, f"{ctxt}: the carrier")
    out = {}
    for key, m in (("car>gw", match(car["sent"], gw["got"], f"{SBC_PUB_IP}:{sbc_pub_port}", "carrier -> gateway RTP")),
                   ("car>gw rtcp", match(car["sent_rtcp"], gw["got_rtcp"], f"{SBC_PUB_IP}:{sbc_pub_port + 1}",
                                         "carrier -> gateway RTCP", True)),
                   ("gw>car", match(gw["sent"], car["got"], None, "gateway -> carrier RTP")),
                   ("gw>car rtcp", match(gw["sent_rtcp"], car["got_rtcp"], None, "gateway -> carrier RTCP", True))):
        check_match(m, ctxt)
        out[key] = f"{m['delivered']}/{m['sent']}"
    srcs = {g["src"].split(":")[0] for g in car["got"] + car["got_rtcp"]}
    check(srcs == {SBC_PRIV_IP}, f"{ctxt}: the carrier's media came from {srcs} (want {SBC_PRIV_IP} only)")
    return out


def check_wire(ctxt: str, pcap: Path, suite: str, sbc_key_b64: str, sbc_port: int, gw_port: int,
               car: dict, gw: dict) -> dict:
    """pub0: every datagram from the SBC's media port (RTP, then RTCP on +1) to the gateway's
    unprotects with the SBC's key into one of the carrier's plaintexts, with exactly the suite's
    overhead; the gateway's datagrams to the SBC are the SRTP it sent."""
    udp = list(read_pcap_udp(pcap))
    out = {}
    for kind, sp, dp, sent in (("rtp", sbc_port, gw_port, car["sent"]),
                               ("rtcp", sbc_port + 1, gw_port + 1, car["sent_rtcp"])):
        pkts = [p for _, s, spt, dd, dpt, p in udp if (s, spt, dd, dpt) == (SBC_PUB_IP, sp, GW1_IP, dp)]
        plains = {bytes.fromhex(x["plain"]) for x in sent}
        rx = srtp.Session(suite, base64.b64decode(sbc_key_b64), "unprotect")
        over = srtp.rtp_overhead(suite) if kind == "rtp" else srtp.rtcp_overhead(suite)
        bad, wrong_len, ok = [], 0, 0
        for p in pkts:
            try:
                plain = rx.unprotect(p) if kind == "rtp" else rx.unprotect_rtcp(p)
            except srtp.SrtpError as e:
                bad.append(f"{len(p)} bytes: status {e.status}: {p[:24].hex()}")
                continue
            if len(p) != len(plain) + over:
                wrong_len += 1
            if plain in plains:
                ok += 1
            else:
                bad.append(f"{len(p)} bytes: unprotected into none of the carrier's {kind} plaintexts")
        rx.close()
        need = len(sent) if kind == "rtcp" else len(sent) - len(sent) // 50
        check(not bad and wrong_len == 0 and ok >= need,
              f"{ctxt}: pub0 {SBC_PUB_IP}:{sp} -> {GW1_IP}:{dp} ({kind}): {len(pkts)} datagrams, {ok} unprotect "
              f"with the SBC's {suite} key into the carrier's plaintext (want >= {need}), {wrong_len} not "
              f"plaintext + {over} bytes, failures: {bad[:4]} (capture {pcap})")
        out[kind] = f"{ok}/{len(pkts)}"
        wires = {bytes.fromhex(x["wire"]) for x in (gw["sent"] if kind == "rtp" else gw["sent_rtcp"])}
        back = [p for _, s, spt, dd, dpt, p in udp if (s, spt, dd, dpt) == (GW1_IP, gw_port + (kind == "rtcp"),
                                                                          SBC_PUB_IP, sp)]
        check(len(wires & set(back)) >= len(wires) - len(wires) // 50,
              f"{ctxt}: pub0 shows {len(wires & set(back))} of the gateway's {len(wires)} SRTP {kind} datagrams "
              f"to {SBC_PUB_IP}:{sp} (capture {pcap})")
    return out


def check_no_cleartext(pcap: Path, records: list[dict]) -> int:
    """No UDP payload on pub0 holds CHUNK consecutive bytes of any RTP payload (after the 12-byte
    header, which SRTP leaves in clear) or of any RTCP packet after its first 8 bytes (likewise)
    that either side sent in plaintext. Returns the datagrams looked at."""
    chunks = set()
    for rec in records:
        for p, skip in [(x["plain"], 12) for x in rec["sent"]] + [(x["plain"], 8) for x in rec["sent_rtcp"]]:
            b = bytes.fromhex(p)[skip:]
            chunks.update(b[i:i + CHUNK] for i in range(0, len(b) - CHUNK + 1))
    n, leaks = 0, []
    for _, s, sp, dd, dp, payload in read_pcap_udp(pcap):
        n += 1
        if any(payload[i:i + CHUNK] in chunks for i in range(0, len(payload) - CHUNK + 1)):
            leaks.append(f"{s}:{sp} -> {dd}:{dp} {len(payload)} bytes")
    check(n > 0, f"nothing captured on pub0 ({pcap})")
    check(not leaks, f"{len(leaks)} UDP datagrams on pub0 carry plaintext media: {leaks[:6]} (capture {pcap})")
    return n


def check_carrier_plain(sdp_text: str, what: str) -> None:
    al = audio_line(sdp_text)
    check(al.split()[2:3] == ["RTP/AVP"] and "a=crypto" not in sdp_text,
          f"{what}: want RTP/AVP and no a=crypto toward the carrier, got `{al}`:\n{sdp_text}")
    au = srtp.sdp_audio(sdp_text)
    check(au.get("ip") == SBC_PRIV_IP, f"{what}: media address {au.get('ip')} (want {SBC_PRIV_IP}):\n{sdp_text}")


# --- the tests -------------------------------------------------------------------------------------

@lab_test(restarts_sbc=True)
def srtp_gateway_inbound_call(ctx: Ctx):
    """Carrier (sipp UDP, plain RTP from its own end point on 7000) -> SBC -> TLS gateway with
    media_encryption require, twice: the gateway takes tag 2 (AES_CM_128_HMAC_SHA1_80), then tag 1
    (AEAD_AES_128_GCM). The offer at the gateway: RTP/SAVP, the SBC's public address, a=crypto:1
    GCM and a=crypto:2 AES_CM with keys of their suites' lengths, nothing else; the carrier's 200:
    RTP/AVP, no a=crypto. 100 RTP packets and 4 RTCP SRs each way arrive byte-identical after
    SRTP/SRTCP (checked by the receivers and, for the SBC's SRTP, on the pub0 capture with the
    SBC's key); no plaintext on pub0; sip.srtp_lines >= +2, dropped_srtp/srtp_replays +0."""
    name = "srtp_gateway_inbound_call"
    picks = [(2, AES_CM), (1, GCM)]
    seen = []
    with contextlib.ExitStack() as stack:
        d, certs = setup(ctx, name, stack)
        (d / "carrier_uac.xml").write_text(CARRIER_UAC)
        c0 = counters(ctx)
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter="udp")
        cap_priv = Capture("sbc", "priv0", d / "priv0.pcap", filter="udp")
        uas = stack.enter_context(StreamUa("gw", d, "gw_uas", {
            "mode": "uas", "ip": GW1_IP, "port": 5061, "transport": "tls", "duration": 120,
            "cert": str(certs["gw"]), "key": str(certs["gw_key"]),
            "answers": [{"crypto_tag": tag, "media": MEDIA} for tag, _ in picks]}))
        calls = []
        try:
            for n, (tag, suite) in enumerate(picks):
                res: dict = {}
                th = threading.Thread(target=lambda n=n: res.setdefault("r", run_uac(
                    "carrier", str(d / "carrier_uac.xml"), CARRIER_IP, 5060, SBC_PRIV, d, f"carrier{n}",
                    calls=1, rate=1, duration_ms=HOLD_MS, timeout_s=30)))
                th.start()
                car: dict = {"error": "the carrier got no 200 with SDP"}
                try:
                    sdp = wait_answer_sdp(d / f"carrier{n}.messages.log", 10)
                    if sdp is not None:
                        au = srtp.sdp_audio(sdp.text)
                        peer = srtp.MediaPeer("carrier", d, f"carrier{n}", dict(
                            MEDIA, ip=CARRIER_IP, port=CARRIER_MEDIA_PORT, remote=[au.get("ip"), au.get("port")],
                            wait_first=0))
                        car = peer.wait(MEDIA["count"] * MEDIA["interval"] + 15)
                finally:
                    th.join(60)
                gwm = wait_log_event(uas, "media", n, 10)
                calls.append((n, tag, suite, res.get("r"), sdp, car, gwm))
            time.sleep(0.5)
        finally:
            uas.stop()
            cap.stop()
            cap_priv.stop()
        c1 = counters(ctx)
        log = uas.log()
        records = []
        for n, tag, suite, r, sdp, car, gwm in calls:
            ctxt = f"call {n + 1} (gateway picks tag {tag} {suite})"
            check(r is not None and r.ok(1), f"{ctxt}: the carrier's call failed: "
                                             f"{r.diagnostics() if r else 'no result'}\n--- gateway log {uas.log_path}")
            check(sdp is not None, f"{ctxt}: the carrier got no 200 with SDP")
            check_carrier_plain(sdp.text, f"{ctxt}: the carrier's 200")
            ans = next((x for x in log if x.get("event") == "answer" and x.get("n") == n), None)
            check(ans is not None, f"{ctxt}: the gateway answered no INVITE #{n + 1}; log {uas.log_path}:\n"
                                   + "\n".join(str(x)[:300] for x in log if "event" in x))
            offer, oc = ans["offer"], ans["offer_cryptos"]
            check(offer.get("proto") == "RTP/SAVP" and offer.get("ip") == SBC_PUB_IP,
                  f"{ctxt}: the gateway's INVITE offers {offer} (want RTP/SAVP at {SBC_PUB_IP})")
            check(sorted((c["tag"], c["suite"]) for c in oc) == sorted(OFFERED.items()) and all(map(key_len_ok, oc)),
                  f"{ctxt}: the gateway's INVITE has a=crypto {[c['line'] for c in oc]} (want exactly "
                  f"1 {GCM} with a 28-byte key and 2 {AES_CM} with a 30-byte key)")
            check(ans.get("chosen") and ans["chosen"]["suite"] == suite,
                  f"{ctxt}: the gateway did not find tag {tag} in the offer: {ans}")
            check(gwm is not None, f"{ctxt}: the gateway's media did not finish; log {uas.log_path}")
            gw = gwm["result"]
            check(gw.get("srtp"), f"{ctxt}: the gateway's media ran without keys: {str(gw)[:300]}")
            both = check_media_both_ways(ctxt, gw, car, offer["port"])
            wire = check_wire(ctxt, cap.path, suite, ans["chosen"]["key_b64"], offer["port"], ans["port"], car, gw)
            records += [gw, car]
            seen.append(f"tag {tag} {suite}: {both}, pub0 SRTP to gw unprotected {wire}")
        n_udp = check_no_cleartext(cap.path, records)
        dl = check_counters(c0, c1, len(picks))
        wait_calls_down(ctx)
    print(f"  ({'; '.join(seen)}; {n_udp} UDP datagrams on pub0, no plaintext; counters {dl})", flush=True)


@lab_test(restarts_sbc=True)
def srtp_gateway_outbound_call(ctx: Ctx):
    """The TLS gateway calls the carrier twice, offering RTP/SAVP with one a=crypto (tag 5
    AES_CM_128_HMAC_SHA1_80, then tag 1 AEAD_AES_128_GCM) of its own key; the carrier's sipp UAS
    gets RTP/AVP at the SBC's private address without a=crypto and answers (its RTP on 7000); the
    gateway's 200: RTP/SAVP at 203.0.113.50, exactly one a=crypto, same tag and suite, a key of the
    suite's length that is not the gateway's. Media both ways as in the inbound test (byte-identical
    after SRTP/SRTCP, the SBC's SRTP on pub0 unprotected with its key from the 200, no plaintext
    on pub0); the gateway's BYE 200; sip.srtp_lines >= +2, dropped_srtp/srtp_replays +0."""
    name = "srtp_gateway_outbound_call"
    offers = [(5, AES_CM), (1, GCM)]
    seen = []
    with contextlib.ExitStack() as stack:
        d, certs = setup(ctx, name, stack)
        (d / "carrier_uas.xml").write_text(CARRIER_UAS)
        c0 = counters(ctx)
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter="udp")
        cap_priv = Capture("sbc", "priv0", d / "priv0.pcap", filter="udp")
        runs = []
        try:
            with Uas("carrier", str(d / "carrier_uas.xml"), CARRIER_IP, 5060, d, "carrier_uas") as cu:
                for n, (tag, suite) in enumerate(offers):
                    ua = stack.enter_context(StreamUa("gw", d, f"gw_uac{n}", {
                        "mode": "uac", "ip": GW1_IP, "to": SBC_TLS, "transport": "tls", "ca": str(certs["ca"]),
                        "number": NUMBER, "linger": 0.5, "hold": 0.3, "calls": ["caller_bye"],
                        "media_port": 7000 + 10 * n,    # one port pair per call: the capture tells them apart
                        "offers": [{"crypto": {"tag": tag, "suite": suite}, "media": MEDIA}]}))
                    car: dict = {"error": "the carrier got no INVITE with SDP"}
                    inv = wait_sipp_invite(cu.files["messages"], n, 10)
                    if inv is not None:
                        au = srtp.sdp_audio(inv.sdp.text)
                        peer = srtp.MediaPeer("carrier", d, f"carrier{n}", dict(
                            MEDIA, ip=CARRIER_IP, port=CARRIER_MEDIA_PORT, remote=[au.get("ip"), au.get("port")],
                            wait_first=0))
                        car = peer.wait(MEDIA["count"] * MEDIA["interval"] + 15)
                    ua.wait(40)
                    runs.append((n, tag, suite, ua, inv, car))
                cr = cu.stop()
        finally:
            cap.stop()
            cap_priv.stop()
        c1 = counters(ctx)
        records = []
        for n, tag, suite, ua, inv, car in runs:
            ctxt = f"call {n + 1} (gateway offers tag {tag} {suite})"
            res = ua.result()
            check("error" not in res, f"{ctxt}: the gateway UAC failed: {res.get('error')} (log {ua.log_path})")
            call = (res.get("calls") or [{}])[0]
            check(call.get("invite") == 200 and call.get("bye") == 200,
                  f"{ctxt}: INVITE -> {call.get('invite')}, BYE -> {call.get('bye')} (want 200, 200); "
                  f"carrier UAS {cr.summary()}\n--- gateway log {ua.log_path}")
            check(inv is not None, f"{ctxt}: the carrier's UAS got no INVITE with SDP ({cr.files.get('messages')})")
            check_carrier_plain(inv.sdp.text, f"{ctxt}: the INVITE at the carrier")
            ours, ans = call["offer"], call.get("answer") or {}
            au, ac = ans.get("audio") or {}, ans.get("cryptos") or []
            check(au.get("proto") == "RTP/SAVP" and au.get("ip") == SBC_PUB_IP,
                  f"{ctxt}: the gateway's 200 answers {au} (want RTP/SAVP at {SBC_PUB_IP})")
            check(len(ac) == 1 and ac[0]["tag"] == tag and ac[0]["suite"] == suite and key_len_ok(ac[0]),
                  f"{ctxt}: the gateway's 200 has a=crypto {[c['line'] for c in ac]} (want exactly one, "
                  f"tag {tag} {suite} with a {srtp.SUITES[suite][0]}-byte key)")
            check(ac[0]["key_b64"] != ours["key_b64"], f"{ctxt}: the SBC answered with the gateway's own key")
            gw = call.get("media") or {"error": "no media record"}
            check(gw.get("srtp"), f"{ctxt}: the gateway's media ran without keys: {str(gw)[:300]}")
            both = check_media_both_ways(ctxt, gw, car, au["port"])
            wire = check_wire(ctxt, cap.path, suite, ac[0]["key_b64"], au["port"], ours["port"], car, gw)
            records += [gw, car]
            seen.append(f"tag {tag} {suite}: {both}, pub0 SRTP to gw unprotected {wire}")
        check(cr.successful == len(offers) and cr.failed == 0, f"the carrier's UAS: {cr.summary()}\n{cr.diagnostics()}")
        n_udp = check_no_cleartext(cap.path, records)
        dl = check_counters(c0, c1, len(offers))
        wait_calls_down(ctx)
    print(f"  ({'; '.join(seen)}; {n_udp} UDP datagrams on pub0, no plaintext; counters {dl})", flush=True)


@lab_test(restarts_sbc=True)
def srtp_require_refuses_plain_answer(ctx: Ctx):
    """First the API: a UDP gateway with media_encryption require is refused 400 naming
    media_encryption; the TLS gateway lists media_encryption require. Then a carrier call to it
    whose gateway answers plain RTP/AVP without a=crypto: the carrier gets 502 with a Warning that
    the gateway requires keys, the gateway gets ACK then BYE (answered 200) for its 200, and
    calls_up is back to 0."""
    name = "srtp_require_refuses_plain_answer"
    with contextlib.ExitStack() as stack:
        d, certs = setup(ctx, name, stack)
        bad = ctx.api.request("POST", "/api/v1/gateways", gateway_row("require", f"sip:{GW1_IP}:5060"))
        check(bad.code == 400 and "media_encryption" in bad.body,
              f"POST a UDP gateway with media_encryption require -> {bad.code} {bad.body[:300]} "
              f"(want 400 naming media_encryption)")
        gws = ctx.api.list("gateways")
        check(len(gws) == 1 and gws[0].get("media_encryption") == "require",
              f"GET /api/v1/gateways: {gws} (want the one TLS gateway, media_encryption require)")
        (d / "carrier_uac_502.xml").write_text(CARRIER_UAC_502)
        c0 = counters(ctx)
        with StreamUa("gw", d, "gw_uas", {
                "mode": "uas", "ip": GW1_IP, "port": 5061, "transport": "tls", "duration": 60,
                "cert": str(certs["gw"]), "key": str(certs["gw_key"]),
                "answers": [{"crypto_tag": None}]}) as uas:
            r = run_uac("carrier", str(d / "carrier_uac_502.xml"), CARRIER_IP, 5060, SBC_PRIV, d, "carrier",
                        calls=1, rate=1, timeout_s=20)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                    x.get("dir") == "in" and x["msg"].startswith("BYE ") for x in uas.log()):
                time.sleep(0.1)
            time.sleep(0.3)
            uas.stop()
        c1 = counters(ctx)
        o = uac_outcomes(r)
        check(r.ok(1) and o["codes"] == {"502": 1},
              f"the carrier's call ended {o['codes']} (want one 502): {r.diagnostics()}\n--- gateway log {uas.log_path}")
        final = next(iter(o["finals"].values()))
        warn = " ".join(final.headers("Warning"))
        check("requires them" in warn, f"the carrier's 502 has Warning `{warn}` (want one saying the gateway "
                                       f"requires SRTP keys):\n{final.text}")
        log = uas.log()
        ans = next((x for x in log if x.get("event") == "answer"), None)
        check(ans is not None and ans["offer"].get("proto") == "RTP/SAVP" and len(ans["offer_cryptos"]) == 2,
              f"the gateway's INVITE: {ans and (ans['offer'], [c['line'] for c in ans['offer_cryptos']])} "
              f"(want RTP/SAVP with 2 a=crypto)")
        got = [x["msg"].split("\r\n", 1)[0] for x in log if x.get("dir") == "in"]
        kinds = [g.split(" ", 1)[0] for g in got]
        check(kinds[:1] == ["INVITE"] and "ACK" in kinds and "BYE" in kinds and kinds.index("ACK") < kinds.index("BYE"),
              f"the gateway got {got} (want INVITE, ACK, then BYE)")
        bye_ok = [m for m in (parse(x["msg"].encode()) for x in log if x.get("dir") == "out")
                  if m["first"].startswith("SIP/2.0 200") and h1(m, "CSeq").endswith("BYE")]
        check(len(bye_ok) == 1, f"the gateway answered the SBC's BYE {len(bye_ok)} times with 200 (want 1)")
        wait_calls_down(ctx, strict=True)
        dl = {k: c1[k] - c0[k] for k in c0}
    print(f"  (carrier got 502, Warning: {warn}; gateway got {' -> '.join(kinds)}; counters {dl})", flush=True)
