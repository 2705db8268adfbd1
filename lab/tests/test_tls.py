"""SIP over TLS and TCP on the public side, on both backends (DPDK: TCP reaches the kernel through the
exception path, [dataplane.dpdk] exception_iface, which the lab config always sets): the SBC restarted with
[sip] public_tcp = 203.0.113.50:5080, public_tls = 203.0.113.50:5081 and [tls] cert/key/ca from
test certificates made with the openssl CLI (kit/tls.py: a lab CA, the SBC's certificate with IP
SAN 203.0.113.50, the gateway's with IP SAN 203.0.113.10, a rogue CA and a gateway certificate it
signed, and one of the lab CA for another address). The gateway is a small Python (OpenSSL) SIP UA
in ns gw (kit/tls.py StreamUa); the carrier stays sipp over UDP. Each test restores the lab config
at the end (so these run after the others).

  tls_gateway_inbound_call   group 1 = sip:203.0.113.10:5061;transport=tls: 3 carrier calls (2
                             hung up by the carrier, 1 by the gateway) all complete; the gateway
                             got the INVITEs over TLS with Via `SIP/2.0/TLS 203.0.113.50:5081;alias;
                             branch=`, Record-Route and Contact on 5081 with transport=tls, no
                             10.x address anywhere; its BYE reached the carrier over UDP; the
                             capture of TCP 5061 on pub0 shows no clear SIP; streams.connected >= 1,
                             messages_in/out grew, failed 0.
  tls_gateway_outbound_call  the gateway connects to 203.0.113.50:5081 verifying the SBC's
                             certificate (IP SAN) against the lab CA: a "\\r\\n\\r\\n" ping gets a
                             "\\r\\n" pong (streams.pongs +1), an INVITE reaches the carrier's sipp
                             UAS over UDP and is answered 200, the gateway's BYE 200; in a second run
                             the carrier hangs up and its BYE reaches the gateway over the TLS
                             connection the call came on; streams.accepted >= 2.
  tcp_gateway_and_framing    group 1 = sip:203.0.113.10:5060;transport=tcp: 2 calls complete with
                             Via `SIP/2.0/TCP 203.0.113.50:5080;alias`, Contact/Record-Route
                             transport=tcp on 5080; then a raw TCP client on 203.0.113.50:5080
                             gets a pong, sends a request without Content-Length and the SBC
                             closes the connection: streams.framing_errors +1.
  tls_gateway_bad_certificate the TLS gateway (priority 10, a UDP fallback at .11 priority 1)
                             presents a certificate of a rogue CA (fallback answers 503: 2 calls end
                             408/503 at the carrier), then one of the lab CA for another IP
                             (fallback answers 200: 2 calls succeed there): the SBC's connects fail
                             (streams.failed +1 per call, connected +0), sip.failovers +1 per call,
                             the gateway never reads a SIP message; alone, the rogue gateway's call
                             ends 408/503 within Timer B + 8 s; no clear SIP on TCP 5061 at pub0.
"""
from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from kit.addresses import CARRIER_IP, GW1_IP, GW2_IP, SBC_PRIV, SBC_PUB_IP
from kit.calls import sip_counter, uac_outcomes, wait_calls_down
from kit.ctx import Ctx, check
from kit.pcap import Capture
from kit.proc import nsexec
from kit.provisioning import BASE_CARRIERS, LAB_ROUTING, NUMBER, Provisioned
from kit.registry import lab_test
from kit.sip import received_invites, sipp_messages
from kit.sipp import Uas, run_uac
from kit.tls import StreamUa, make_certs

TCP_PORT, TLS_PORT = 5080, 5081
SBC_TCP, SBC_TLS = f"{SBC_PUB_IP}:{TCP_PORT}", f"{SBC_PUB_IP}:{TLS_PORT}"
TLS_DEST = f"sip:{GW1_IP}:5061;transport=tls"
TCP_DEST = f"sip:{GW1_IP}:5060;transport=tcp"
CARRIER_RE = re.compile(r"\b10\.0\.[01]\.\d{1,3}\b")

