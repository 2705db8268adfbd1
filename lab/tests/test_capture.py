"""Tests of what the SBC shows of the calls it carries while they run: SIP to a Homer collector
as HEP v3 ([hep] collector, node_id, password), a pcap of its SIP on request (GET
/api/v1/capture, `sbcctl capture --seconds N > file.pcap`, the one capture there is on the DPDK
backend) and the calls in progress (GET /api/v1/calls/active, `sbcctl calls --active
[--count]`). Each compares what the SBC reports with what the sipp peers traced on the wire
(-trace_msg): the carrier 10.0.1.10:5060 <-> 10.0.0.100:5060 on the private side, 203.0.113.50:5080
<-> the gateway 203.0.113.10:5060 on the public side. The two legs of a call are paired through
the caller's From tag, which the SBC passes on.

  cap_hep_every_message    restarts the SBC with [hep] collector = 127.0.0.1:9060 (a UDP receiver
                           the test runs in ns sbc), node_id 77, password "pw" ([cluster] node_id
                           "lab-node": every packet's node name, chunk 19); 100 calls
                           (uac_simple -> uas_simple, 25 cps). Every HEP packet decodes (a decoder
                           of the test's own: HEP3, total length, chunks); every SIP message in
                           the sipp traces of both sides has one HEP packet with the same payload
                           and its addresses and ports (counted per side, direction and
                           method/response), and there is no other; each carries proto 1, node 77,
                           auth key "pw", a timestamp within the test's wall-clock window and near
                           sipp's own, in causal order within its call (INVITE in before INVITE
                           out before 200 in before 200 out ...); both legs of each call share one
                           correlation id, the carrier's Call-ID; one type-100 JSON report
                           (type sbc_call_report) per call with that correlation id and call_id,
                           result "answered", sent after the call's BYE. The SBC is restarted
                           without [hep] at the end.
  cap_hep_rtcp             the same [hep] restart; one inbound call (the carrier is kit/uapeer.py
                           `call --rtcp 3`, RTP from 10.0.1.10:6000; the gateway uas_call
                           -rtp_echo) in which the carrier sends 3 RTCP compounds (SR with one
                           report block + SDES CNAME), one a second, from :6001 to the SBC's port
                           of the 200's SDP + 1, and a receiver of the test's on 203.0.113.10:6001
                           answers each SR the SBC relays with an RR (one block, cumulative loss
                           negative) + SDES. Each of the 6 has exactly one HEP packet of type 5
                           (proto 17, node 77, auth "pw", stamped between its sending and the
                           collector's receipt) whose src is the sender's address:port and dst
                           the SBC's address:port it arrived at (10.0.0.100 resp. 203.0.113.50,
                           the relay port of that side's SDP + 1), correlated with the carrier's
                           Call-ID, and whose JSON (Homer's RTCP form) has the sent ssrc, type,
                           report_count, report block fields, sdes_ssrc and, for an SR only,
                           sender_information (NTP seconds and µs, RTP timestamp, packets,
                           octets); there is no other type-5 packet, none that is not JSON, no
                           HEP packet on an RTP port or with an RTP/RTCP packet as payload and no
                           type but 1, 5 and 100; every SIP message of the call the peers traced
                           has its HEP packet, all correlated with the same Call-ID; the relay
                           carried the SRs to the gateway and the RRs to the carrier. The SBC is
                           restarted without [hep] at the end.
  cap_pcap_opens_in_tshark `sbcctl capture --seconds 5 > capture.pcap` inside ns sbc while 10
                           calls are made: a classic µs pcap with Ethernet link type that tshark
                           reads; the SIP messages tshark lists (method or status code, IP
                           addresses, UDP ports) are exactly those of the sipp traces on both
                           sides, and the payloads (read with kit.pcap) are theirs byte for byte
                           (CRLF aside), stamped within the capture's wall-clock window.
  cap_live_calls           5 calls held 8 s with audio both ways (uac_rtp playing g711a.pcap,
                           uas_call -rtp_echo): while they are up GET /api/v1/calls/active shows
                           count 5 and media true, each call answered, inbound, from the carrier to
                           the gateway, with the carrier's Call-ID, one media line whose relay
                           ports are those of the SDP the peers got, RTP packets and bytes both ways
                           above 0, nothing lost, and more of them two seconds later; `sbcctl
                           calls --active --count` prints 5 and `sbcctl calls --active` lists the
                           five Call-IDs; once they ended, count 0 (and sbcctl prints 0).
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from base64 import b64decode
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kit.addresses import API_BASE, CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP, SIPP_MEDIA_PORT
from kit.calls import run_calls, tail_if, wait_calls_down
from kit.ctx import Ctx, check
from kit.media import wait_media_idle
from kit.netns import wait_udp_listen
from kit.paths import LAB, sipp_pcap
from kit.pcap import read_pcap_udp
from kit.proc import nsexec, spawn, stop_process, tail
from kit.registry import lab_test
from kit.sip import sipp_messages
from kit.sipp import SippResult, Uas, run_uac
from kit.uapeer import Msg, sdp_addr
from tests.test_carrier_flows import PeerRun

CARRIER = (CARRIER_IP, 5060)
GATEWAY = (GW1_IP, 5060)
SBC_PRIV_ADDR = (SBC_PRIV_IP, 5060)
SBC_PUB_ADDR = (SBC_PUB_IP, 5080)
HEP_COLLECTOR = ("127.0.0.1", 9060)     # inside ns sbc
HEP_NODE, HEP_PASSWORD, HEP_NODE_NAME_SET = 77, "pw", "lab-node"
HEP_CALLS, HEP_RATE = 100, 25
PCAP_CALLS, PCAP_SECONDS = 10, 5
LIVE_CALLS, LIVE_HOLD_MS = 5, 8000
RTCP_SENT = 3                           # cap_hep_rtcp: the carrier's SRs, one a second
GW_RTCP_PORT = SIPP_MEDIA_PORT + 1      # the gateway's RTCP port (its SDP's m=audio port + 1)

# HEP v3 chunk types (vendor 0) the SBC sends.
HEP_FAMILY, HEP_PROTO, HEP_SRC4, HEP_DST4, HEP_SPORT, HEP_DPORT = 1, 2, 3, 4, 7, 8
HEP_TS_S, HEP_TS_US, HEP_PTYPE, HEP_NODE_ID, HEP_AUTH, HEP_PAYLOAD, HEP_CORR = 9, 10, 11, 12, 14, 15, 17
HEP_NODE_NAME = 19  # the SBC node's [cluster] node_id (heplify-server's NodeName)
# Its payload types (chunk 11): SIP, RTCP as JSON, a JSON log (the call report).
PTYPE_SIP, PTYPE_RTCP, PTYPE_LOG = 1, 5, 100
HEP_REQUIRED = (HEP_FAMILY, HEP_PROTO, HEP_SRC4, HEP_DST4, HEP_SPORT, HEP_DPORT, HEP_TS_S, HEP_TS_US,
                HEP_PTYPE, HEP_NODE_ID, HEP_AUTH, HEP_PAYLOAD, HEP_CORR)

# The collector: a UDP socket inside ns sbc that appends each datagram it gets to a file as
# (receive time f64, length u32, bytes), until SIGTERM (then it drains what is queued).
HEP_SINK = r"""
import signal, socket, struct, sys, time
ip, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((ip, port))
s.settimeout(0.1)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
with open(out, "wb") as f:
    while True:
        try:
            data = s.recv(65535)
        except socket.timeout:
            if stop:
                break
            continue
        f.write(struct.pack("!dI", time.time(), len(data)) + data)
        f.flush()
