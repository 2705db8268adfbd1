"""Restart without losing live calls (issue 15: "kill -9 + restart restores media of 100 live calls
within 2 s"), on either backend. The SBC keeps a call journal ([journal] path, SQLite in its
temporary directory, written by the control plane about every 50 ms): every answered call's
dialog, legs, ports, both SDPs and SRTP keys. After a kill -9 and a start on the same config the
SBC puts the answered calls back: the same media ports, relay streams toward both SDP addresses
(latched again on the first packet), the dialog (an in-dialog BYE routes as before). Calls still
ringing are not journaled and not restored.

  restart_kill9_restores_100_calls
        The carrier (ns carrier, 10.0.1.10:5060, CARRIER below run as carrier.py) places 100
        calls to the gateway (ns gw, 203.0.113.10:5060, GATEWAY below run as gateway.py), one
        INVITE every 5 ms, each offering m=audio 20000+2i; the gateway answers 100/180/200 with
        m=audio 30000+2k and echoes every RTP packet back to where it came from. Each call sends
        PCMA every 20 ms (172 bytes, SSRC 0x5E570000+i). Once all 100 are answered, ACKed and
        >= 5 packets of each came back to the carrier (so both ways), one more INVITE (the 101st
        Call-ID) is held ringing by the gateway (180, no 200); 0.3 s later (journal flush) the SBC
        is killed (SIGKILL, Sbc.crash) and started again on the same config, journal kept.
        Asserted: restored media on every call both ways, per call the first packet relayed each
        way after the new process started (the gateway's receive times; the carrier's receive
        times of the echo), the last call's both ways within 5 s of the new start (the goal is 2 s:
        the figures are printed either way); status after the restart: sip.calls_restored 100,
        sip.restore_failed 0, calls_up 100, sip.dialogs 100,
        sip.journal_dropped 0 (also 0 before the kill); each call's RTP at both ends only from
        the SBC address and port its SDP named, before and after the restart (the same relay
        ports), only its own SSRC (no cross-talk between restored streams) and in a 1.7 s window
        after the restore >= 95 % of what the carrier sent reached the gateway and >= 95 % of
        that came back. Then the gateway sends (and resends) the 200 of the ringing call: the
        carrier gets no 2xx for it, calls_up and calls_restored stay 100, the SBC stays up. Then
        the carrier sends BYE on all 100 (each via the route set of its 200): every one is
        answered 200 at the carrier, the gateway gets one BYE on each call's gateway-leg Call-ID
        (the one of the INVITE whose media carried that call's SSRC), the SBC sends no request
        of its own to either side; calls_up and sip.dialogs back to 0; GET /api/v1/cdrs has one
        row per call: answered, 200, ended_by caller, the gateway leg's Call-ID, answered before
        the kill, ended after the BYE, RTP from each side at least 98 % of what the new process
        relayed (the captures' figures after its start) and at most what was sent in all; GET
        /api/v1/calls says answered.

Both scripts are stdlib Python (they import kit/uapeer.py's Msg, Dialog and SDP helpers), driven by
files the test creates in its directory (ring, answer_ring, bye, stop), each writing
<role>.state.json as it goes and printing one JSON object at the end: every RTP packet sent and
received (time, sequence number) per call and what SIP it sent and received. The test directory
keeps carrier.json, gateway.json, the SIP captures c0.pcap / g0.pcap and the SBC's status before
and after.

Measured (2 cores; `--files restart`, three runs per backend, 5.7 s / 7.4 s each; the test prints
these figures every run):
  socket  the killed process gone 6-9 ms after SIGKILL; the journal 177-218 kB (calls.db and its
          -wal); media both ways on all 100 calls 0.072-0.078 s after the new process started
          (0.078-0.087 s after the kill; per call median 0.056-0.068 s; the log's "calls restored
          calls=100 failed=0" comes ~24 ms after the start); each call's audio gap 0.07-0.10 s;
          then 100 % of every call's packets crossed each way (92-94 per call in 1.9 s). After the
          restart calls_restored 100, restore_failed 0, calls_up 100, dialogs 100, journal_dropped
          0, media.streams 200. The ringing call's 200 (sent 3 times in 2 s) only raised
          sip.stray_responses by 3: nothing reached the carrier, and the gateway got nothing back
          (no ACK, no BYE). 100 BYEs answered 200 (0.3-0.6 ms median, <= 5 ms), each reaching the
          gateway once on its leg's Call-ID; calls_up and dialogs 0. The CDRs count only the RTP
          the new process relayed: 11,683-11,932 packets from the caller of 15,973-16,245 sent
          (the ~4,000 sent before the kill are not in the records).
  dpdk    gone 0.164 s after SIGKILL; media both ways on all 100 0.387-0.439 s after the new start
          (0.551-0.604 s after the kill; per call median 0.378-0.430 s): the EAL start-up takes
          ~0.41 s (to "SIP engine running" in the log), the restore ~2 ms after it; audio gap
          0.54-0.62 s; Sbc.start() returns (OPTIONS answered on both sides) 1.6-1.7 s after the
          spawn, long after the media is back. Counters, ringing call, BYEs (0.5-0.6 ms median,
          <= 7.2 ms) and CDRs as on sockets (16,706-17,237 counted of 23,532-24,138 sent). No
          stale EAL state: with --no-shconf /var/run/dpdk/sbc-lab stays empty after the kill and
          the new start needs no clean-up.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP
from kit.ctx import Ctx, TestFailure, check
from kit.netns import wait_udp_listen
from kit.paths import LAB
from kit.pcap import Capture
from kit.proc import JsonScript, spawn, tail
from kit.provisioning import NUMBER
from kit.registry import lab_test

CALLS = 100
CARRIER_RTP0 = 20000            # the carrier's RTP port of call i: 20000 + 2i (ringing call: i = 100)
GATEWAY_RTP0 = 30000            # the gateway's of its k-th answered call: 30000 + 2k
SSRC0 = 0x5E570000
ECHOED_BEFORE = 5               # echoed packets per call before the kill
GOAL_S = 2.0                    # the goal: media back within 2 s of the new start
LIMIT_S = 5.0                   # ... fail beyond this
WINDOW_MIN = 0.95               # share of packets crossing each way once restored

COMMON = r'''
import heapq, json, os, select, socket, struct, sys, time, types

role, kit, ctl, ip, sip_port, rtp0, n = sys.argv[1:8]
sys.path.insert(0, kit)
import uapeer as u

sip_port, rtp0, n = int(sip_port), int(rtp0), int(n)
T1, T2, PTIME = 0.5, 4.0, 0.02


def r4(t):
    return round(t, 4)


def response(req, code, reason, tag=None, extra=(), body=b"", ctype=None):
    h = [f"SIP/2.0 {code} {reason}"]
    h += [f"Via: {v}" for v in req.all("Via", "v")]
    h.append(f"From: {req.header('From', 'f')}")
    to = req.header("To", "t") or ""
    if tag and ";tag=" not in to:
        to += f";tag={tag}"
    h += [f"To: {to}", f"Call-ID: {req.call_id}", f"CSeq: {req.header('CSeq')}"]
    h += list(extra)
    if ctype:
        h.append(f"Content-Type: {ctype}")
    h.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


class Party:
    """SIP on ip:sip_port, RTP on rtp0 + 2k (k = 0..n), epoll, timers, control files."""

    def __init__(self):
        self.sip = self.udp(sip_port)
        self.rtp = [self.udp(rtp0 + 2 * k) for k in range(n + 1)]
        self.ep = select.epoll()
        self.by_fd = {}
        for k, s in enumerate([self.sip] + self.rtp):
            self.ep.register(s.fileno(), select.EPOLLIN)
            self.by_fd[s.fileno()] = (s, k - 1)
        self.timers, self.tseq = [], 0
        self.sip_log = []           # [t, dir, peer, first line, Call-ID, CSeq]
        self.done = False
        self.flags = set()
        self.next_ctl = 0.0

    @staticmethod
    def udp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((ip, port))
        s.setblocking(False)
        return s

    def at(self, delay, fn):
        self.tseq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.tseq, fn))

    def send_sip(self, data, dst):
        try:
            self.sip.sendto(data, dst)
        except OSError as e:
            self.sip_log.append([r4(time.time()), "error", f"{dst[0]}:{dst[1]}", str(e), "", ""])
            return
        m = u.Msg(data)
        self.sip_log.append([r4(time.time()), "sent", f"{dst[0]}:{dst[1]}", m.first, m.call_id,
                             m.header("CSeq")])

    def retransmit(self, data, dst, until, pending, interval=T1):
        """Send data again after interval (doubling up to T2) while pending() and before until."""
        def again():
            if pending() and time.monotonic() < until:
                self.send_sip(data, dst)
                self.retransmit(data, dst, until, pending, min(2 * interval, T2))
        self.at(interval, again)

    def run(self):
        while not self.done:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            if now >= self.next_ctl:
                for f in self.FLAGS:
                    if f not in self.flags and os.path.exists(os.path.join(ctl, f)):
                        self.flags.add(f)
                        self.on_flag(f)
                self.write_state()
                self.next_ctl = now + 0.05
                continue
            wake = min([self.next_ctl] + ([self.timers[0][0]] if self.timers else []))
            for fd, _ in self.ep.poll(max(0.0, wake - now)):
                s, k = self.by_fd[fd]
                while True:
                    try:
                        data, src = s.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if k < 0:
                        self.sip_in(data, src)
                    else:
                        self.on_rtp(k, data, src)

    def sip_in(self, data, src):
        try:
            m = u.Msg(data)
            m.cseq
        except (ValueError, IndexError):
            self.sip_log.append([r4(time.time()), "garbage", f"{src[0]}:{src[1]}", data[:80].hex(),
                                 "", ""])
            return
        self.sip_log.append([r4(time.time()), "received", f"{src[0]}:{src[1]}", m.first, m.call_id,
                             m.header("CSeq")])
        self.on_sip(m, src)

    def write_state(self):
        tmp = os.path.join(ctl, f"{role}.state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.state(), f)
        os.replace(tmp, os.path.join(ctl, f"{role}.state.json"))

    @staticmethod
    def rtp_head(data):
        if len(data) < 12 or data[0] >> 6 != 2:
            return None
        seq, = struct.unpack("!H", data[2:4])
        ssrc, = struct.unpack("!I", data[8:12])
        return seq, ssrc
'''

CARRIER = r'''
to, number, ssrc0 = sys.argv[8], sys.argv[9], int(sys.argv[10], 0)


class Call:
    def __init__(self, i):
        self.i = i
        self.dlg = u.Dialog(types.SimpleNamespace(ip=ip, sip_port=sip_port), u.hostport(to), number)
        self.port, self.ssrc = rtp0 + 2 * i, ssrc0 + i
        self.state = "new"          # inviting, early, up, bye, ended, failed
        self.marks = {}
        self.codes = []             # INVITE responses: [t, code]
        self.media = None
        self.ack = None
        self.seq = 0
        self.next = 0.0
        self.tx, self.rx = [], []   # [t, seq]
        self.wrong = []             # received RTP not from the answer's address or not our SSRC
        self.bye_final = None
        self.sbc_requests = []


class Carrier(Party):
    FLAGS = ("ring", "bye", "stop")

    def __init__(self):
        super().__init__()
        self.calls = [Call(i) for i in range(n + 1)]    # the last one: the ringing call
        self.by_cid = {c.dlg.call_id: c for c in self.calls}
        self.stray = []
        for i in range(n):
            self.at(0.2 + 0.005 * i, lambda c=self.calls[i]: self.invite(c))

    def invite(self, c):
        data, cseq = c.dlg.request("INVITE", u.make_sdp(ip, c.port).encode(), "application/sdp")
        c.state = "inviting"
        c.marks["invite"] = r4(time.time())
        self.send_sip(data, c.dlg.to)
        self.retransmit(data, c.dlg.to, time.monotonic() + 16, lambda: c.state == "inviting")

    def on_flag(self, f):
        if f == "ring":
            self.invite(self.calls[n])
        elif f == "bye":
            up = [c for c in self.calls if c.state == "up"]
            for j, c in enumerate(up):
                self.at(0.002 * j, lambda c=c: self.bye(c))
        elif f == "stop":
            self.done = True

    def bye(self, c):
        c.state = "bye"
        data, _ = c.dlg.request("BYE")
        c.marks["bye"] = r4(time.time())
        hop = c.dlg.next_hop()
        self.send_sip(data, hop)
        self.retransmit(data, hop, time.monotonic() + 16, lambda: c.bye_final is None)

    def on_sip(self, m, src):
        c = self.by_cid.get(m.call_id)
        if not m.is_response:
            if c is not None:
                c.sbc_requests.append([r4(time.time()), m.first])
            else:
                self.stray.append([r4(time.time()), m.first, m.call_id])
            if m.method != "ACK":
                self.send_sip(response(m, 200 if c is not None else 481,
                                       "OK" if c is not None else "Call Does Not Exist"), src)
            if c is not None and m.method == "BYE" and c.state in ("up", "bye"):
                c.state = "ended_by_sbc"
            return
        if c is None:
            self.stray.append([r4(time.time()), m.first, m.call_id])
            return
        num, method = m.cseq
        if method == "INVITE":
            c.codes.append([r4(time.time()), m.code])
            if m.code < 200:
                if c.state == "inviting":
                    c.state = "early"
                c.marks.setdefault(f"r{m.code}", r4(time.time()))
            elif m.code < 300:
                if c.ack is not None:
                    self.send_sip(*c.ack)           # a retransmitted 2xx: the ACK again
                    return
                c.dlg.answered(m)
                ack, _ = c.dlg.request("ACK", cseq=num)
                c.ack = (ack, c.dlg.next_hop())
                self.send_sip(*c.ack)
                c.marks["answered"] = r4(time.time())
                c.media = u.sdp_addr(m.sdp())
                if c.state in ("inviting", "early") and c.media is not None:
                    c.state = "up"
                    c.next = time.monotonic()
                    self.at(0.0, lambda: self.send_rtp(c))
                elif c.media is None:
                    c.state = "failed"
            elif c.state in ("inviting", "early"):
                c.state = "failed"
                c.marks["failed"] = r4(time.time())
        elif method == "BYE" and m.code >= 200 and c.bye_final is None:
            c.bye_final = m.code
            c.marks["bye_final"] = r4(time.time())
            c.state = "ended"

    def send_rtp(self, c):
        if c.state != "up":
            return
        pkt = struct.pack("!BBHII", 0x80, 8, c.seq & 0xFFFF, (c.seq * 160) & 0xFFFFFFFF, c.ssrc) \
            + bytes([0xD5]) * 160
        try:
            self.rtp[c.i].sendto(pkt, c.media)
        except OSError:
            pass
        c.tx.append([r4(time.time()), c.seq & 0xFFFF])
        c.seq += 1
        c.next += PTIME
        self.at(max(0.0, c.next - time.monotonic()), lambda: self.send_rtp(c))

    def on_rtp(self, k, data, src):
        c = self.calls[k]
        h = self.rtp_head(data)
        t = r4(time.time())
        if h is None or h[1] != c.ssrc or c.media is None or tuple(src) != tuple(c.media):
            if len(c.wrong) < 50:
                c.wrong.append([t, f"{src[0]}:{src[1]}", h[1] if h else None])
            return
        c.rx.append([t, h[0]])

    def state(self):
        calls = self.calls[:n]
        ring = self.calls[n]
        finals = {}
        for c in calls:
            if c.bye_final is not None:
                finals[str(c.bye_final)] = finals.get(str(c.bye_final), 0) + 1
        return {"t": time.time(),
                "states": {s: sum(1 for c in calls if c.state == s) for s in {c.state for c in calls}},
                "answered": sum(1 for c in calls if "answered" in c.marks),
                "echoed": [len(c.rx) for c in calls],
                "last_rx": [c.rx[-1][0] if c.rx else 0 for c in calls],
                "ring": {"state": ring.state, "codes": ring.codes},
                "bye_finals": finals,
                "sbc_requests": sum(len(c.sbc_requests) for c in self.calls) + len(self.stray)}

    def result(self):
        return {"role": role, "stray": self.stray, "sip": self.sip_log,
                "calls": [{"i": c.i, "call_id": c.dlg.call_id, "state": c.state, "marks": c.marks,
                           "codes": c.codes, "media": list(c.media) if c.media else None,
                           "port": c.port, "ssrc": c.ssrc, "tx": c.tx, "rx": c.rx, "wrong": c.wrong,
                           "bye_final": c.bye_final, "sbc_requests": c.sbc_requests}
                          for c in self.calls]}


p = Carrier()
print(json.dumps({"ready": True}), flush=True)
p.run()
print(json.dumps(p.result()), flush=True)
'''

GATEWAY = r'''
class Leg:
    def __init__(self, k, inv, src):
        self.k, self.inv, self.src = k, inv, src
        self.call_id = inv.call_id
        self.tag = u.rand_hex(8)
        self.offer = u.sdp_addr(inv.sdp())
        self.ring = k == n
        self.last = None            # our last response to the INVITE (resent on a retransmission)
        self.ok = None
        self.marks = {"invite": r4(time.time())}
        self.acked = None
        self.byes = []              # [t, CSeq]
        self.requests = []          # every other request on this Call-ID after the INVITE
        self.rx = []                # [t, seq]
        self.ssrcs, self.srcs = {}, {}


class Gateway(Party):
    FLAGS = ("answer_ring", "stop")

    def __init__(self):
        super().__init__()
        self.legs = {}
        self.by_k = {}
        self.answered = 0
        self.unknown = []

    def on_flag(self, f):
        if f == "answer_ring":
            for leg in self.legs.values():
                if leg.ring and leg.ok is None:
                    self.answer(leg, until=8.0)
        elif f == "stop":
            self.done = True

    def answer(self, leg, until=32.0):
        extra = [f"Record-Route: {v}" for v in leg.inv.all("Record-Route")]
        extra.append(f"Contact: <sip:gw@{ip}:{sip_port}>")
        leg.ok = response(leg.inv, 200, "OK", leg.tag, extra, u.make_sdp(ip, rtp0 + 2 * leg.k).encode(),
                          "application/sdp")
        leg.last = leg.ok
        leg.marks["answered"] = r4(time.time())
        self.send_sip(leg.ok, leg.src)
        self.retransmit(leg.ok, leg.src, time.monotonic() + until, lambda: leg.acked is None)

    def on_sip(self, m, src):
        leg = self.legs.get(m.call_id)
        if m.is_response:
            self.unknown.append([r4(time.time()), m.first, m.call_id])
            return
        if m.method == "INVITE" and leg is None:
            k = self.answered if self.answered < n else n
            leg = self.legs[m.call_id] = self.by_k[k] = Leg(k, m, src)
            self.send_sip(response(m, 100, "Trying"), src)
            extra = [f"Record-Route: {v}" for v in m.all("Record-Route")]
            extra.append(f"Contact: <sip:gw@{ip}:{sip_port}>")
            leg.last = response(m, 180, "Ringing", leg.tag, extra)
            self.send_sip(leg.last, src)
            if k < n:
                self.answered += 1
                self.answer(leg)
            return
        if leg is None:
            self.unknown.append([r4(time.time()), m.first, m.call_id])
            if m.method != "ACK":
                self.send_sip(response(m, 481, "Call/Transaction Does Not Exist"), src)
            return
        if m.method == "INVITE" and m.cseq == leg.inv.cseq:
            self.send_sip(leg.last, src)        # a retransmission
        elif m.method == "ACK" and leg.ok is not None and m.cseq[0] == leg.inv.cseq[0]:
            if leg.acked is None:
                leg.acked = r4(time.time())
            if leg.ring:
                leg.requests.append([r4(time.time()), m.first])
        elif m.method == "BYE":
            leg.byes.append([r4(time.time()), m.header("CSeq")])
            self.send_sip(response(m, 200, "OK"), src)
        else:
            leg.requests.append([r4(time.time()), m.first])
            if m.method != "ACK":
                self.send_sip(response(m, 200, "OK"), src)

    def on_rtp(self, k, data, src):
        leg = self.by_k.get(k)
        h = self.rtp_head(data)
        t = r4(time.time())
        try:
            self.rtp[k].sendto(data, src)       # the echo
        except OSError:
            pass
        if leg is None or h is None:
            self.unknown.append([t, f"RTP on port {rtp0 + 2 * k} from {src[0]}:{src[1]}", None])
            return
        s = f"{src[0]}:{src[1]}"
        leg.srcs[s] = leg.srcs.get(s, 0) + 1
        leg.ssrcs[str(h[1])] = leg.ssrcs.get(str(h[1]), 0) + 1
        leg.rx.append([t, h[0]])

    def state(self):
        legs = [x for x in self.legs.values() if not x.ring]
        return {"t": time.time(), "invites": len(self.legs), "answered": self.answered,
                "acked": sum(1 for x in legs if x.acked),
                "ringing": sum(1 for x in self.legs.values() if x.ring),
                "byes": sum(1 for x in legs if x.byes), "unknown": len(self.unknown),
                "ring_requests": [r for x in self.legs.values() if x.ring for r in x.requests]}

    def result(self):
        return {"role": role, "unknown": self.unknown[:200], "sip": self.sip_log,
                "legs": [{"k": x.k, "call_id": x.call_id, "ring": x.ring,
                          "offer": list(x.offer) if x.offer else None,
                          "marks": x.marks, "acked": x.acked, "byes": x.byes, "requests": x.requests,
                          "rx": x.rx, "ssrcs": x.ssrcs, "srcs": x.srcs} for x in self.legs.values()]}


p = Gateway()
print(json.dumps({"ready": True}), flush=True)
p.run()
print(json.dumps(p.result()), flush=True)
'''


# --- helpers --------------------------------------------------------------------------------------

class Script(JsonScript):
    """COMMON + one role's part, written to the test's directory as <role>.py and run in `ns`;
    state() reads what it last wrote, result() stops it and returns its final JSON line."""

    def __init__(self, d: Path, role: str, ns: str, part: str, argv: list):
        self.d, self.role = d, role
        path = d / f"{role}.py"
        path.write_text(COMMON + part)
        super().__init__(d, role, ns, [path, role, LAB / "kit", d] + list(argv))

    def state(self) -> dict:
        try:
            return json.loads((self.d / f"{self.role}.state.json").read_text())
        except (OSError, ValueError):
            return {}


def flag(d: Path, name: str) -> None:
    (d / name).touch()


def wait_for(what, pred, timeout: float, every: float = 0.02):
    """Poll what() until pred(value) or the timeout; returns (the last value, whether pred held)."""
    deadline = time.monotonic() + timeout
    while True:
        v = what()
        if pred(v):
            return v, True
        if time.monotonic() > deadline:
            return v, False
        time.sleep(every)


def counters(ctx: Ctx) -> dict:
    st = ctx.api.status()
    sip, media = st.get("sip") or {}, st.get("media") or {}
    out = {"calls_up": st.get("calls_up")}
    for k in ("dialogs", "calls_restored", "restore_failed", "journal_dropped",
              "stray_responses", "calls_total", "calls_answered", "transactions"):
        out[f"sip.{k}"] = sip.get(k)
    for k in ("streams", "relayed"):
        out[f"media.{k}"] = media.get(k)
    return out


def first_after(rows: list, t: float) -> float | None:
    return next((x[0] for x in rows if x[0] > t), None)


def last_before(rows: list, t: float) -> float | None:
    return next((x[0] for x in reversed(rows) if x[0] < t), None)


def pct(vals: list, q: float) -> float:
    s = sorted(vals)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def cdr_rows(ctx: Ctx, call_ids: set, timeout: float = 6.0) -> dict:
    """GET /api/v1/cdrs?since=5m&limit=1000 until every Call-ID has a row (they are written in
    batches) or the timeout: {caller Call-ID: row}."""
    deadline = time.monotonic() + timeout
    while True:
        r = ctx.api.request("GET", "/api/v1/cdrs?since=5m&limit=1000")
        j = r.json() if r.code == 200 else None
        rows = {x.get("caller_call_id"): x for x in (j or {}).get("cdrs") or []}
        if call_ids <= set(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


# --- the test -------------------------------------------------------------------------------------

@lab_test(restarts_sbc=True)
def restart_kill9_restores_100_calls(ctx: Ctx):
    name = "restart_kill9_restores_100_calls"
    d = ctx.tdir(name)
    sbc = ctx.sbc
    for f in ("ring", "answer_ring", "bye", "stop"):
        (d / f).unlink(missing_ok=True)
    c0, _ = wait_for(lambda: counters(ctx), lambda c: c["calls_up"] == 0, 5.0, 0.2)
    check(c0["calls_up"] == 0, f"calls_up is {c0['calls_up']} before the test: {c0}")
    caps, scripts = [], []
    st = {"start": c0}
    t = {}
    passed = False
    try:
        caps = [Capture("carrier", "c0", d / "c0.pcap", filter="udp port 5060"),
                Capture("gw", "g0", d / "g0.pcap", filter="udp port 5060")]
        gw = Script(d, "gateway", "gw", GATEWAY, [GW1_IP, 5060, GATEWAY_RTP0, CALLS])
        scripts.append(gw)
        check(wait_udp_listen("gw", GW1_IP, 5060, 5.0),
              f"the gateway did not bind {GW1_IP}:5060:\n{tail(gw.err, 20)}")
        car = Script(d, "carrier", "carrier", CARRIER,
                     [CARRIER_IP, 5060, CARRIER_RTP0, CALLS, SBC_PRIV, NUMBER, hex(SSRC0)])
        scripts.append(car)
        check(wait_udp_listen("carrier", CARRIER_IP, 5060, 5.0),
              f"the carrier did not bind {CARRIER_IP}:5060:\n{tail(car.err, 20)}")
        t["scripts"] = time.time()

        # --- 100 calls up, media both ways on each ------------------------------------------
        s, ok = wait_for(car.state, lambda s: s.get("answered") == CALLS
                         and min(s.get("echoed") or [0]) >= ECHOED_BEFORE, 20.0)
        g = gw.state()
        check(ok, f"the calls did not all come up with media both ways within 20 s: carrier "
                  f"{ {k: s.get(k) for k in ('states', 'answered')} }, calls with >= "
                  f"{ECHOED_BEFORE} packets echoed: "
                  f"{sum(1 for x in s.get('echoed') or [] if x >= ECHOED_BEFORE)}; gateway {g}; "
                  f"status {counters(ctx)}\n{tail(car.err, 10)}{tail(gw.err, 10)}")
        t["up"] = time.time()
        g, ok = wait_for(gw.state, lambda g: g.get("acked") == CALLS, 3.0)
        check(ok, f"the gateway has {g.get('acked')} of {CALLS} calls ACKed: {g}")
        st["up"] = counters(ctx)
        check(st["up"]["calls_up"] == CALLS and st["up"]["sip.journal_dropped"] == 0,
              f"status with {CALLS} calls up: {st['up']}")

        # --- one more call, left ringing ----------------------------------------------------
        flag(d, "ring")
        s, ok = wait_for(car.state, lambda s: any(
            c == 180 for _, c in (s.get("ring") or {}).get("codes", [])), 5.0)
        check(ok, f"the 101st call got no 180 at the carrier: {s.get('ring')}; gateway {gw.state()}")
        g = gw.state()
        check(g.get("ringing") == 1, f"the gateway holds {g.get('ringing')} calls ringing: {g}")

        # --- kill -9, start again on the same config, the journal kept ------------------------
        time.sleep(0.3)                                     # the journal writes every 50 ms
        st["before_kill"] = counters(ctx)
        t["kill"] = sbc.crash()
        t["dead"] = time.time()
        check(sbc.journal.exists(), f"no call journal at {sbc.journal} after the kill ([journal] path)")
        st["journal_bytes"] = sum(Path(f"{sbc.journal}{x}").stat().st_size
                                  for x in ("", "-wal") if Path(f"{sbc.journal}{x}").exists())
        t["spawn"] = time.time()
        sbc.start(api_timeout=30.0)
        t["ready"] = time.time()
        s, restored_all = wait_for(car.state, lambda s: min(s.get("last_rx") or [0]) > t["spawn"],
                                   LIMIT_S + 5.0)
        t["restored"] = time.time()
        st["restarted"] = counters(ctx)

        # --- the ringing call's 200 after the restart ---------------------------------------
        flag(d, "answer_ring")
        t["answer_ring"] = time.time()
        time.sleep(2.0)
        st["ring_answered"] = counters(ctx)
        ring_state = car.state().get("ring")

        # --- BYE on every call --------------------------------------------------------------
        flag(d, "bye")
        t["bye"] = time.time()
        s, byes_ok = wait_for(car.state, lambda s: sum((s.get("bye_finals") or {}).values()) >= CALLS,
                              12.0, 0.1)
        t["byes_answered"] = time.time()
        wait_for(gw.state, lambda g: g.get("byes") == CALLS, 3.0, 0.1)
        st["end"], _ = wait_for(lambda: counters(ctx),
                                lambda c: c["calls_up"] == 0 and c["sip.dialogs"] == 0, 5.0, 0.2)
        flag(d, "stop")
        rc, rg = car.result(10.0), gw.result(10.0)
        passed = True
    finally:
        flag(d, "stop")
        for x in scripts:
            x.stop()
        for c in caps:
            c.stop()
        (d / "status.json").write_text(json.dumps({"status": st, "times": t}, indent=1))
        if not passed:
            cleanup_sbc(ctx)

    try:
        judge(ctx, d, rc, rg, st, t, restored_all, byes_ok, ring_state)
    except TestFailure:
        cleanup_sbc(ctx)
        raise


def cleanup_sbc(ctx: Ctx) -> None:
    """After a failure: the SBC running again with no calls left over (journal forgotten)."""
    try:
        if not ctx.sbc.alive() or counters(ctx)["calls_up"] != 0:
            ctx.sbc.restart()
    except Exception as e:  # noqa: BLE001
        print(f"  cleanup: restarting the SBC failed: {e}", flush=True)


def judge(ctx: Ctx, d: Path, rc: dict, rg: dict, st: dict, t: dict, restored_all: bool,
          byes_ok: bool, ring_state: dict | None) -> None:
    backend = ctx.sbc.backend
    calls = rc["calls"][:CALLS]
    ring = rc["calls"][CALLS]
    legs = [x for x in rg["legs"] if not x["ring"]]
    ring_legs = [x for x in rg["legs"] if x["ring"]]
    check(len(legs) == CALLS, f"the gateway answered {len(legs)} INVITEs, want {CALLS}")
    by_ssrc = {}
    for x in legs:
        check(len(x["ssrcs"]) == 1, f"gateway leg {x['call_id']} (port {GATEWAY_RTP0 + 2 * x['k']}) "
                                    f"got RTP with SSRCs {x['ssrcs']}: want exactly one call's")
        by_ssrc[int(next(iter(x["ssrcs"])))] = x
    check(len(by_ssrc) == CALLS, f"the gateway legs carry {len(by_ssrc)} distinct SSRCs, want {CALLS}")
    leg_of = {}
    for c in calls:
        leg = by_ssrc.get(c["ssrc"])
        check(leg is not None, f"call {c['i']} (SSRC {c['ssrc']:#x}): no gateway leg got its RTP")
        leg_of[c["i"]] = leg

    # --- addresses: each call's RTP only from the SDP's SBC address and port, both ends -------
    for c in calls:
        leg = leg_of[c["i"]]
        check(c["media"] and c["media"][0] == SBC_PRIV_IP,
              f"call {c['i']}: the carrier's answer names {c['media']}, want {SBC_PRIV_IP}")
        check(not c["wrong"], f"call {c['i']}: the carrier got RTP not from {c['media']} or not its "
                              f"SSRC {c['ssrc']:#x} (cross-talk?): {c['wrong'][:5]}")
        want = f"{SBC_PUB_IP}:{leg['offer'][1]}" if leg["offer"] else None
        check(leg["offer"] and leg["offer"][0] == SBC_PUB_IP and set(leg["srcs"]) == {want},
              f"call {c['i']}: the gateway's offer names {leg['offer']}, its RTP came from "
              f"{leg['srcs']} (want only {want}, before and after the restart)")

    # --- the restart: counters -----------------------------------------------------------------
    r = st["restarted"]
    check(r["sip.calls_restored"] == CALLS and r["sip.restore_failed"] == 0,
          f"after the restart sip.calls_restored = {r['sip.calls_restored']}, restore_failed = "
          f"{r['sip.restore_failed']} (want {CALLS}, 0; the ringing call must not count): {r}")
    check(r["calls_up"] == CALLS and r["sip.dialogs"] == CALLS,
          f"after the restart calls_up {r['calls_up']}, sip.dialogs {r['sip.dialogs']} (want "
          f"{CALLS} each): {r}")
    check(st["before_kill"]["sip.journal_dropped"] == 0 and r["sip.journal_dropped"] == 0,
          f"sip.journal_dropped {st['before_kill']['sip.journal_dropped']} before the kill, "
          f"{r['sip.journal_dropped']} after the restart (want 0)")

    # --- the restart: media back on every call, both ways ----------------------------------
    spawn, kill = t["spawn"], t["kill"]
    per = []
    missing = []
    for c in calls:
        leg = leg_of[c["i"]]
        fwd = first_after(leg["rx"], spawn)         # carrier -> gateway, relayed by the new process
        back = first_after(c["rx"], spawn)          # ... and echoed back to the carrier
        last = last_before(c["rx"], kill)
        if fwd is None or back is None:
            missing.append(f"call {c['i']} ({c['call_id']}, ports {c['media']} / "
                           f"{leg['offer']}): gateway {'got RTP' if fwd else 'got none'}, carrier "
                           f"{'got the echo' if back else 'got none'} after the new start")
            continue
        per.append(dict(i=c["i"], fwd=fwd - spawn, back=back - spawn, both=max(fwd, back) - spawn,
                        gap=max(fwd, back) - last if last else None))
    check(not missing and restored_all,
          f"{len(missing)} of {CALLS} calls had no media both ways after the restart "
          f"(waited {LIMIT_S + 5:.0f} s; status {r}):\n  " + "\n  ".join(missing[:10]))
    both = [p["both"] for p in per]
    worst = max(per, key=lambda p: p["both"])
    restore_s, from_kill = worst["both"], worst["both"] + spawn - kill
    gaps = [p["gap"] for p in per if p["gap"] is not None]

    # steady media once restored: by sequence number, in a window after the last call came back
    w0, w1 = spawn + restore_s + 0.2, t["bye"] - 0.1
    ratios = []
    for c in calls:
        leg = leg_of[c["i"]]
        sent = {x[1] for x in c["tx"] if w0 <= x[0] <= w1 - 0.05}
        at_gw = {x[1] for x in leg["rx"] if x[0] >= w0 - 0.1} & sent
        home = {x[1] for x in c["rx"] if x[0] >= w0 - 0.1} & at_gw
        ratios.append((c["i"], len(sent), len(at_gw) / max(1, len(sent)),
                       len(home) / max(1, len(at_gw))))
    fwd_min = min(x[2] for x in ratios)
    back_min = min(x[3] for x in ratios)

    # --- the ringing call ------------------------------------------------------------------
    ra = st["ring_answered"]
    ring_2xx = [x for x in ring["codes"] if 200 <= x[1] < 300]
    ring_leg = ring_legs[0] if ring_legs else {}
    sent_200 = sum(1 for x in rg["sip"] if x[1] == "sent" and x[3].startswith("SIP/2.0 200")
                   and x[4] == ring_leg.get("call_id") and str(x[5]).endswith("INVITE"))

    # --- BYE ---------------------------------------------------------------------------------
    finals = {}
    for c in calls:
        finals[c["bye_final"]] = finals.get(c["bye_final"], 0) + 1
    bye_t = [c["marks"]["bye_final"] - c["marks"]["bye"] for c in calls
             if "bye_final" in c["marks"] and "bye" in c["marks"]]
    e = st["end"]

    summary = (f"{backend}: {CALLS} calls up with media both ways {t['up'] - t['scripts']:.1f} s after "
               f"the start; killed (gone {t['dead'] - kill:.3f} s after SIGKILL; journal "
               f"{st['journal_bytes']} bytes with -wal), started again, ready (API and SIP) "
               f"{t['ready'] - spawn:.2f} s after its start; media both ways on all {CALLS} "
               f"{restore_s:.3f} s after the new start ({from_kill:.3f} s after the kill; per call "
               f"first {min(both):.3f}, median {pct(both, 0.5):.3f}, p90 {pct(both, 0.9):.3f}; forward "
               f"first-to-last {min(p['fwd'] for p in per):.3f}-{max(p['fwd'] for p in per):.3f} s, "
               f"echo "
               f"back {min(p['back'] for p in per):.3f}-{max(p['back'] for p in per):.3f} s); audio gap "
               f"per call {min(gaps):.2f}-{max(gaps):.2f} s; then >= {fwd_min:.1%} forward, "
               f">= {back_min:.1%} back per call ({min(x[1] for x in ratios)}-"
               f"{max(x[1] for x in ratios)} packets each in {w1 - w0:.1f} s); status after the "
               f"restart: calls_restored {r['sip.calls_restored']}, restore_failed "
               f"{r['sip.restore_failed']}, calls_up {r['calls_up']}, dialogs {r['sip.dialogs']}, "
               f"journal_dropped {r['sip.journal_dropped']}, media.streams {r['media.streams']}; "
               f"ringing call: carrier codes {[x[1] for x in ring['codes']]}, gateway sent its 200 "
               f"{sent_200}x and got {[x[1] for x in ring_leg.get('requests', [])]}, stray_responses "
               f"{ra['sip.stray_responses']}, calls_up {ra['calls_up']}; BYE: {finals} in "
               f"{t['byes_answered'] - t['bye']:.2f} s (per BYE {pct(bye_t, 0.5) * 1000:.1f} ms median, "
               f"{max(bye_t) * 1000:.1f} ms max); at the end calls_up {e['calls_up']}, dialogs "
               f"{e['sip.dialogs']})") if bye_t else f"{backend}: BYEs unanswered: {finals}"
    print(f"  ({summary})", flush=True)
    (d / "summary.txt").write_text(summary + "\n" + json.dumps(per, indent=0) + "\n")

    check(restore_s <= LIMIT_S,
          f"the last call's media crossed both ways {restore_s:.2f} s after the new process started "
          f"(call {worst['i']}; {from_kill:.2f} s after the kill): over {LIMIT_S:.0f} s (goal "
          f"{GOAL_S:.0f} s)")
    if restore_s > GOAL_S:
        print(f"  note: over the issue's goal of {GOAL_S:.0f} s ({restore_s:.2f} s)", flush=True)
    bad = [x for x in ratios if x[2] < WINDOW_MIN or x[3] < WINDOW_MIN]
    check(not bad, f"after the restore, calls lose RTP (call, sent, share at the gateway, share of "
                   f"that back at the carrier; want >= {WINDOW_MIN:.0%}): {bad[:10]}")

    check(not ring_2xx and ring_state and not any(200 <= x[1] < 300 for x in ring_state["codes"]),
          f"the ringing call's 200 (sent by the gateway after the restart) reached the carrier as "
          f"a call: {ring['codes']}")
    check(ring_leg and sent_200 >= 1, f"the gateway never sent the ringing call's 200: {ring_leg}")
    check(ra["sip.calls_restored"] == CALLS and ra["calls_up"] == CALLS,
          f"after the ringing call's 200: calls_restored {ra['sip.calls_restored']}, calls_up "
          f"{ra['calls_up']} (want {CALLS} each): {ra}")

    # --- BYE: answered at the carrier, on the gateway leg's Call-ID at the gateway -------------
    check(byes_ok and finals == {200: CALLS},
          f"BYE final responses at the carrier: {finals} (want 200 x {CALLS}); unanswered: "
          f"{[c['call_id'] for c in calls if c['bye_final'] is None][:5]}")
    for c in calls:
        leg = leg_of[c["i"]]
        cseqs = {x[1] for x in leg["byes"]}
        check(len(cseqs) == 1 and leg["call_id"] != c["call_id"],
              f"call {c['i']}: the gateway got {len(leg['byes'])} BYEs with CSeqs {cseqs} on its "
              f"leg {leg['call_id']} (the INVITE that carried this call's media): want one")
        check(not c["sbc_requests"], f"call {c['i']}: the SBC sent the carrier {c['sbc_requests']}")
        check(not leg["requests"], f"call {c['i']}: the SBC sent the gateway {leg['requests']}")
    stray_byes = [x for x in rg["unknown"] if str(x[1]).startswith("BYE")]
    check(not stray_byes, f"the gateway got BYEs on Call-IDs it never saw an INVITE for: "
                          f"{stray_byes[:5]}")
    check(e["calls_up"] == 0 and e["sip.dialogs"] == 0,
          f"after the BYEs: calls_up {e['calls_up']}, sip.dialogs {e['sip.dialogs']} (want 0): {e}")

    # --- the call records ------------------------------------------------------------------
    want = {c["call_id"] for c in calls}
    rows = cdr_rows(ctx, want)
    recs = {x.get("caller_call_id"): x for x in ctx.api.calls(1000)}
    for c in calls:
        row, rec, leg = rows.get(c["call_id"]), recs.get(c["call_id"]), leg_of[c["i"]]
        check(row is not None, f"call {c['i']} ({c['call_id']}): no row in GET /api/v1/cdrs")
        check(row["result"] == "answered" and row["final_code"] == 200 and row["ended_by"] == "caller"
              and row["callee_call_id"] == leg["call_id"],
              f"call {c['i']}: CDR says {row['result']}/{row['final_code']}/ended_by "
              f"{row['ended_by']}, callee Call-ID {row['callee_call_id']} (want answered/200/caller, "
              f"{leg['call_id']}): {row}")
        ans, end = row.get("answer_ms"), row.get("end_ms")
        check(ans is not None and row["start_ms"] <= ans <= (kill + 0.5) * 1000
              and end >= (t["bye"] - 0.5) * 1000,
              f"call {c['i']}: CDR start {row['start_ms']}, answer {ans}, end {end}; the carrier sent "
              f"its INVITE at {c['marks']['invite'] * 1000:.0f}, got the 200 at "
              f"{c['marks']['answered'] * 1000:.0f}, the kill was at {kill * 1000:.0f}, the BYE at "
              f"{c['marks'].get('bye', 0) * 1000:.0f} (want the answer before the kill, the end "
              f"after the BYE)")
        # what the new process relayed: the gateway's packets and the carrier's echoes after its start
        fwd_new = sum(1 for x in leg["rx"] if x[0] > spawn)
        back_new = sum(1 for x in c["rx"] if x[0] > spawn)
        check(0.98 * fwd_new - 2 <= row["caller_packets"] <= len(c["tx"])
              and 0.98 * back_new - 2 <= row["callee_packets"] <= len(leg["rx"]),
              f"call {c['i']}: CDR RTP from the caller {row['caller_packets']}, from the callee "
              f"{row['callee_packets']}; the carrier sent {len(c['tx'])}, the gateway got and echoed "
              f"{len(leg['rx'])} ({fwd_new} after the new start), the carrier got {len(c['rx'])} "
              f"back ({back_new} after the new start): {row}")
        check(rec is not None and rec["result"] == "answered",
              f"call {c['i']}: GET /api/v1/calls has {rec and rec['result']} (want answered)")
    tx = sum(len(c["tx"]) for c in calls)
    tx_kill = sum(1 for c in calls for x in c["tx"] if x[0] < kill)
    tx_new = sum(1 for c in calls for x in c["tx"] if x[0] > spawn)
    gw_new = sum(1 for c in calls for x in leg_of[c["i"]]["rx"] if x[0] > spawn)
    print(f"  (CDRs: {CALLS} answered, ended_by caller; RTP counted from the caller "
          f"{sum(rows[c['call_id']]['caller_packets'] for c in calls)}, from the callee "
          f"{sum(rows[c['call_id']]['callee_packets'] for c in calls)}; the carrier sent {tx} "
          f"({tx_kill} before the kill, {tx_new} after the new start, {gw_new} of these relayed to "
          f"the gateway), got "
          f"{sum(len(c['rx']) for c in calls)} back; ringing call's row: "
          f"{'yes' if ring['call_id'] in rows else 'none'})", flush=True)