# The carrier's sipp UAS that hangs up itself (From/To swapped, its own CSeq, through the
# Record-Route), written into the test's directory.
CARRIER_UAS_BYE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="tls_carrier_uas_bye">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp="[^[:space:]].*" search_in="hdr" header="From:" check_it="true" assign_to="uac_from"/>
      <ereg regexp="[^[:space:]].*" search_in="hdr" header="To:" check_it="true" assign_to="uas_to"/>
    </action>
  </recv>
  <send><![CDATA[

      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <send retrans="500"><![CDATA[

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

      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
      a=sendrecv

    ]]></send>
  <recv request="ACK"/>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$uas_to];tag=[pid]SIPpTag01[call_number]
      To: [$uac_from]
      Call-ID: [call_id]
      CSeq: [cseq] BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
</scenario>
"""


# --- helpers ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def sbc_streams(ctx: Ctx, certs: dict):
    """The SBC restarted with the TCP and TLS listeners and [tls]; afterwards the lab config."""
    tls = (f'[tls]\ncert = "{certs["sbc"]}"\nkey = "{certs["sbc_key"]}"\n'
           f'ca = "{certs["ca"]}"\nverify = true\n')
    try:
        ctx.sbc.restart(LAB_ROUTING, health={},
                        sip_extra={"public_tcp": SBC_TCP, "public_tls": SBC_TLS,
                                   "stream_idle_timeout_s": 3600},
                        extra_tables=tls)
        yield
    finally:
        ctx.sbc.restart(LAB_ROUTING, health={}, sip_extra={}, extra_tables="")


def streams(ctx: Ctx) -> dict:
    s = ctx.api.status().get("streams")
    check(isinstance(s, dict), f"GET /api/v1/status has no `streams` object: {json.dumps(ctx.api.status())[:600]}")
    return {k: int(v or 0) for k, v in s.items()}


def delta(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0) - a.get(k, 0) for k in b if k != "open"}


def certs_for(ctx: Ctx, name: str) -> dict:
    return make_certs(ctx.tdir(name) / "certs", SBC_PUB_IP, GW1_IP)


def gw_uas(ctx: Ctx, name: str, tag: str, certs: dict, *, transport: str = "tls", port: int = 5061,
           cert: str = "gw", hangup=(), duration: int = 60) -> StreamUa:
    opts = {"mode": "uas", "ip": GW1_IP, "port": port, "transport": transport, "hangup": list(hangup),
            "duration": duration}
    if transport == "tls":
        opts.update(cert=str(certs[cert]), key=str(certs[cert + "_key"]))
    return StreamUa("gw", ctx.tdir(name), tag, opts)


def msgs(log: list[dict], direction: str) -> list[str]:
    return [r["msg"] for r in log if r.get("dir") == direction]


def first_line(m: str) -> str:
    return m.split("\r\n", 1)[0]


def header(m: str, name: str) -> list[str]:
    head = m.split("\r\n\r\n", 1)[0]
    return [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]
            if ":" in ln and ln.split(":", 1)[0].strip().lower() == name.lower()]


def carrier_uac(ctx: Ctx, name: str, tag: str, scenario: str, calls: int, timeout_s: int = 30):
    return run_uac("carrier", scenario, CARRIER_IP, 5060, SBC_PRIV, ctx.tdir(name), tag,
                   calls=calls, rate=5, limit=1, duration_ms=200, timeout_s=timeout_s)


def clear_sip(pcap: Path) -> list[str]:
    """SIP start lines or headers seen in clear in a capture."""
    try:
        data = pcap.read_bytes()
    except OSError:
        return []
    return sorted({m.decode() for m in re.findall(rb"(?:INVITE sip|SIP/2\.0 \d{3}|Via: SIP/2\.0)", data)})


def check_gateway_leg(got: list[str], transport: str, port: int) -> tuple[int, int]:
    """Every request the gateway got came from the SBC on its stream side: Via, Record-Route and
    Contact name our listener; nothing of the carrier's addresses. Returns (INVITEs, BYEs)."""
    tp = transport.lower()
    invites = [m for m in got if first_line(m).startswith("INVITE ")]
    byes = [m for m in got if first_line(m).startswith("BYE ")]
    for m in got:
        fl = first_line(m)
        leak = CARRIER_RE.findall(m)
        check(not leak, f"the gateway got carrier addresses {leak} in:\n{m[:1500]}")
        if fl.startswith("SIP/2.0"):
            continue
        via = header(m, "Via")
        check(len(via) == 1 and via[0].startswith(f"SIP/2.0/{transport.upper()} {SBC_PUB_IP}:{port};alias;branch=z9hG4bK"),
              f"{fl}: Via {via} (want one `SIP/2.0/{transport.upper()} {SBC_PUB_IP}:{port};alias;branch=z9hG4bK...`)")
    for m in invites:
        rr = header(m, "Record-Route")
        ct = header(m, "Contact")
        check(rr == [f"<sip:{SBC_PUB_IP}:{port};transport={tp};lr>"],
              f"INVITE at the gateway: Record-Route {rr} (want <sip:{SBC_PUB_IP}:{port};transport={tp};lr>)")
        check(len(ct) == 1 and f"@{SBC_PUB_IP}:{port};transport={tp}" in ct[0],
              f"INVITE at the gateway: Contact {ct} (want sip:sbc@{SBC_PUB_IP}:{port};transport={tp})")
    return len(invites), len(byes)


def carrier_saw_udp(r) -> None:
    """What the carrier's sipp received is plain SIP over UDP from the SBC's private side: no
    stream transport or public listener in Via/Contact/Record-Route."""
    for m in sipp_messages(r.files.get("messages")):
        if m.direction != "received":
            continue
        bad = [h for h in ("Via", "Contact", "Record-Route") for v in m.headers(h)
               if re.search(r"transport=t(?:ls|cp)|SIP/2\.0/T(?:LS|CP)|:508[01]\b", v, re.I)]
        check(not bad, f"the carrier got stream-side headers {bad} in {m.first_line}:\n{m.text[:1200]}")


# --- the tests -------------------------------------------------------------------------------------

@lab_test(restarts_sbc=True)
def tls_gateway_inbound_call(ctx: Ctx):
    """Group 1 = sip:203.0.113.10:5061;transport=tls, the gateway a Python TLS UAS (lab CA cert,
    IP SAN .10). 2 carrier calls hung up by the carrier (uac_simple), 1 hung up by the gateway
    (auth_uac_callee_bye): all succeed at the carrier; the gateway got 3 INVITEs and 2 BYEs over
    TLS with Via `SIP/2.0/TLS 203.0.113.50:5081;alias;branch=`, Record-Route
    <sip:203.0.113.50:5081;transport=tls;lr>, Contact sip:sbc@203.0.113.50:5081;transport=tls,
    no 10.0.x address; its own BYE was answered 200; the carrier saw UDP only; pub0 carried no
    clear SIP on TCP 5061; streams.connected >= 1, messages_in/out grew, failed 0."""
    name = "tls_gateway_inbound_call"
    d = ctx.tdir(name)
    certs = certs_for(ctx, name)
    with contextlib.ExitStack() as stack:
        stack.enter_context(sbc_streams(ctx, certs))
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [
            {"destination": TLS_DEST, "group": 1, "priority": 1, "weight": 1, "description": "tls gw"}]))
        s0, io0 = streams(ctx), ctx.api.status().get("io", {})
        cap = Capture("sbc", "pub0", d / "pub0_5061.pcap", filter="tcp port 5061")
        uas = stack.enter_context(gw_uas(ctx, name, "gw_uas", certs, hangup=[2]))
        try:
            r1 = carrier_uac(ctx, name, "carrier_bye", "uac_simple", 2)
            r2 = carrier_uac(ctx, name, "gateway_bye", "auth_uac_callee_bye", 1)
            time.sleep(0.5)
        finally:
            uas.stop()
            cap.stop()
        s1, io1 = streams(ctx), ctx.api.status().get("io", {})
        log = uas.log()
        got, sent = msgs(log, "in"), msgs(log, "out")
        if ctx.sbc.backend == "dpdk":
            # TCP went through the kernel's exception interface, both ways.
            exc = {k: int(io1.get(k, 0)) - int(io0.get(k, 0)) for k in ("exception_in", "exception_out")}
            check(exc["exception_in"] >= 10 and exc["exception_out"] >= 10,
                  f"io exception_in/out moved by {exc} (want >= 10 each: the TLS connection's frames)")
        check(r1.ok(2), f"carrier calls (carrier hangs up): {r1.summary()}\n{r1.diagnostics()}\n"
                        f"--- gateway log: {uas.log_path}")
        check(r2.ok(1), f"carrier call (gateway hangs up): {r2.summary()}\n{r2.diagnostics()}\n"
                        f"--- gateway log: {uas.log_path}")
        hs = [r for r in log if r.get("event") == "handshake_ok"]
        check(hs, f"no TLS handshake at the gateway: {[r for r in log if 'event' in r][:5]}")
        n_inv, n_bye = check_gateway_leg(got, "TLS", TLS_PORT)
        check(n_inv == 3 and n_bye == 2, f"the gateway got {n_inv} INVITEs and {n_bye} BYEs (want 3 and 2): "
                                         f"{[first_line(m) for m in got]}")
        retrans = len(got) - len({(tuple(header(m, 'Call-ID')), tuple(header(m, 'CSeq')), first_line(m)[:3])
                                  for m in got})
        check(retrans == 0, f"the SBC retransmitted {retrans} message(s) over TLS: {[first_line(m) for m in got]}")
        our_bye = [m for m in sent if first_line(m).startswith("BYE ")]
        bye_ok = [m for m in got if first_line(m).startswith("SIP/2.0 200") and "BYE" in (header(m, "CSeq") or [""])[0]]
        check(len(our_bye) == 1 and len(bye_ok) == 1,
              f"the gateway's BYE: sent {len(our_bye)}, 200 OK back {len(bye_ok)}")
        carrier_saw_udp(r1)
        carrier_saw_udp(r2)
        cleartext = clear_sip(cap.path)
        check(not cleartext, f"clear SIP on TCP 5061 at pub0: {cleartext[:5]}")
        dl = delta(s0, s1)
        check(dl["connected"] >= 1 and dl["failed"] == 0 and dl["messages_out"] >= 3 + 2 + 3
              and dl["messages_in"] >= 3 * 3 + 1,
              f"streams counters moved by {dl} (want connected >= 1, failed 0, messages_out >= 8, "
              f"messages_in >= 10)")
        wait_calls_down(ctx)
    print(f"  (3/3 calls over TLS ({hs[0].get('version')}), {len(hs)} connection(s); gateway got "
          f"{len(got)} messages, sent {len(sent)}; streams {dl})", flush=True)