"""

# cap_hep_rtcp's gateway RTCP (in ns gw, on GW1_IP:GW_RTCP_PORT): each SR that arrives is answered
# at once, to where it came from, with an RR (one block about the SR's sender: LSR its NTP time's
# middle 32 bits, DLSR the time it was held; loss, jitter and highest sequence number made up,
# the cumulative loss negative as duplicates make it) + SDES CNAME. One JSON line per packet
# received ({"rx": ...}) and sent ({"tx": ...}, the fields as uapeer's rtcp_tx has them).
GW_RTCP = r"""
import json, signal, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
from uapeer import rtcp_compound
ip, port = sys.argv[2], int(sys.argv[3])
SSRC, CNAME = 0x6A7E0001, f"gw@{ip}"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, port))
s.settimeout(0.1)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
n = 0
while not stop:
    try:
        data, src = s.recvfrom(65535)
    except socket.timeout:
        continue
    t = time.time()
    print(json.dumps({"rx": {"t": t, "src": f"{src[0]}:{src[1]}", "hex": data.hex()}}), flush=True)
    if len(data) < 28 or data[0] >> 6 != 2 or data[1] != 200:
        continue
    n += 1
    sender, ntp_sec, ntp_frac = struct.unpack("!III", data[4:16])
    block = {"source_ssrc": sender, "fraction_lost": 0, "packets_lost": -n,
             "highest_seq_no": 0x10000 + 50 * n, "ia_jitter": 20 * n + 3,
             "lsr": ((ntp_sec & 0xFFFF) << 16) | (ntp_frac >> 16),
             "dlsr": int((time.time() - t) * 65536)}
    pkt = rtcp_compound(SSRC, None, [block], CNAME)
    s.sendto(pkt, src)
    print(json.dumps({"tx": {"t": time.time(), "port": port, "dst": f"{src[0]}:{src[1]}", "type": 201,
                             "ssrc": SSRC, "report_blocks": [block], "sdes_ssrc": SSRC,
                             "cname": CNAME, "hex": pkt.hex()}}), flush=True)
"""


# --- SIP datagrams as the peers traced them and as the SBC reported them ------------------------

_CALL_ID = re.compile(r"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.M | re.I)
_FROM_TAG = re.compile(r"^(?:From|f)[ \t]*:[^\n]*?;[ \t]*tag=([^;>\s]+)", re.M | re.I)
_CSEQ = re.compile(r"^CSeq[ \t]*:[ \t]*\d+[ \t]+(\S+)", re.M | re.I)


def norm(payload: bytes | str) -> str:
    """A SIP message as sip.sipp_messages() gives a traced one: CRLF as LF, one final newline."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", "replace")
    return payload.replace("\r\n", "\n").strip("\n") + "\n"


@dataclass
class Wire:
    """One SIP datagram between a peer and the SBC: addresses, text (norm()), when."""
    src: tuple
    dst: tuple
    text: str
    ts: float
    info: dict = field(default_factory=dict)   # HEP fields, where it came from HEP

    @property
    def key(self) -> tuple:
        return self.src, self.dst, self.text

    @property
    def what(self) -> str:
        """INVITE, ACK, ... for a request; 100/INVITE, 200/BYE, ... for a response."""
        first = self.text.split("\n", 1)[0]
        if first.startswith("SIP/2.0 "):
            m = _CSEQ.search(self.text)
            return f"{first.split()[1]}/{m.group(1).upper() if m else '?'}"
        return first.split(" ", 1)[0]

    @property
    def label(self) -> str:
        """Side, direction (seen from the SBC) and what: `priv in INVITE`, `pub out 200/BYE`."""
        if SBC_PRIV_IP in (self.src[0], self.dst[0]):
            side = "priv"
        elif SBC_PUB_IP in (self.src[0], self.dst[0]):
            side = "pub"
        else:
            side = f"{self.src[0]}->{self.dst[0]}"
        sbc = self.dst in (SBC_PRIV_ADDR, SBC_PUB_ADDR)
        return f"{side} {'in' if sbc else 'out'} {self.what}"

    @property
    def call_id(self) -> str | None:
        m = _CALL_ID.search(self.text)
        return m.group(1) if m else None

    @property
    def from_tag(self) -> str | None:
        m = _FROM_TAG.search(self.text)
        return m.group(1) if m else None


def traced(r: SippResult, peer: tuple, sbc: tuple) -> list[Wire]:
    """Every message of a sipp peer's -trace_msg file as a datagram between it and the SBC."""
    out = []
    for m in sipp_messages(r.files.get("messages")):
        src, dst = (peer, sbc) if m.direction == "sent" else (sbc, peer)
        out.append(Wire(src, dst, norm(m.text), m.ts))
    return out


def both_sides(uac: SippResult, uas: SippResult) -> list[Wire]:
    return traced(uac, CARRIER, SBC_PRIV_ADDR) + traced(uas, GATEWAY, SBC_PUB_ADDR)


def match(want: list[Wire], got: list[Wire]) -> tuple[list, list[Wire], list[Wire]]:
    """Pair each traced datagram with a reported one of the same addresses and text (in time
    order when the same text went twice, as retransmissions do). Returns (pairs, missing: traced
    but not reported, extra: reported but not traced)."""
    pool: dict[tuple, list[Wire]] = {}
    for g in sorted(got, key=lambda w: w.ts):
        pool.setdefault(g.key, []).append(g)
    pairs, missing = [], []
    for w in sorted(want, key=lambda w: w.ts):
        lst = pool.get(w.key)
        if lst:
            pairs.append((w, lst.pop(0)))
        else:
            missing.append(w)
    extra = [g for lst in pool.values() for g in lst]
    return pairs, missing, extra


def counts(ws: list[Wire]) -> str:
    c = Counter(w.label for w in ws)
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items())) or "none"


def example(ws: list[Wire], lines: int = 12) -> str:
    if not ws:
        return ""
    w = ws[0]
    head = "\n".join("      " + x for x in w.text.split("\n")[:lines])
    return f"\n    e.g. {w.src[0]}:{w.src[1]} -> {w.dst[0]}:{w.dst[1]} at {w.ts:.6f}:\n{head}"


def mismatch_report(missing: list[Wire], extra: list[Wire], want: list[Wire], reporter: str) -> str:
    return (f"sipp traced {len(want)} SIP messages ({counts(want)});\n"
            f"  {len(missing)} of them not in {reporter} with the same addresses and payload: "
            f"{counts(missing)}{example(missing)}\n"
            f"  {len(extra)} in {reporter} that no sipp traced: {counts(extra)}{example(extra)}")