@lab_test(restarts_sbc=True)
def tls_gateway_outbound_call(ctx: Ctx):
    """A Python TLS UAC in ns gw connects from 203.0.113.10 to 203.0.113.50:5081, verifying the
    SBC's certificate against the lab CA for the IP 203.0.113.50. Run 1: a "\\r\\n\\r\\n" ping is
    answered "\\r\\n" (streams.pongs +1); INVITE -> the carrier's sipp UAS (uas_call, UDP) -> 200;
    ACK; the gateway's BYE -> 200. Run 2: the carrier answers and hangs up; its BYE reaches the
    gateway over the same TLS connection, whose 200 goes back. The carrier got both INVITEs over
    UDP; streams.accepted >= 2, pongs >= 1, failed 0."""
    name = "tls_gateway_outbound_call"
    d = ctx.tdir(name)
    certs = certs_for(ctx, name)
    scen = d / "carrier_uas_bye.xml"
    scen.write_text(CARRIER_UAS_BYE)
    uac_opts = {"mode": "uac", "ip": GW1_IP, "to": SBC_TLS, "transport": "tls", "ca": str(certs["ca"]),
                "number": NUMBER, "linger": 0.5}
    with contextlib.ExitStack() as stack:
        stack.enter_context(sbc_streams(ctx, certs))
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [
            {"destination": TLS_DEST, "group": 1, "priority": 1, "weight": 1, "description": "tls gw"}]))
        s0 = streams(ctx)
        with Uas("carrier", "uas_call", CARRIER_IP, 5060, d, "carrier_uas") as cu:
            ua = stack.enter_context(StreamUa("gw", d, "gw_uac1", dict(uac_opts, calls=["caller_bye"], ping=True)))
            ua.wait(30)
            cr1 = cu.stop()
        res1, log1 = ua.result(), ua.log()
        with Uas("carrier", str(scen), CARRIER_IP, 5060, d, "carrier_uas_bye") as cu2:
            ua2 = stack.enter_context(StreamUa("gw", d, "gw_uac2", dict(uac_opts, calls=["callee_bye"])))
            ua2.wait(30)
            cr2 = cu2.stop()
        res2, log2 = ua2.result(), ua2.log()
        s1 = streams(ctx)
        check("error" not in res1 and "error" not in res2,
              f"gateway UAC failed: run 1 {res1.get('error')}, run 2 {res2.get('error')} "
              f"(logs {ua.log_path}, {ua2.log_path})")
        pong = res1.get("pong") or {}
        check(pong.get("got") == "\r\n", f"keep-alive ping over TLS: got {pong.get('got')!r} (want '\\r\\n')")
        c1 = (res1.get("calls") or [{}])[0]
        check(c1.get("invite") == 200 and c1.get("bye") == 200,
              f"run 1 (gateway hangs up): INVITE -> {c1.get('invite')}, BYE -> {c1.get('bye')} (want 200, 200); "
              f"carrier UAS {cr1.summary()}\n--- gateway log {ua.log_path}")
        c2 = (res2.get("calls") or [{}])[0]
        check(c2.get("invite") == 200 and c2.get("callee_bye"),
              f"run 2 (carrier hangs up): INVITE -> {c2.get('invite')}, carrier's BYE at the gateway: "
              f"{c2.get('callee_bye')}; carrier UAS {cr2.summary()}\n{cr2.diagnostics()}\n--- gateway log {ua2.log_path}")
        check(cr2.successful == 1 and cr2.failed == 0,
              f"the carrier's BYE was not answered: {cr2.summary()}\n{cr2.diagnostics()}")
        for cr in (cr1, cr2):
            inv = [m for m in sipp_messages(cr.files.get("messages"))
                   if m.direction == "received" and m.is_request("INVITE")]
            check(len(inv) == 1, f"{cr.name}: the carrier got {len(inv)} INVITEs (want 1)")
            vias = inv[0].headers("Via")
            check(vias and vias[0].startswith("SIP/2.0/UDP 10.0.0.100:5060")
                  and not any("203.0.113." in v for v in vias),
                  f"{cr.name}: the carrier's INVITE has Via {vias} (want the SBC's UDP Via only)")
        # one connection per run: the carrier's BYE came over the connection the UAC opened
        accepted = [r for r in log2 if r.get("event") == "handshake_ok"]
        byes = [m for m in msgs(log2, "in") if first_line(m).startswith("BYE ")]
        check(len(accepted) == 1 and len(byes) == 1, f"run 2: {len(accepted)} handshakes, {len(byes)} BYEs")
        n_bye_via = header(byes[0], "Via")
        check(n_bye_via and n_bye_via[0].startswith(f"SIP/2.0/TLS {SBC_PUB_IP}:{TLS_PORT};alias;branch="),
              f"the carrier's BYE at the gateway: Via {n_bye_via}")
        check(not CARRIER_RE.findall(byes[0]), f"the carrier's BYE at the gateway names carrier addresses:\n{byes[0]}")
        dl = delta(s0, s1)
        check(dl["accepted"] >= 2 and dl["pongs"] >= 1 and dl["failed"] == 0 and dl["framing_errors"] == 0,
              f"streams counters moved by {dl} (want accepted >= 2, pongs >= 1, failed 0, framing_errors 0)")
        wait_calls_down(ctx)
    print(f"  (pong in {pong.get('ms', 0):.1f} ms; 2/2 calls gateway -> carrier over TLS "
          f"({accepted[0].get('version')}), BYE each way; streams {dl})", flush=True)


FRAMING_CLIENT = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5, source_address=(sys.argv[3], 0))
out = {}
s.sendall(b"\r\n\r\n")
out["pong"] = s.recv(100).decode()
s.sendall(b"OPTIONS sip:" + sys.argv[1].encode() + b" SIP/2.0\r\nVia: SIP/2.0/TCP " + sys.argv[3].encode()
          + b":1;branch=z9hG4bKnocl\r\nFrom: <sip:x@" + sys.argv[3].encode() + b">;tag=1\r\nTo: <sip:y@"
          + sys.argv[1].encode() + b">\r\nCall-ID: nocl@lab\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n")
t0 = time.monotonic()
got = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            out["closed"] = "eof"
            break
        got += d
except socket.timeout:
    out["closed"] = None
except OSError as e:
    out["closed"] = type(e).__name__
out["after_s"] = round(time.monotonic() - t0, 3)
out["got"] = got.decode("utf-8", "replace")
print(json.dumps(out))
"""


@lab_test(restarts_sbc=True)
def tcp_gateway_and_framing(ctx: Ctx):
    """Group 1 = sip:203.0.113.10:5060;transport=tcp, the gateway a Python TCP UAS: 2 carrier calls
    succeed; the gateway's INVITEs have Via `SIP/2.0/TCP 203.0.113.50:5080;alias;branch=`,
    Record-Route <sip:203.0.113.50:5080;transport=tcp;lr>, Contact on 5080 with transport=tcp, no
    10.0.x address; streams.connected >= 1. Then a raw TCP client on 203.0.113.50:5080: a ping gets
    "\\r\\n"; an OPTIONS without Content-Length makes the SBC close the connection (within 5 s,
    nothing answered) and streams.framing_errors +1."""
    name = "tcp_gateway_and_framing"
    certs = certs_for(ctx, name)
    with contextlib.ExitStack() as stack:
        stack.enter_context(sbc_streams(ctx, certs))
        stack.enter_context(Provisioned(ctx, BASE_CARRIERS, [
            {"destination": TCP_DEST, "group": 1, "priority": 1, "weight": 1, "description": "tcp gw"}]))
        s0 = streams(ctx)
        uas = stack.enter_context(gw_uas(ctx, name, "gw_uas_tcp", certs, transport="tcp", port=5060))
        try:
            r = carrier_uac(ctx, name, "carrier", "uac_simple", 2)
            time.sleep(0.3)
        finally:
            uas.stop()
        s1 = streams(ctx)
        got = msgs(uas.log(), "in")
        check(r.ok(2), f"carrier calls over a TCP gateway: {r.summary()}\n{r.diagnostics()}\n"
                       f"--- gateway log: {uas.log_path}")
        n_inv, n_bye = check_gateway_leg(got, "TCP", TCP_PORT)
        check(n_inv == 2 and n_bye == 2, f"the TCP gateway got {n_inv} INVITEs, {n_bye} BYEs (want 2, 2)")
        carrier_saw_udp(r)
        dl1 = delta(s0, s1)
        check(dl1["connected"] >= 1 and dl1["failed"] == 0, f"streams counters moved by {dl1} "
                                                            f"(want connected >= 1, failed 0)")

        p = subprocess.run(nsexec("gw", [sys.executable, "-I", "-c", FRAMING_CLIENT, SBC_PUB_IP, TCP_PORT, GW1_IP]),
                           capture_output=True, text=True, timeout=20)
        check(p.returncode == 0, f"raw TCP client failed: {p.stderr.strip()[-800:]}")
        out = json.loads(p.stdout.strip().splitlines()[-1])
        time.sleep(0.2)
        s2 = streams(ctx)
        dl2 = delta(s1, s2)
        check(out.get("pong") == "\r\n", f"TCP keep-alive ping: got {out.get('pong')!r} (want '\\r\\n')")
        check(out.get("closed") in ("eof", "ConnectionResetError"),
              f"a request without Content-Length: the connection was {'not closed' if not out.get('closed') else out['closed']} "
              f"within 5 s ({out})")
        check(not out.get("got"), f"the SBC answered a request without Content-Length: {out.get('got')[:300]!r}")
        check(dl2["framing_errors"] == 1 and dl2["accepted"] == 1 and dl2["pongs"] == 1,
              f"streams counters moved by {dl2} after the bad request (want framing_errors +1, "
              f"accepted +1, pongs +1)")
        wait_calls_down(ctx)
    print(f"  (2/2 calls over TCP; no-Content-Length stream closed ({out['closed']}) after "
          f"{out['after_s'] * 1000:.0f} ms; streams {delta(s0, s2)})", flush=True)


@lab_test(restarts_sbc=True)
def tls_gateway_bad_certificate(ctx: Ctx):
    """Group 1 = sip:203.0.113.10:5061;transport=tls (priority 10) and a sipp UAS on
    203.0.113.11:5060 over UDP (priority 1). The TLS gateway presents a certificate of a rogue CA
    (IP SAN right; the fallback answers 503): 2 calls end 408 or 503 at the carrier, after the
    failover (the fallback got each INVITE). Then a lab-CA certificate for 192.0.2.99 (a name
    mismatch; the fallback answers 200): 2 calls succeed at the fallback. Each time
    streams.failed grows by >= 1 per call, connected and messages_out by 0, sip.failovers by 1 per
    call; the TLS gateway never reads a SIP message (its handshakes fail). Last, the TLS gateway
    alone (rogue certificate): 1 call ends 408 or 503 within Timer B (32 s) + 8 s. The capture of
    TCP 5061 on pub0 holds no clear SIP."""
    name = "tls_gateway_bad_certificate"
    d = ctx.tdir(name)
    certs = certs_for(ctx, name)
    tls_gw = {"destination": TLS_DEST, "group": 1, "priority": 10, "weight": 1, "description": "tls gw"}
    fallback = {"destination": f"sip:{GW2_IP}:5060", "group": 1, "priority": 1, "weight": 1,
                "description": "udp fallback"}
    seen = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(sbc_streams(ctx, certs))
        cap = Capture("sbc", "pub0", d / "pub0_5061.pcap", filter="tcp port 5061")
        try:
            with Provisioned(ctx, BASE_CARRIERS, [tls_gw, fallback]):
                for cert, why, fb_scen, want in (("rogue_gw", "rogue CA", "uas_503", {"408", "503"}),
                                                 ("other_gw", "name mismatch", "uas_simple", {"200"})):
                    s0, f0 = streams(ctx), sip_counter(ctx, "failovers")
                    with gw_uas(ctx, name, f"gw_uas_{cert}", certs, cert=cert) as uas, \
                            Uas("gw", fb_scen, GW2_IP, 5060, d, f"fallback_{cert}") as fb:
                        r = carrier_uac(ctx, name, f"carrier_{cert}", "uac_simple" if want == {"200"} else "uac_503", 2)
                        time.sleep(0.3)
                        fr = fb.stop()
                        uas.stop()
                    s1, f1 = streams(ctx), sip_counter(ctx, "failovers")
                    o = uac_outcomes(r)
                    dl = delta(s0, s1)
                    log = uas.log()
                    at_fb = len(received_invites(fr.files.get("messages")))
                    check(sum(o["codes"].values()) == 2 and set(o["codes"]) <= want,
                          f"{why}: the carrier's 2 calls ended {o['codes']} (want {sorted(want)} each)\n"
                          f"{r.diagnostics()}")
                    check(at_fb == 2, f"{why}: the fallback gateway got {at_fb} INVITEs (want 2, after failover)")
                    check(f1 - f0 == 2, f"{why}: sip.failovers +{f1 - f0} (want +2)")
                    check(not msgs(log, "in"), f"{why}: the gateway read SIP: {[first_line(m) for m in msgs(log, 'in')]}")
                    check(not [x for x in log if x.get("event") == "handshake_ok"],
                          f"{why}: a TLS handshake with the gateway succeeded")
                    check(dl["failed"] >= 2 and dl["connected"] == 0 and dl["messages_out"] == 0,
                          f"{why}: streams counters moved by {dl} (want failed >= 2, connected 0, messages_out 0)")
                    setup = sorted(o["setup"].values())
                    seen[why] = f"carrier got {o['codes']} after {setup[0]:.1f}-{setup[-1]:.1f} s, streams.failed +{dl['failed']}"

            with Provisioned(ctx, BASE_CARRIERS, [tls_gw]):
                s0 = streams(ctx)
                with gw_uas(ctx, name, "gw_uas_alone", certs, cert="rogue_gw") as uas:
                    r = carrier_uac(ctx, name, "carrier_alone", "uac_503", 1, timeout_s=40)
                    uas.stop()
                o = uac_outcomes(r)
                dl = delta(s0, streams(ctx))
                check(sum(o["codes"].values()) == 1 and set(o["codes"]) <= {"408", "503"},
                      f"TLS gateway alone with a rogue certificate: the carrier's call ended {o['codes'] or 'without a final response'} "
                      f"in {r.elapsed:.1f} s (want 408 or 503)\n{r.diagnostics()}")
                check(dl["failed"] >= 1 and dl["messages_out"] == 0 and not msgs(uas.log(), "in"),
                      f"TLS gateway alone: streams counters moved by {dl}, gateway read {len(msgs(uas.log(), 'in'))} messages")
                setup = list(o["setup"].values())
                seen["alone"] = f"carrier got {o['codes']} after {setup[0]:.1f} s"
        finally:
            cap.stop()
        cleartext = clear_sip(cap.path)
        check(not cleartext, f"clear SIP on TCP 5061 at pub0: {cleartext[:5]}")
        wait_calls_down(ctx)
    print("  (" + "; ".join(f"{k}: {v}" for k, v in seen.items()) + ")", flush=True)