def calls_by_tag(want: list[Wire]) -> dict[str, dict]:
    """{caller's From tag: {"carrier": carrier Call-ID, "gw": gateway-leg Call-ID}} from the
    initial INVITEs of the traces."""
    calls: dict[str, dict] = {}
    for w in want:
        if w.what == "INVITE" and w.from_tag:
            leg = "carrier" if w.label.startswith("priv") else "gw"
            calls.setdefault(w.from_tag, {}).setdefault(leg, w.call_id)
    return calls


# --- HEP ------------------------------------------------------------------------------------------

def decode_hep(data: bytes) -> dict:
    """A HEP v3 packet's chunks, {type: bytes}; ValueError when it is not one."""
    if data[:4] != b"HEP3" or len(data) < 6:
        raise ValueError(f"starts with {data[:6]!r}, not HEP3 and a length")
    total, = struct.unpack("!H", data[4:6])
    if total != len(data):
        raise ValueError(f"total length field {total}, datagram {len(data)} bytes")
    chunks, off = {}, 6
    while off < total:
        if off + 6 > total:
            raise ValueError(f"a chunk header cut at byte {off} of {total}")
        vendor, kind, length = struct.unpack("!HHH", data[off:off + 6])
        if vendor != 0 or length < 6 or off + length > total:
            raise ValueError(f"chunk at byte {off}: vendor {vendor}, type {kind}, length {length} "
                             f"(packet {total} bytes)")
        if kind in chunks:
            raise ValueError(f"chunk type {kind} twice")
        chunks[kind] = data[off + 6:off + length]
        off += length
    return chunks


def hep_wire(chunks: dict) -> Wire:
    """The datagram a decoded HEP packet reports, its header fields in info; ValueError when a
    chunk is missing or has the wrong size."""
    lacking = [k for k in HEP_REQUIRED if k not in chunks]
    if lacking:
        raise ValueError(f"no chunk(s) {lacking} (has {sorted(chunks)})")
    sizes = {HEP_FAMILY: 1, HEP_PROTO: 1, HEP_SRC4: 4, HEP_DST4: 4, HEP_SPORT: 2, HEP_DPORT: 2,
             HEP_TS_S: 4, HEP_TS_US: 4, HEP_PTYPE: 1, HEP_NODE_ID: 4}
    bad = {k: len(chunks[k]) for k, n in sizes.items() if len(chunks[k]) != n}
    if bad:
        raise ValueError(f"chunk sizes {bad} (want {({k: sizes[k] for k in bad})})")
    ip = lambda b: ".".join(str(x) for x in b)  # noqa: E731
    u = lambda b: int.from_bytes(b, "big")  # noqa: E731
    us = u(chunks[HEP_TS_US])
    info = {"family": chunks[HEP_FAMILY][0], "proto": chunks[HEP_PROTO][0],
            "ptype": chunks[HEP_PTYPE][0], "node": u(chunks[HEP_NODE_ID]),
            "auth": chunks[HEP_AUTH].decode("utf-8", "replace"),
            "corr": chunks[HEP_CORR].decode("utf-8", "replace"), "us": us,
            "name": chunks.get(HEP_NODE_NAME, b"").decode("utf-8", "replace"),
            "payload": chunks[HEP_PAYLOAD]}
    return Wire((ip(chunks[HEP_SRC4]), u(chunks[HEP_SPORT])), (ip(chunks[HEP_DST4]), u(chunks[HEP_DPORT])),
                norm(chunks[HEP_PAYLOAD]), u(chunks[HEP_TS_S]) + us / 1e6, info)


class HepSink:
    """HEP_SINK running inside ns sbc on HEP_COLLECTOR, writing to `path`."""

    def __init__(self, d: Path):
        self.path = d / "hep.bin"
        script = d / "hep_sink.py"
        script.write_text(HEP_SINK)
        self._log = open(d / "hep_sink.log", "wb")
        self.proc = spawn(nsexec("sbc", [sys.executable, script, HEP_COLLECTOR[0], HEP_COLLECTOR[1],
                                         self.path]), stdout=self._log, stderr=subprocess.STDOUT)
        if not wait_udp_listen("sbc", *HEP_COLLECTOR, timeout=5.0):
            self.stop()
            raise RuntimeError(f"the HEP receiver did not bind {HEP_COLLECTOR} in ns sbc:\n"
                               + tail(d / "hep_sink.log", 10))

    def stop(self) -> list[tuple[float, bytes]]:
        """Stop it (it drains its socket first); the datagrams received, (receive time, bytes)."""
        stop_process(self.proc, signal.SIGTERM, grace=5.0)
        if not self._log.closed:
            self._log.close()
        out, data = [], self.path.read_bytes() if self.path.exists() else b""
        off = 0
        while off + 12 <= len(data):
            t, n = struct.unpack("!dI", data[off:off + 12])
            out.append((t, data[off + 12:off + 12 + n]))
            off += 12 + n
        return out


@contextmanager
def hep_collecting(ctx: Ctx, d: Path):
    """A HepSink in ns sbc and the SBC restarted with [hep] collector = it, node_id HEP_NODE,
    password HEP_PASSWORD (the config copied to d/sbc.toml); yields the sink, whose stop() gives
    what it got. Afterwards the sink is stopped (if the test did not) and the SBC restarted with
    its config as it was."""
    orig = ctx.sbc.config.read_text()
    sink = None
    try:
        sink = HepSink(d)   # before the SBC starts sending: no ICMP refusal for its socket
        ctx.sbc.config.write_text(orig + f'[hep]\ncollector = "{HEP_COLLECTOR[0]}:{HEP_COLLECTOR[1]}"\n'
                                         f'node_id = {HEP_NODE}\npassword = "{HEP_PASSWORD}"\n'
                                         f'[cluster]\nnode_id = "{HEP_NODE_NAME_SET}"\n')
        shutil.copy(ctx.sbc.config, d / "sbc.toml")
        ctx.sbc.restart()
        yield sink
    finally:
        if sink is not None and sink.proc.poll() is None:
            sink.stop()
        ctx.sbc.config.write_text(orig)
        ctx.sbc.restart()


def sbcctl_argv(ctx: Ctx, *args: str) -> list[str]:
    p = ctx.sbc.binary.with_name("sbcctl")
    check(p.exists(), f"no sbcctl next to the sbc under test ({p}): cargo builds both into the same "
                      f"directory")
    return nsexec("sbc", [p, "--api", API_BASE] + list(args))


def sbcctl(ctx: Ctx, *args: str) -> str:
    r = subprocess.run(sbcctl_argv(ctx, *args), capture_output=True, text=True, timeout=20)
    check(r.returncode == 0, f"sbcctl {' '.join(args)} -> exit {r.returncode}: {r.stderr.strip()}\n"
                             f"{r.stdout}")
    return r.stdout


def calls_ok(r: SippResult, ur: SippResult, calls: int) -> None:
    check(r.ok(calls), f"the calls failed: {r.diagnostics()}\n--- gateway: {ur.summary()}\n"
                       f"{tail_if(ur.files.get('errors'))}")


# --- the tests ------------------------------------------------------------------------------------

@lab_test(restarts_sbc=True)
def cap_hep_every_message(ctx: Ctx):
    """[hep] collector 127.0.0.1:9060 (a receiver of the test's in ns sbc), node_id 77, password
    "pw"; 100 calls carrier -> SBC -> gateway at 25 cps. Every SIP message of the sipp traces on
    both sides has exactly one HEP packet with its payload, addresses and ports, and there is no
    other; proto 1, node 77, auth key "pw", timestamps in the test's window, near sipp's stamps
    and in causal order per call; both legs correlated by the carrier's Call-ID; one type-100
    sbc_call_report per call (result answered) after its BYE. The SBC restarts without [hep]."""
    name = "cap_hep_every_message"
    d = ctx.tdir(name)
    with hep_collecting(ctx, d) as sink:
        t0 = time.time()
        r, res = run_calls(ctx, name, uas={GW1_IP: "uas_simple"}, calls=HEP_CALLS, rate=HEP_RATE,
                           duration_ms=200, timeout_s=40)
        ur = res[GW1_IP]
        time.sleep(1.0)     # the last reports (HEP leaves the control plane a few ms late)
        t1 = time.time()
        got_raw = sink.stop()
    calls_ok(r, ur, HEP_CALLS)
    check_hep(d, r, ur, got_raw, t0, t1)


def decode_all(got_raw: list) -> tuple[list[Wire], list[str]]:
    """The collector's datagrams (HepSink.stop(): (receive time, bytes)) decoded, each with its
    receive time in info["rx"], and what could not be decoded, described."""
    heps, bad = [], []
    for rx, data in got_raw:
        try:
            w = hep_wire(decode_hep(data))
        except ValueError as e:
            bad.append(f"{e}: {data[:48]!r}")
            continue
        w.info["rx"] = rx
        heps.append(w)
    return heps, bad


def check_hep(d: Path, r: SippResult, ur: SippResult, got_raw: list, t0: float, t1: float) -> None:
    """cap_hep_every_message's checks of what the collector got (HepSink.stop()) during the
    calls of [t0, t1] against the caller's (r) and the gateway's (ur) traces."""
    # Decode every packet; the SIP ones of the calls' window are compared with the traces.
    heps, bad = decode_all(got_raw)
    sip, logs, before = [], [], []
    for w in heps:
        if w.info["ptype"] == 100:
            logs.append(w)
        elif w.ts < t0 and w.info["ptype"] == 1:
            before.append(w)    # the DPDK backend's start-up OPTIONS (Sbc.sip_ready)
        else:
            sip.append(w)
    (d / "hep.json").write_text(json.dumps(
        [{"src": w.src, "dst": w.dst, "ts": w.ts, "rx": w.info["rx"], "ptype": w.info["ptype"],
          "node": w.info["node"], "auth": w.info["auth"], "corr": w.info["corr"],
          "first_line": w.text.split("\n", 1)[0]} for w in sip + logs + before], indent=0))
    check(not bad, f"{len(bad)} of {len(got_raw)} datagrams at the collector are no valid HEP v3 "
                   f"packet: " + "; ".join(bad[:5]))
    check(got_raw, f"the collector {HEP_COLLECTOR} got nothing ({HEP_CALLS} calls made; "
                   f"config {d / 'sbc.toml'})")

    want = both_sides(r, ur)
    pairs, missing, extra = match(want, sip)
    check(not missing and not extra, mismatch_report(missing, extra, want, "the HEP packets"))

    # Header fields of every packet.
    for w in sip + logs:
        i = w.info
        want_type = 100 if i["ptype"] == 100 else 1
        fields = (i["family"], i["proto"], i["ptype"], i["node"], i["auth"], i["name"])
        expected = (2, 17, want_type, HEP_NODE, HEP_PASSWORD, HEP_NODE_NAME_SET)
        check(fields == expected and i["us"] < 1_000_000,
              f"HEP packet {w.label} {w.src} -> {w.dst}: family/proto/type/node/auth/node name "
              f"{fields}, microseconds {i['us']}; want {expected}")
        check(t0 <= w.ts <= min(t1, i["rx"] + 0.01),
              f"HEP packet {w.label} stamped {w.ts:.6f}: outside the test's window "
              f"[{t0:.6f}, {t1:.6f}] or after the collector got it ({i['rx']:.6f})")
    far = [(tw, hw) for tw, hw in pairs if abs(hw.ts - tw.ts) > 1.0]
    check(not far, f"{len(far)} HEP timestamps more than 1 s from sipp's stamp of the same message, "
                   f"e.g. {far[0][1].label} HEP {far[0][1].ts:.6f}, sipp {far[0][0].ts:.6f}" if far else "")

    # Correlation: both legs of each call carry the carrier's Call-ID.
    calls = calls_by_tag(want)
    check(len(calls) == HEP_CALLS and all(len(c) == 2 for c in calls.values()),
          f"{len(calls)} calls found by From tag in the traces, "
          f"{sum(1 for c in calls.values() if len(c) == 2)} with both legs (want {HEP_CALLS})")
    leg_of = {}     # Call-ID of either leg -> carrier's Call-ID
    for c in calls.values():
        leg_of[c["carrier"]] = leg_of[c["gw"]] = c["carrier"]
    wrong = [w for w in sip if w.info["corr"] != leg_of.get(w.call_id)]
    check(not wrong, f"{len(wrong)} of {len(sip)} SIP HEP packets carry a correlation id other than "
                     f"the carrier's Call-ID of their call ({counts(wrong)}); e.g. {wrong[0].label} "
                     f"Call-ID {wrong[0].call_id}: correlation {wrong[0].info['corr']!r}, want "
                     f"{leg_of.get(wrong[0].call_id)!r}" if wrong else "")

    # Causal order within each call, on the HEP timestamps (first copy of each message).
    order = [("priv in INVITE", "pub out INVITE"), ("pub out INVITE", "pub in 200/INVITE"),
             ("pub in 200/INVITE", "priv out 200/INVITE"), ("priv out 200/INVITE", "priv in ACK"),
             ("pub in 200/INVITE", "pub out ACK"), ("priv in ACK", "priv in BYE"),
             ("priv in BYE", "pub out BYE"), ("pub out BYE", "pub in 200/BYE"),
             ("priv in BYE", "priv out 200/BYE")]
    by_call: dict[str, dict[str, float]] = {}
    for w in sorted(sip, key=lambda w: w.ts):
        by_call.setdefault(leg_of.get(w.call_id), {}).setdefault(w.label, w.ts)
    disorder = []
    for cid, ts in by_call.items():
        for a, b in order:
            if a not in ts or b not in ts:
                disorder.append(f"{cid}: no {a if a not in ts else b}")
            elif ts[a] > ts[b]:
                disorder.append(f"{cid}: {a} at {ts[a]:.6f} after {b} at {ts[b]:.6f}")
    check(not disorder, f"HEP timestamps out of causal order in {len(disorder)} places: "
                        + "; ".join(disorder[:5]))

    # One call report per call.
    reports: dict[str, list] = {}
    for w in logs:
        try:
            j = json.loads(w.info["payload"])
        except ValueError as e:
            check(False, f"a type-100 HEP payload is not JSON ({e}): {w.info['payload'][:200]!r}")
        reports.setdefault(w.info["corr"], []).append((w, j))
    carrier_ids = {c["carrier"] for c in calls.values()}
    check(set(reports) == carrier_ids and all(len(v) == 1 for v in reports.values()),
          f"{len(logs)} type-100 reports for {len(reports)} correlation ids; want one for each of "
          f"the {len(carrier_ids)} carrier Call-IDs (missing {sorted(carrier_ids - set(reports))[:3]}, "
          f"unknown {sorted(set(reports) - carrier_ids)[:3]}, more than one: "
          f"{[k for k, v in reports.items() if len(v) > 1][:3]})")
    for cid, [(w, j)] in reports.items():
        check(isinstance(j, dict) and j.get("type") == "sbc_call_report" and j.get("call_id") == cid
              and j.get("result") == "answered" and isinstance(j.get("media"), list),
              f"call report correlated {cid}: want type sbc_call_report, call_id {cid}, result "
              f"answered and a media list; got {json.dumps(j)[:400]}")
        bye = by_call.get(cid, {}).get("priv in BYE")
        check(bye is not None and w.ts >= bye,
              f"call report of {cid} stamped {w.ts:.6f}, before the call's BYE ({bye})")


def rtcp_json_diff(got, sent: dict) -> list[str]:
    """How the JSON of a type-5 HEP packet differs from the Homer form of the RTCP compound
    `sent` (a uapeer rtcp_tx entry or GW_RTCP's tx): [] when it reports that packet."""
    if not isinstance(got, dict):
        return [f"not a JSON object: {json.dumps(got)[:200]}"]
    out = []
    want = {"ssrc": sent["ssrc"], "type": sent["type"], "report_count": len(sent["report_blocks"]),
            "sdes_ssrc": sent["sdes_ssrc"]}
    out += [f"{k} {got.get(k)!r} (sent {v!r})" for k, v in want.items() if got.get(k) != v]
    blocks = got.get("report_blocks")
    if not isinstance(blocks, list) or len(blocks) != len(sent["report_blocks"]):
        out.append(f"report_blocks {json.dumps(blocks)[:300]} (sent {len(sent['report_blocks'])})")
    else:
        for i, (g, w) in enumerate(zip(blocks, sent["report_blocks"])):
            g = g if isinstance(g, dict) else {}
            out += [f"report_blocks[{i}].{k} {g.get(k)!r} (sent {v!r})" for k, v in w.items() if g.get(k) != v]
    si = got.get("sender_information")
    if sent["type"] != 200:
        if si is not None:
            out.append(f"sender_information {json.dumps(si)} in the JSON of an RR")
    elif not isinstance(si, dict):
        out.append(f"sender_information {si!r} (an SR's: want its NTP time, RTP timestamp, counts)")
    else:
        s = sent["sender_information"]
        want_si = {"ntp_timestamp_sec": s["ntp_sec"], "rtp_timestamp": s["rtp_timestamp"],
                   "packets": s["packets"], "octets": s["octets"]}
        out += [f"sender_information.{k} {si.get(k)!r} (sent {v!r})" for k, v in want_si.items()
                if si.get(k) != v]
        usec = s["ntp_frac"] * 1_000_000 / 2 ** 32      # the NTP fraction in µs
        u = si.get("ntp_timestamp_usec")
        if not isinstance(u, int) or abs(u - usec) > 1:
            out.append(f"sender_information.ntp_timestamp_usec {u!r} (sent NTP fraction "
                       f"{s['ntp_frac']:#010x} = {usec:.1f} µs)")
    return out


def addr(s: str) -> tuple[str, int]:
    ip, _, port = s.rpartition(":")
    return ip, int(port)


@lab_test(restarts_sbc=True)
def cap_hep_rtcp(ctx: Ctx):
    """[hep] as cap_hep_every_message; one inbound call in which the carrier (uapeer call --rtcp)
    sends 3 SR + SDES compounds from :6001 to the SBC's answer port + 1 and the gateway answers
    each SR the SBC relays with an RR + SDES from :6001: each of the 6 has exactly one type-5 HEP
    packet, src its sender, dst the SBC's address and port it arrived at, correlated with the
    carrier's Call-ID like the call's SIP, its JSON (Homer's RTCP form) the fields sent; no other
    type-5 packet, none not JSON, no RTP (nor raw RTCP) as HEP. The SBC restarts without [hep]."""
    name = "cap_hep_rtcp"
    d = ctx.tdir(name)
    p = SIPP_MEDIA_PORT                 # the carrier's RTP port; RTCP from p + 1
    out = d / "gw_rtcp.jsonl"
    with hep_collecting(ctx, d) as sink:
        wait_media_idle(ctx)
        script = d / "gw_rtcp.py"
        script.write_text(GW_RTCP)
        with open(out, "wb") as f:
            gw = spawn(nsexec("gw", [sys.executable, script, LAB / "kit", GW1_IP, GW_RTCP_PORT]),
                       stdout=f, stderr=subprocess.STDOUT)
        try:
            check(wait_udp_listen("gw", GW1_IP, GW_RTCP_PORT, 5.0),
                  f"the gateway's RTCP receiver did not bind {GW1_IP}:{GW_RTCP_PORT}:\n{tail(out, 10)}")
            t0 = time.time()
            with Uas("gw", "uas_call", GW1_IP, 5060, d, "uas", extra=["-rtp_echo", "-mp", str(p)]) as uas:
                peer = PeerRun(ctx, d, "carrier", "carrier", "call",
                               ["--ip", CARRIER_IP, "--port", str(p), "--to", SBC_PRIV,
                                "--after", str(RTCP_SENT + 1.5), "--rtcp", str(RTCP_SENT)])
                res = peer.result(30)
                ur = uas.stop()
            time.sleep(1.0)     # the last HEP packets (they leave the control plane a few ms late)
            t1 = time.time()
        finally:
            stop_process(gw)
        got_raw = sink.stop()
    check(res.get("error") is None, f"the carrier's flow failed: {res.get('error')} (output {peer.out})")
    check(ur.successful == 1 and ur.failed == 0, f"gateway: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    gw_log = [json.loads(x) for x in out.read_text(errors="replace").splitlines() if x.startswith("{")]

    # The call as the peers saw it: the carrier's Call-ID, the SBC's relay port on each side.
    sip_log = [(e, Msg(b64decode(e["b64"]))) for e in res["sip"]]
    inv = next((m for e, m in sip_log if e["dir"] == "sent" and m.method == "INVITE"), None)
    ok = next((m for e, m in sip_log if e["dir"] == "received" and m.code == 200
               and m.cseq[1] == "INVITE" and m.sdp()), None)
    check(inv is not None and ok is not None, f"the carrier's log has no INVITE or no 200 with SDP "
                                              f"({peer.out})")
    cid = inv.call_id
    media_a = sdp_addr(ok.sdp())
    gw_inv = next((m for m in sipp_messages(ur.files.get("messages"))
                   if m.direction == "received" and m.is_request("INVITE") and m.sdp), None)
    check(gw_inv is not None, f"the gateway got no INVITE with SDP ({ur.files.get('messages')})")
    gw_cid, port_b = gw_inv.call_id, gw_inv.sdp.port
    check(media_a is not None and media_a[0] == SBC_PRIV_IP and isinstance(port_b, int),
          f"the SBC's media address in the 200 the carrier got is {media_a}, in the INVITE the "
          f"gateway got port {port_b}; want {SBC_PRIV_IP} and a port on each side")
    port_a = media_a[1]
    sbc_a, sbc_b = (SBC_PRIV_IP, port_a + 1), (SBC_PUB_IP, port_b + 1)
    carrier_rtcp, gw_rtcp = (CARRIER_IP, p + 1), (GW1_IP, GW_RTCP_PORT)
    where = (f"carrier {CARRIER_IP}:{p}, SBC {SBC_PRIV_IP}:{port_a} / {SBC_PUB_IP}:{port_b}, gateway "
             f"{GW1_IP}:{p}; Call-IDs {cid} (carrier) and {gw_cid} (gateway); output in {d}")

    # What was sent, and that the relay carried it (RTP both ways; SRs to the gateway, RRs back).
    srs, rrs = res["rtcp_tx"], [x["tx"] for x in gw_log if "tx" in x]
    at_gw = [x["rx"] for x in gw_log if "rx" in x]
    check(len(srs) == RTCP_SENT and all(addr(x["dst"]) == sbc_a and x["port"] == p + 1 for x in srs),
          f"the carrier sent {len(srs)} RTCP compounds to {[x['dst'] for x in srs]}; want {RTCP_SENT} "
          f"from :{p + 1} to {sbc_a[0]}:{sbc_a[1]} ({where})")
    check(len(res["rtp_tx"]) >= 100 and len(res["rtp_rx"]) >= 0.9 * len(res["rtp_tx"]),
          f"the carrier sent {len(res['rtp_tx'])} RTP packets, {len(res['rtp_rx'])} came back (want "
          f">= 100 and >= 90 % echoed): no RTP whose absence from HEP means anything ({where})")
    check(len(at_gw) == RTCP_SENT and all(addr(x["src"]) == sbc_b for x in at_gw)
          and [x["hex"] for x in at_gw] == [x["hex"] for x in srs],
          f"the gateway's RTCP port got {len(at_gw)} packets from {[x['src'] for x in at_gw]}; want "
          f"the carrier's {RTCP_SENT} SRs unchanged, from {sbc_b[0]}:{sbc_b[1]} ({where})")
    got_rr = [x for x in res["rtcp_rx"] if addr(x[2]) == sbc_a]
    check(len(rrs) == RTCP_SENT and len(res["rtcp_rx"]) == len(rrs) and len(got_rr) == len(rrs)
          and [x[5] for x in got_rr] == [x["hex"] for x in rrs],
          f"the gateway sent {len(rrs)} RRs; the carrier's RTCP port got {len(res['rtcp_rx'])} packets "
          f"from {sorted({x[2] for x in res['rtcp_rx']})}; want them all, unchanged, from "
          f"{sbc_a[0]}:{sbc_a[1]} ({where})")

    # Every datagram at the collector is HEP v3; no RTP or raw RTCP in any, and on no RTP port.
    heps, bad = decode_all(got_raw)
    (d / "hep.json").write_text(json.dumps(
        [{"src": w.src, "dst": w.dst, "ts": w.ts, "rx": w.info["rx"], "ptype": w.info["ptype"],
          "node": w.info["node"], "auth": w.info["auth"], "corr": w.info["corr"],
          "payload": w.info["payload"].decode("utf-8", "replace")[:2000]} for w in heps], indent=0))
    check(not bad, f"{len(bad)} of {len(got_raw)} datagrams at the collector are no valid HEP v3 "
                   f"packet: " + "; ".join(bad[:5]))
    types = Counter(w.info["ptype"] for w in heps)
    check(set(types) <= {PTYPE_SIP, PTYPE_RTCP, PTYPE_LOG},
          f"HEP packets of types {dict(types)}; want only {PTYPE_SIP} (SIP), {PTYPE_RTCP} (RTCP as "
          f"JSON) and {PTYPE_LOG} (the call report) ({d / 'hep.json'})")
    rtp_ports = {(CARRIER_IP, p), (SBC_PRIV_IP, port_a), (SBC_PUB_IP, port_b), (GW1_IP, p)}
    on_rtp = [w for w in heps if w.src in rtp_ports or w.dst in rtp_ports
              or w.info["payload"][:1] and w.info["payload"][0] >> 6 == 2]
    check(not on_rtp, f"{len(on_rtp)} HEP packets from or to an RTP address or with an RTP/RTCP "
                      f"packet (version 2) as payload, e.g. type {on_rtp[0].info['ptype']} "
                      f"{on_rtp[0].src} -> {on_rtp[0].dst}: {on_rtp[0].info['payload'][:48]!r} "
                      f"({where})" if on_rtp else "")

    # The SIP of the call: each message the peers traced has its HEP packet; one correlation id.
    sip = [w for w in heps if w.info["ptype"] == PTYPE_SIP and w.call_id in (cid, gw_cid)]
    want = [Wire((CARRIER_IP, 5060), addr(e["peer"]), norm(m.raw), e["t"]) if e["dir"] == "sent"
            else Wire(addr(e["peer"]), (CARRIER_IP, 5060), norm(m.raw), e["t"]) for e, m in sip_log]
    want += traced(ur, GATEWAY, SBC_PUB_ADDR)
    _, missing, _ = match(want, sip)
    check(not missing, mismatch_report(missing, [], want, "the HEP packets"))
    wrong = [w for w in sip if w.info["corr"] != cid]
    check(not wrong, f"{len(wrong)} of the call's {len(sip)} SIP HEP packets carry a correlation id "
                     f"other than the carrier's Call-ID {cid!r}: e.g. {wrong[0].label} correlated "
                     f"{wrong[0].info['corr']!r}" if wrong else "")

    # RTCP: each compound sent has exactly one type-5 packet, and there is no other.
    rtcp = []
    for w in (w for w in heps if w.info["ptype"] == PTYPE_RTCP):
        try:
            rtcp.append((w, json.loads(w.info["payload"])))
        except ValueError as e:
            check(False, f"a type-5 HEP packet {w.src} -> {w.dst} carries no JSON ({e}): "
                         f"{w.info['payload'][:200]!r}")
    expected = ([("carrier SR", carrier_rtcp, sbc_a, x) for x in srs]
                + [("gateway RR", gw_rtcp, sbc_b, x) for x in rrs])
    show = lambda w, j: (f"{w.src[0]}:{w.src[1]} -> {w.dst[0]}:{w.dst[1]} corr {w.info['corr']!r} "  # noqa: E731
                         f"ts {w.ts:.6f}: {json.dumps(j)}")
    used = set()
    for what, src, dst, sent in expected:
        hits = [i for i, (w, j) in enumerate(rtcp) if w.src == src and w.dst == dst
                and not rtcp_json_diff(j, sent)]
        if len(hits) != 1:
            near = [f"    {show(w, j)}\n      differs: {'; '.join(rtcp_json_diff(j, sent)) or '-'}"
                    for w, j in rtcp
                    if w.src == src or (isinstance(j, dict) and j.get("ssrc") == sent["ssrc"])]
            check(False, f"{what} sent {sent['t']:.6f} from {src[0]}:{src[1]} to {dst[0]}:{dst[1]} "
                         f"(ssrc {sent['ssrc']}, {sent['hex']}) has {len(hits)} type-5 HEP packets "
                         f"with those addresses and its fields (want 1); of the {len(rtcp)} type-5 "
                         f"packets, those of its sender:\n" + ("\n".join(near) or "    none")
                         + f"\n({where})")
        w, j = rtcp[hits[0]]
        used.add(hits[0])
        i = w.info
        fields = (i["family"], i["proto"], i["node"], i["auth"], i["corr"])
        check(fields == (2, 17, HEP_NODE, HEP_PASSWORD, cid) and i["us"] < 1_000_000,
              f"the type-5 HEP packet of the {what} sent {sent['t']:.6f}: family/proto/node/auth/"
              f"correlation {fields}, µs {i['us']}; want (2, 17, {HEP_NODE}, {HEP_PASSWORD!r}, "
              f"{cid!r}) - the carrier's Call-ID, as the call's SIP HEP packets")
        check(sent["t"] - 0.05 <= w.ts <= min(t1, i["rx"] + 0.01, sent["t"] + 1.0),
              f"the type-5 HEP packet of the {what} sent {sent['t']:.6f} is stamped {w.ts:.6f} "
              f"(the collector got it at {i['rx']:.6f}); want between its sending and its receipt")
    extra = [show(w, j) for k, (w, j) in enumerate(rtcp) if k not in used]
    check(not extra, f"{len(extra)} type-5 HEP packets report no RTCP compound that was sent "
                     f"(sent: {len(srs)} SRs, {len(rrs)} RRs):\n  " + "\n  ".join(extra[:5]) + f"\n({where})")
    print(f"  ({len(srs)} SRs {CARRIER_IP}:{p + 1} -> {sbc_a[0]}:{sbc_a[1]} and {len(rrs)} RRs "
          f"{GW1_IP}:{GW_RTCP_PORT} -> {sbc_b[0]}:{sbc_b[1]}, one type-5 HEP packet each, correlated "
          f"{cid}; {len(sip)} SIP HEP packets of the call; {len(res['rtp_tx'])} RTP packets sent, "
          f"none in HEP; t0+{t1 - t0:.1f} s)", flush=True)


@lab_test
def cap_pcap_opens_in_tshark(ctx: Ctx):
    """`sbcctl capture --seconds 5 > capture.pcap` inside ns sbc while 10 calls are made: a µs
    pcap with Ethernet link type; tshark reads it and its SIP messages (method or status, IP
    addresses, UDP ports) are exactly those the sipp peers traced on both sides, the payloads
    theirs, all stamped within the capture's window."""
    name = "cap_pcap_opens_in_tshark"
    d = ctx.tdir(name)
    tshark = shutil.which("tshark")
    check(tshark is not None, "tshark is not installed (apt-get install tshark; .ci/run does)")
    pcap = d / "capture.pcap"
    argv = sbcctl_argv(ctx, "capture", "--seconds", str(PCAP_SECONDS))
    t0 = time.time()
    with open(pcap, "wb") as out, open(d / "sbcctl.err", "wb") as err:
        p = spawn(argv, stdout=out, stderr=err)
        try:
            time.sleep(1.0)     # the request reaches the API and capture is on
            r, res = run_calls(ctx, name, uas={GW1_IP: "uas_simple"}, calls=PCAP_CALLS, rate=10,
                               duration_ms=200, timeout_s=20)
            t_calls = time.time()
            try:
                p.wait(PCAP_SECONDS + 15)
            except subprocess.TimeoutExpired:
                pass
        finally:
            rc = stop_process(p)
    t1 = time.time()
    ur = res[GW1_IP]
    calls_ok(r, ur, PCAP_CALLS)
    check(t_calls - t0 < PCAP_SECONDS, f"the calls took until {t_calls - t0:.1f} s into the "
                                       f"{PCAP_SECONDS} s capture: too slow to compare")
    check(rc == 0, f"sbcctl capture --seconds {PCAP_SECONDS} exited {rc}: "
                   f"{(d / 'sbcctl.err').read_text(errors='replace').strip()[:500]}")
    data = pcap.read_bytes()
    check(len(data) >= 24, f"{pcap}: {len(data)} bytes, not even a pcap header")
    magic, = struct.unpack("<I", data[:4])
    linktype, = struct.unpack("<I" if magic == 0xa1b2c3d4 else ">I", data[20:24])
    check(magic in (0xa1b2c3d4, 0xd4c3b2a1) and linktype == 1,
          f"{pcap}: magic {data[:4].hex()} link type {linktype}; want a classic µs pcap "
          f"(a1b2c3d4 either byte order) with link type 1 (Ethernet)")

    fields = ["sip.Method", "sip.Status-Code", "ip.src", "ip.dst", "udp.srcport", "udp.dstport"]
    cmd = [tshark, "-r", str(pcap), "-Y", "sip", "-T", "fields"] + [x for f in fields for x in ("-e", f)]
    t = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    (d / "tshark.txt").write_text(t.stdout)
    check(t.returncode == 0, f"tshark -r {pcap} exited {t.returncode}: {t.stderr.strip()[-800:]}")
    every = subprocess.run([tshark, "-r", str(pcap)], capture_output=True, text=True, timeout=60)
    check(every.returncode == 0, f"tshark -r {pcap} (no filter) exited {every.returncode}: "
                                 f"{every.stderr.strip()[-800:]}")
    frames = len([x for x in every.stdout.splitlines() if x.strip()])

    want = both_sides(r, ur)
    listed = Counter()
    for line in t.stdout.splitlines():
        if not line.strip():
            continue
        method, status, src, dst, sport, dport = (line.split("\t") + [""] * 6)[:6]
        listed[(method or status, src, sport, dst, dport)] += 1
    traced_c = Counter((w.what.split("/")[0], w.src[0], str(w.src[1]), w.dst[0], str(w.dst[1]))
                       for w in want)
    fmt = lambda c: ", ".join(f"{k[0]} {k[1]}:{k[2]}->{k[3]}:{k[4]} x{v}"  # noqa: E731
                              for k, v in sorted(c.items())) or "none"
    check(listed == traced_c and frames == sum(listed.values()),
          f"tshark lists {sum(listed.values())} SIP messages in {frames} frames of {pcap}; sipp "
          f"traced {len(want)}.\n  only in the capture: {fmt(listed - traced_c)}\n"
          f"  only in the traces: {fmt(traced_c - listed)}")

    got = [Wire((s, sp), (dst, dp), norm(payload), ts) for ts, s, sp, dst, dp, payload in read_pcap_udp(pcap)]
    _, missing, extra = match(want, got)
    check(not missing and not extra, mismatch_report(missing, extra, want, "the capture"))
    late = [w for w in got if not t0 <= w.ts <= t1]
    check(not late, f"{len(late)} captured messages stamped outside the capture's window "
                    f"[{t0:.6f}, {t1:.6f}]: e.g. {late[0].label} at {late[0].ts:.6f}" if late else "")


@lab_test
def cap_live_calls(ctx: Ctx):
    """5 calls of 8 s with audio both ways (uac_rtp -> uas_call -rtp_echo): GET
    /api/v1/calls/active shows count 5, media true, each answered, inbound, carrier -> gateway
    with the carrier's Call-ID, one media line with the relay ports the peers' SDP names, RTP both
    ways above 0 and growing over 2 s, nothing lost; sbcctl calls --active --count prints 5 and
    the table lists the Call-IDs; afterwards count 0."""
    name = "cap_live_calls"
    check(sipp_pcap().exists(), f"{sipp_pcap()} not found (sip-tester ships it)")
    d = ctx.tdir(name)
    mp = ["-mp", str(SIPP_MEDIA_PORT)]
    wait_media_idle(ctx)
    res: dict = {}
    seen: dict = {}

    def active(tag: str) -> tuple[dict, float]:
        t = time.monotonic()
        resp = ctx.api.request("GET", "/api/v1/calls/active", timeout=5)
        j = resp.json()
        check(resp.code == 200 and isinstance(j, dict) and isinstance(j.get("calls"), list),
              f"GET /api/v1/calls/active ({tag}) -> {resp.code} {resp.body[:300]}")
        (d / f"active_{tag}.json").write_text(json.dumps(j, indent=1))
        return j, t

    with Uas("gw", "uas_call", GW1_IP, 5060, d, "uas", extra=["-rtp_echo"] + mp) as uas:
        th = threading.Thread(target=lambda: res.setdefault("uac", run_uac(
            "carrier", "uac_rtp", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=LIVE_CALLS, rate=10,
            limit=LIVE_CALLS, duration_ms=LIVE_HOLD_MS, timeout_s=40, extra=mp)))
        th.start()
        try:
            deadline = time.monotonic() + 6
            while True:
                a, _ = active("wait")
                up = [c for c in a["calls"] if c.get("state") == "answered"]
                if len(up) >= LIVE_CALLS or time.monotonic() > deadline or not th.is_alive():
                    break
                time.sleep(0.2)
            time.sleep(0.5)
            a1, m1 = active("first")
            time.sleep(2.0)
            a2, m2 = active("second")
            seen["count"] = sbcctl(ctx, "calls", "--active", "--count")
            seen["table"] = sbcctl(ctx, "calls", "--active")
            (d / "sbcctl_active.txt").write_text(seen["count"] + "\n" + seen["table"])
        finally:
            th.join(60)
            ur = uas.stop()
    r = res.get("uac")
    check(r is not None, "the caller's sipp did not finish")
    calls_ok(r, ur, LIVE_CALLS)

    # What the peers saw: the carrier's Call-IDs and the relay ports of their SDP.
    want = both_sides(r, ur)
    legs = calls_by_tag(want)
    port_a, port_b = {}, {}     # carrier Call-ID -> the SBC's port in the answer / the offer
    gw_to_carrier = {c["gw"]: c["carrier"] for c in legs.values() if len(c) == 2}
    for m in sipp_messages(r.files.get("messages")):
        if m.direction == "received" and m.is_response(200, "INVITE") and m.sdp:
            port_a.setdefault(m.call_id, m.sdp.port)
    for m in sipp_messages(ur.files.get("messages")):
        if m.direction == "received" and m.is_request("INVITE") and m.sdp and m.call_id in gw_to_carrier:
            port_b.setdefault(gw_to_carrier[m.call_id], m.sdp.port)
    carrier_ids = {c["carrier"] for c in legs.values() if "carrier" in c}
    check(len(carrier_ids) == LIVE_CALLS and len(port_a) == LIVE_CALLS and len(port_b) == LIVE_CALLS,
          f"the traces show {len(carrier_ids)} calls, {len(port_a)} answers with SDP at the carrier, "
          f"{len(port_b)} offers at the gateway (want {LIVE_CALLS} each; traces in {d})")

    def calls_of(a: dict, tag: str) -> dict:
        calls = {c.get("call_id"): c for c in a["calls"]}
        check(a.get("count") == LIVE_CALLS and len(a["calls"]) == LIVE_CALLS and a.get("media") is True,
              f"GET /api/v1/calls/active ({tag}, the {LIVE_CALLS} calls up): count {a.get('count')}, "
              f"{len(a['calls'])} calls, media {a.get('media')}; want {LIVE_CALLS}, {LIVE_CALLS}, true")
        check(set(calls) == carrier_ids, f"calls/active ({tag}) lists Call-IDs {sorted(calls)}; the "
                                         f"carrier's are {sorted(carrier_ids)}")
        for cid, c in calls.items():
            want_c = {"state": "answered", "direction": "inbound",
                      "caller_addr": f"{CARRIER[0]}:{CARRIER[1]}",
                      "callee_addr": f"{GATEWAY[0]}:{GATEWAY[1]}",
                      "ports": [[port_a[cid], port_b[cid]]]}
            got_c = {k: c.get(k) for k in want_c}
            check(got_c == want_c, f"calls/active ({tag}) call {cid}: {got_c}; want {want_c} (the "
                                   f"ports: the SDP answer at the carrier, the offer at the gateway)")
            for k in ("from_caller", "from_callee"):
                f = c.get(k) or {}
                check(all(x in f for x in ("packets", "bytes", "lost", "jitter_ms", "dtmf_events")),
                      f"calls/active ({tag}) call {cid}: {k} = {f}; want packets, bytes, lost, "
                      f"jitter_ms, dtmf_events")
                check(f["packets"] > 0 and f["bytes"] >= 172 * f["packets"] and f["lost"] == 0,
                      f"calls/active ({tag}) call {cid}, {c.get('age_s')} s old: {k} = {f}; want "
                      f"packets > 0 (g711a.pcap plays for 7 s from the answer), 172-byte PCMA "
                      f"packets, none lost")
        return calls

    c1, c2 = calls_of(a1, "first"), calls_of(a2, "second")
    dt = m2 - m1
    for cid in carrier_ids:
        for k in ("from_caller", "from_callee"):
            p1, p2 = c1[cid][k]["packets"], c2[cid][k]["packets"]
            check(p2 - p1 >= 10 and c2[cid][k]["bytes"] > c1[cid][k]["bytes"],
                  f"call {cid} {k}: {p1} packets, then {p2} {dt:.1f} s later (the audio sends 33 "
                  f"a second): the live figures do not move")
        age = c2[cid]["age_s"] - c1[cid]["age_s"]
        check(1.0 <= age <= dt + 1.5, f"call {cid}: age_s {c1[cid]['age_s']} then {c2[cid]['age_s']} "
                                      f"{dt:.1f} s later")
    check(seen["count"].strip() == str(LIVE_CALLS),
          f"sbcctl calls --active --count printed {seen['count']!r} with {LIVE_CALLS} calls up")
    absent = [cid for cid in carrier_ids if cid not in seen["table"]]
    check(not absent, f"sbcctl calls --active does not list {absent}:\n{seen['table']}")

    wait_calls_down(ctx)
    deadline = time.monotonic() + 5
    while True:
        a3, _ = active("after")
        if a3.get("count") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    check(a3.get("count") == 0 and a3.get("calls") == [],
          f"calls/active after the calls ended: count {a3.get('count')}, calls {a3.get('calls')}")
    n = sbcctl(ctx, "calls", "--active", "--count").strip()
    check(n == "0", f"sbcctl calls --active --count printed {n!r} after the calls ended")
