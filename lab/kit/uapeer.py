#!/usr/bin/env python3
"""A small SIP user agent with RTP, for the carrier call flows sipp cannot express (Python 3.11
standard library only, no kit imports). The tests run it inside a lab namespace as a script,

    ip netns exec carrier python3 lab/kit/uapeer.py FLOW [options]

and read the one JSON object it prints at the end: every SIP message it sent and received
(`sip`: time, direction, peer address, the bytes base64-encoded), every RTP packet it sent and
received (`rtp_tx`/`rtp_rx`: time, local port, remote address, SSRC, sequence number), the RTCP
it sent with --rtcp (`rtcp_tx`: time, local port, remote address and the fields of each compound)
and what arrived on its RTCP port (`rtcp_rx`: time, local port, remote address, packet type,
SSRC, the bytes in hex), the times of the flow's steps (`marks`), what the flow recorded besides
(`notes`) and `error` (null when the flow went through). They also import its parsers (Msg,
multipart_parts), ISUP bodies and RTCP builder (rtcp_compound) to read what the captures show and
to send RTCP of their own.

Flows:
  call           UAC of a plain inbound call (SDP, m=audio P): RTP from P for --after s; BYE.
  port-move      UAC of an inbound call (to --to): INVITE offering m=audio P (--port); RTP from
                 P; after --before s a re-INVITE whose SDP only moves the port to P+2; RTP keeps
                 coming from P until the 200 arrives, then (new SSRC) from P+2; after --after s BYE.
  multipart-uac  UAC of an inbound call whose INVITE carries a multipart/mixed body (boundary b1):
                 the SDP (m=audio P) and an application/ISUP part with binary bytes (an IAM), as
                 SIP-I/SIP-T carriers send; RTP from P for --after s; BYE.
  multipart-uas  UAS of an outbound call: waits for an INVITE (from the SBC), answers 100 and a 200
                 whose body is multipart/mixed: the SDP (m=audio P) and an ISUP ANM; echoes every
                 RTP packet received on P back to its source; answers the BYE.
  100rel         UAC of an inbound call whose INVITE (SDP, m=audio P) has Require: 100rel and
                 Supported: 100rel: every reliable provisional (Require: 100rel, RSeq) gets a
                 PRACK (RAck: rseq cseq INVITE), the first one --prack-delay s after it arrived,
                 the others at once; the 200 is ACKed; RTP from P for --after s; BYE.
  delayed-offer  UAC of an inbound call whose INVITE has no body: the 200 must carry an offer,
                 answered in the ACK (m=audio P, PCMA and telephone-event 101); RTP from P for
                 --after s; BYE.
  info-dtmf      UAC of an inbound call (SDP, m=audio P); RTP from P; --before s after the ACK one
                 INFO per item of --info (`relay:DIGIT:MS`: application/dtmf-relay with
                 Signal=DIGIT and Duration=MS; `dtmf:DIGIT`: application/dtmf), each sent once the
                 previous one was answered and --gap s have passed; --after s later BYE.
  everything     UAC of an inbound call combining what a carrier may use and LiveKit lacks: an
                 INVITE without SDP with Supported: timer, 100rel, Require: 100rel,
                 Session-Expires: 90;refresher=uac, Min-SE: 90 and an Allow with UPDATE, INFO and
                 PRACK; every reliable provisional PRACKed (as 100rel); the 200's offer answered in
                 the ACK (m=audio P); then for --hold s RTP from P, a bodiless UPDATE (Supported:
                 timer, Session-Expires: 90;refresher=uac) every --refresh s and an INFO
                 application/dtmf-relay (Signal=1, 2, ..., 9, 0, 1, ...; Duration=160) every
                 --dtmf-every s, counted from the ACK; BYE. Any answer but 200, or a BYE from the
                 other side before ours, is a failure. `notes` has the Session-Expires of the
                 INVITE's 200 and of each UPDATE's, and the digits sent.
With --update, port-move moves its port with an UPDATE (its SDP) instead of a re-INVITE.
With --rtcp N, call and info-dtmf also send N RTCP compounds (RFC 3550 6.4: an SR with one report
block, then an SDES with a CNAME), one a second from the answer on, from P+1 to the answer's port
+1; the SR's sender information is that of our RTP (NTP time now, the RTP timestamp and packet
and payload octet counts so far), its block is about the SSRC we last received RTP from with the
highest sequence number we received, and its loss, jitter, LSR and DLSR figures are made up,
non-zero and different in each packet (so that a capture of one can be told from another).

RTP is PCMA, 20 ms, 172-byte packets. SIP over UDP with the RFC 3261 timers A/E (500 ms doubling).
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import re
import select
import socket
import struct
import sys
import time

T1 = 0.5
BOUNDARY = "b1"
# ISUP IAM (ITU-T Q.763): message type 0x01, nature of connection 0x00, forward call indicators
# 0x20 0x00, calling party's category 0x0a, transmission medium 0x03, pointers, called party number
# (odd, international, ISDN plan) with BCD digits. Binary: 0x00, 0x0a (LF) and bytes >= 0x80.
ISUP_IAM = bytes([0x01, 0x00, 0x20, 0x00, 0x0A, 0x03, 0x02, 0x0A, 0x08, 0x83, 0x90, 0x89, 0x67,
                  0x45, 0x23, 0x01, 0x0F])
# ISUP ANM: message type 0x09, pointer to the optional part, backward call indicators (0x11, two
# octets that happen to be CR LF), connected number (0x21) with BCD digits, end of optional part.
ISUP_ANM = bytes([0x09, 0x01, 0x11, 0x02, 0x0D, 0x0A, 0x21, 0x05, 0x83, 0x10, 0x89, 0x67, 0x05,
                  0x00])
ISUP_TYPE = "application/ISUP;version=itu-t92+"


def rand_hex(n: int = 8) -> str:
    return "%0*x" % (n, random.getrandbits(4 * n))


class Msg:
    """A parsed SIP message: start line, headers (name, value) in order, body (by Content-Length)."""

    def __init__(self, data: bytes):
        self.raw = data
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.first = lines[0]
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip())
            elif ":" in line:
                n, v = line.split(":", 1)
                self.headers.append((n.strip(), v.strip()))
        cl = self.header("Content-Length", "l")
        self.body = rest[:int(cl)] if cl and cl.isdigit() else rest

    def header(self, *names: str) -> str | None:
        h = self.all(*names)
        return h[0] if h else None

    def all(self, *names: str) -> list[str]:
        want = {n.lower() for n in names}
        return [v for n, v in self.headers if n.lower() in want]

    @property
    def is_response(self) -> bool:
        return self.first.startswith("SIP/2.0 ")

    @property
    def code(self) -> int:
        return int(self.first.split()[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        return self.first.split()[0] if not self.is_response else ""

    @property
    def cseq(self) -> tuple[int, str]:
        n, m = (self.header("CSeq") or "0 X").split()
        return int(n), m.upper()

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID", "i")

    def sdp(self) -> bytes:
        """The SDP of the body: the body itself, or the application/sdp part of a multipart."""
        ctype = (self.header("Content-Type", "c") or "").lower()
        if ctype.startswith("application/sdp"):
            return self.body
        if ctype.startswith("multipart/"):
            m = re.search(r'boundary="?([^";]+)"?', self.header("Content-Type", "c") or "", re.I)
            if m:
                for hdrs, content in multipart_parts(self.body, m.group(1).encode()):
                    if hdrs.get("content-type", "").lower().startswith("application/sdp"):
                        return content
        return b""


def multipart_parts(body: bytes, boundary: bytes) -> list[tuple[dict, bytes]]:
    """The parts of a multipart body (RFC 2046 5.1.1): [(headers lower-cased, content)]; the CRLF
    before each delimiter belongs to the delimiter."""
    delim = b"--" + boundary
    starts = []
    pos = 0 if body.startswith(delim) else body.find(b"\r\n" + delim)
    while pos != -1:
        at = pos if body[pos:pos + len(delim)] == delim else pos + 2
        starts.append((pos, at + len(delim)))
        pos = body.find(b"\r\n" + delim, at + len(delim))
    parts = []
    for (_, after), (nxt, _) in zip(starts, starts[1:]):
        seg = body[after:nxt]
        if seg.startswith(b"--"):
            break
        seg = seg.split(b"\r\n", 1)[1] if b"\r\n" in seg else b""
        head, _, content = seg.partition(b"\r\n\r\n")
        hdrs = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                n, v = line.split(":", 1)
                hdrs[n.strip().lower()] = v.strip()
        parts.append((hdrs, content))
    return parts


def sdp_addr(sdp: bytes) -> tuple[str, int] | None:
    """The c= address and m=audio port of an SDP (media-level c= over session-level)."""
    sess = media = port = None
    in_audio = False
    for line in sdp.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            in_audio = line.startswith("m=audio ")
            if in_audio:
                port = int(line.split()[1].split("/")[0])
        elif line.startswith("c="):
            addr = line.split()[-1].split("/")[0]
            if in_audio:
                media = addr
            elif port is None:
                sess = addr
    if port is None or (media or sess) is None:
        return None
    return media or sess, port


def make_sdp(ip: str, port: int, version: int = 1) -> str:
    return ("v=0\r\n"
            f"o=carrier 4711 {version} IN IP4 {ip}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {ip}\r\n"
            "t=0 0\r\n"
            f"m=audio {port} RTP/AVP 8 101\r\n"
            "a=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\n"
            "a=ptime:20\r\n"
            "a=sendrecv\r\n")


def multipart_body(sdp: str, isup: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\n"
            "Content-Type: application/sdp\r\n"
            "\r\n").encode() + sdp.encode() + \
        (f"\r\n--{BOUNDARY}\r\n"
         f"Content-Type: {ISUP_TYPE}\r\n"
         "Content-Disposition: signal;handling=optional\r\n"
         "\r\n").encode() + isup + f"\r\n--{BOUNDARY}--\r\n".encode()


NTP_EPOCH = 2208988800                  # seconds from 1900 (NTP) to 1970 (Unix)


def rtcp_compound(ssrc: int, sender: dict | None, blocks: list[dict], cname: str) -> bytes:
    """An RTCP compound packet (RFC 3550 6.4): an SR (`sender`: ntp_sec, ntp_frac, rtp_timestamp,
    packets, octets) or, without sender, an RR, carrying `blocks` (source_ssrc, fraction_lost,
    packets_lost - 24-bit signed -, highest_seq_no, ia_jitter, lsr, dlsr), then an SDES with one
    chunk: our SSRC and its CNAME."""
    body = struct.pack("!I", ssrc)
    if sender is not None:
        body += struct.pack("!IIIII", sender["ntp_sec"], sender["ntp_frac"], sender["rtp_timestamp"],
                            sender["packets"], sender["octets"])
    for b in blocks:
        body += struct.pack("!IIIIII", b["source_ssrc"],
                            (b["fraction_lost"] << 24) | (b["packets_lost"] & 0xFFFFFF),
                            b["highest_seq_no"], b["ia_jitter"], b["lsr"], b["dlsr"])
    pt = 200 if sender is not None else 201
    report = struct.pack("!BBH", 0x80 | len(blocks), pt, len(body) // 4) + body
    name = cname.encode()
    chunk = struct.pack("!IBB", ssrc, 1, len(name)) + name + b"\0"     # CNAME, end of items
    chunk += b"\0" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return report + sdes


class Rtcp:
    """The RTCP we send with --rtcp: `left` compounds from local `port` to `dst`, one every
    second."""

    def __init__(self, port: int, dst: tuple[str, int], left: int, rtp_port: int):
        self.port, self.dst, self.left, self.rtp_port = port, dst, left, rtp_port
        self.next = time.monotonic() + 1.0


class Rtp:
    """One RTP flow we send: from local `port` to `dst`, PCMA every 20 ms."""

    def __init__(self, port: int, dst: tuple[str, int], ssrc: int):
        self.port, self.dst, self.ssrc = port, dst, ssrc
        self.seq = 0
        self.next = time.monotonic()


class Peer:
    def __init__(self, ip: str, sip_port: int, rtp_ports: list[int]):
        self.ip, self.sip_port = ip, sip_port
        self.sip = self._udp(ip, sip_port)
        self.rtp = {p: self._udp(ip, p) for p in rtp_ports}
        self.by_sock = {s: p for p, s in self.rtp.items()}
        self.sending: Rtp | None = None
        self.rtcp: Rtcp | None = None           # what --rtcp still has to send
        self.rtcp_ports: set[int] = set()       # our sockets that take RTCP (not RTP)
        self.echo = False
        self.inbox: list[tuple[Msg, tuple]] = []
        self.log_sip: list[dict] = []
        self.rtp_tx: list[list] = []
        self.rtp_rx: list[list] = []
        self.rtcp_tx: list[dict] = []
        self.rtcp_rx: list[list] = []
        self.marks: dict[str, float] = {}
        self.notes: dict = {}                   # what a flow recorded for the test (JSON)
        self.acks: dict[tuple, tuple[bytes, tuple]] = {}   # (call-id, cseq) of a 2xx -> our ACK
        self.answers: dict[tuple, tuple[bytes, tuple]] = {}  # (call-id, cseq) -> our last response

    @staticmethod
    def _udp(ip: str, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        return s

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def send_sip(self, data: bytes, dst: tuple) -> None:
        self.sip.sendto(data, dst)
        self.log_sip.append({"t": time.time(), "dir": "sent", "peer": f"{dst[0]}:{dst[1]}",
                             "b64": base64.b64encode(data).decode()})

    # The loop: SIP in, RTP in (echoed when asked), RTP and RTCP out on time.
    def poll(self, until: float) -> None:
        """Serve sockets until monotonic time `until`."""
        socks = [self.sip] + list(self.rtp.values())
        while True:
            now = time.monotonic()
            if self.sending and now >= self.sending.next:
                self._send_rtp()
                continue
            if self.rtcp and self.rtcp.left and now >= self.rtcp.next:
                self._send_rtcp()
                continue
            if now >= until:
                return
            wake = until if not self.sending else min(until, self.sending.next)
            if self.rtcp and self.rtcp.left:
                wake = min(wake, self.rtcp.next)
            ready, _, _ = select.select(socks, [], [], max(0.0, wake - now))
            for s in ready:
                try:
                    data, src = s.recvfrom(65535)
                except OSError:
                    continue
                if s is self.sip:
                    self._on_sip(data, src)
                else:
                    self._on_rtp(self.by_sock[s], data, src)

    def _send_rtp(self) -> None:
        r = self.sending
        pkt = struct.pack("!BBHII", 0x80, 8, r.seq & 0xFFFF, (r.seq * 160) & 0xFFFFFFFF, r.ssrc) \
            + bytes([0xD5]) * 160
        try:
            self.rtp[r.port].sendto(pkt, r.dst)
        except OSError:
            pass
        self.rtp_tx.append([time.time(), r.port, f"{r.dst[0]}:{r.dst[1]}", r.ssrc, r.seq & 0xFFFF])
        r.seq += 1
        r.next += 0.02

    def _send_rtcp(self) -> None:
        c, r = self.rtcp, self.sending
        c.left -= 1
        c.next += 1.0
        i = len(self.rtcp_tx) + 1
        ssrc = r.ssrc if r else 0x00C0FFEE
        packets = r.seq if r else 0
        ntp = time.time() + NTP_EPOCH
        sender = {"ntp_sec": int(ntp) & 0xFFFFFFFF, "ntp_frac": int((ntp % 1) * 2 ** 32) & 0xFFFFFFFF,
                  "rtp_timestamp": (packets * 160) & 0xFFFFFFFF, "packets": packets,
                  "octets": 160 * packets}
        rx = [x for x in self.rtp_rx if x[1] == c.rtp_port]
        block = {"source_ssrc": rx[-1][3] if rx else 0,
                 "fraction_lost": (16 * i + 1) & 0xFF, "packets_lost": 100 * i + 7,
                 "highest_seq_no": max((x[4] for x in rx), default=0),
                 "ia_jitter": 160 + i, "lsr": 0x12340000 + i, "dlsr": 0x8000 * i}
        cname = f"carrier@{self.ip}"
        pkt = rtcp_compound(ssrc, sender, [block], cname)
        try:
            self.rtp[c.port].sendto(pkt, c.dst)
        except OSError:
            pass
        self.rtcp_tx.append({"t": time.time(), "port": c.port, "dst": f"{c.dst[0]}:{c.dst[1]}",
                             "type": 200, "ssrc": ssrc, "sender_information": sender,
                             "report_blocks": [block], "sdes_ssrc": ssrc, "cname": cname,
                             "hex": pkt.hex()})

    def _on_rtp(self, port: int, data: bytes, src: tuple) -> None:
        if port in self.rtcp_ports:
            ssrc = struct.unpack("!I", data[4:8])[0] if len(data) >= 8 else None
            self.rtcp_rx.append([time.time(), port, f"{src[0]}:{src[1]}",
                                 data[1] if len(data) > 1 else None, ssrc, data.hex()])
            return
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        seq, = struct.unpack("!H", data[2:4])
        ssrc, = struct.unpack("!I", data[8:12])
        self.rtp_rx.append([time.time(), port, f"{src[0]}:{src[1]}", ssrc, seq])
        if self.echo:
            try:
                self.rtp[port].sendto(data, src)
            except OSError:
                pass

    def _on_sip(self, data: bytes, src: tuple) -> None:
        self.log_sip.append({"t": time.time(), "dir": "received", "peer": f"{src[0]}:{src[1]}",
                             "b64": base64.b64encode(data).decode()})
        try:
            m = Msg(data)
        except (ValueError, IndexError):
            return
        key = (m.call_id, m.cseq[0])
        if m.is_response and m.code >= 200 and m.cseq[1] == "INVITE" and key in self.acks:
            self.sip.sendto(*self.acks[key])     # a retransmitted 2xx: our ACK again
            return
        if not m.is_response and m.method != "ACK" and (key + (m.method,)) in self.answers:
            self.sip.sendto(*self.answers[key + (m.method,)])   # a retransmitted request
            return
        if not m.is_response and m.method in ("OPTIONS", "BYE"):
            self.respond(m, src, 200, "OK")     # answered at once; still in the inbox for the flow
        self.inbox.append((m, src))

    def wait(self, pred, timeout: float) -> tuple[Msg, tuple] | None:
        """The first message (in the inbox or arriving within `timeout` s) that pred() accepts,
        taken out of the inbox."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (m, src) in enumerate(self.inbox):
                if pred(m):
                    del self.inbox[i]
                    return m, src
            if time.monotonic() >= deadline:
                return None
            self.poll(min(deadline, time.monotonic() + 0.01))

    def respond(self, req: Msg, src: tuple, code: int, reason: str, to_tag: str | None = None,
                extra: list[str] = (), body: bytes = b"", ctype: str | None = None) -> bytes:
        h = [f"SIP/2.0 {code} {reason}"]
        h += [f"Via: {v}" for v in req.all("Via", "v")]
        h.append(f"From: {req.header('From', 'f')}")
        to = req.header("To", "t") or ""
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        h.append(f"To: {to}")
        h.append(f"Call-ID: {req.call_id}")
        h.append(f"CSeq: {req.header('CSeq')}")
        h += list(extra)
        if ctype:
            h.append(f"Content-Type: {ctype}")
        h.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(h) + "\r\n\r\n").encode() + body
        self.send_sip(data, src)
        self.answers[(req.call_id, req.cseq[0], req.method)] = (data, src)
        return data

    def transact(self, data: bytes, dst: tuple, call_id: str, cseq: int, timeout: float = 16.0) -> Msg | None:
        """Send a request, retransmit it (timers A/E) until a response arrives, wait for the final
        response (timeout s); returns it."""
        self.send_sip(data, dst)
        interval, deadline = T1, time.monotonic() + timeout
        resend = time.monotonic() + interval
        provisional = False
        while time.monotonic() < deadline:
            got = self.wait(lambda m: m.is_response and m.call_id == call_id and m.cseq[0] == cseq,
                            max(0.0, min(resend, deadline) - time.monotonic()))
            if got is None:
                if not provisional and time.monotonic() >= resend:
                    self.sip.sendto(data, dst)
                    interval = min(interval * 2, 4.0)
                    resend = time.monotonic() + interval
                continue
            m, _ = got
            if m.code >= 200:
                return m
            provisional = True
            resend = deadline
        return None


class Dialog:
    """The UAC's view of one call: ids, tags, the remote target and route set once answered."""

    def __init__(self, peer: Peer, to: tuple[str, int], number: str):
        self.peer, self.to, self.number = peer, to, number
        self.call_id = f"{rand_hex(12)}-cf@{peer.ip}"
        self.tag = rand_hex(8)
        self.cseq = 0
        self.remote_tag = ""
        self.target = f"sip:{number}@{to[0]}:{to[1]}"
        self.routes: list[str] = []

    def request(self, method: str, body: bytes = b"", ctype: str | None = None,
                extra: list[str] = (), cseq: int | None = None) -> tuple[bytes, int]:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        h = [f"{method} {self.target} SIP/2.0",
             f"Via: SIP/2.0/UDP {self.peer.ip}:{self.peer.sip_port};branch=z9hG4bK{rand_hex(12)};rport",
             "Max-Forwards: 70",
             f"From: <sip:carrier@{self.peer.ip}>;tag={self.tag}",
             f"To: <sip:{self.number}@{self.to[0]}:{self.to[1]}>"
             + (f";tag={self.remote_tag}" if self.remote_tag else ""),
             f"Call-ID: {self.call_id}",
             f"CSeq: {cseq} {method}",
             f"Contact: <sip:carrier@{self.peer.ip}:{self.peer.sip_port}>"]
        h += [f"Route: {r}" for r in self.routes]
        h += list(extra)
        if ctype:
            h.append(f"Content-Type: {ctype}")
        h.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(h) + "\r\n\r\n").encode() + body, cseq

    def next_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route's host, else the remote target's (the lab
        only has the SBC in between)."""
        uri = self.routes[0] if self.routes else self.target
        m = re.search(r"sips?:(?:[^@>;]+@)?([0-9.]+)(?::(\d+))?", uri)
        return (m.group(1), int(m.group(2) or 5060)) if m else self.to

    def answered(self, ok: Msg) -> None:
        to = ok.header("To", "t") or ""
        m = re.search(r";\s*tag=([^;>\s]+)", to)
        self.remote_tag = m.group(1) if m else ""
        contact = ok.header("Contact", "m") or ""
        m = re.search(r"<([^>]+)>", contact)
        if m:
            self.target = m.group(1)
        rr = []
        for v in ok.all("Record-Route"):
            rr += [x.strip() for x in re.findall(r"<[^>]+>[^,]*", v)]
        self.routes = list(reversed(rr))

    def invite(self, body: bytes, ctype: str, extra: list[str] = ()) -> Msg | None:
        data, cseq = self.request("INVITE", body, ctype, extra)
        final = self.peer.transact(data, self.next_hop() if self.remote_tag else self.to,
                                   self.call_id, cseq)
        if final is not None and 200 <= final.code < 300:
            if not self.remote_tag:
                self.answered(final)
            ack, _ = self.request("ACK", cseq=cseq)
            hop = self.next_hop()
            self.peer.send_sip(ack, hop)
            self.peer.acks[(self.call_id, cseq)] = (ack, hop)
        return final

    def bye(self) -> Msg | None:
        data, cseq = self.request("BYE")
        return self.peer.transact(data, self.next_hop(), self.call_id, cseq)


def flow_port_move(a, peer: Peer) -> None:
    p, q = a.port, a.port + 2
    dlg = Dialog(peer, hostport(a.to), a.number)
    peer.mark("invite")
    ok = dlg.invite(make_sdp(a.ip, p).encode(), "application/sdp")
    if ok is None or ok.code != 200:
        raise Failure(f"INVITE: final response {ok.first if ok else 'none'}")
    peer.mark("answered")
    media = sdp_addr(ok.sdp())
    if media is None:
        raise Failure("the 200 to the INVITE has no usable SDP")
    peer.sending = Rtp(p, media, 0x00C0FFEE)
    peer.poll(time.monotonic() + a.before)
    peer.mark("reinvite")
    if a.update:
        data, cseq = dlg.request("UPDATE", make_sdp(a.ip, q, 2).encode(), "application/sdp")
        ok2 = peer.transact(data, dlg.next_hop(), dlg.call_id, cseq)
    else:
        ok2 = dlg.invite(make_sdp(a.ip, q, 2).encode(), "application/sdp")
    peer.mark("reinvite_answered")
    if ok2 is None or ok2.code != 200:
        what = "UPDATE" if a.update else "re-INVITE"
        raise Failure(f"{what}: final response {ok2.first if ok2 else 'none'}")
    media2 = sdp_addr(ok2.sdp()) or media
    peer.sending = Rtp(q, media2, 0x00C0FFEF)
    peer.poll(time.monotonic() + a.after)
    peer.sending = None
    peer.mark("bye")
    fin = dlg.bye()
    if fin is None or fin.code != 200:
        raise Failure(f"BYE: final response {fin.first if fin else 'none'}")
    peer.poll(time.monotonic() + 0.3)


def flow_multipart_uac(a, peer: Peer) -> None:
    dlg = Dialog(peer, hostport(a.to), a.number)
    peer.mark("invite")
    body = multipart_body(make_sdp(a.ip, a.port), ISUP_IAM)
    ok = dlg.invite(body, f"multipart/mixed;boundary={BOUNDARY}", ["MIME-Version: 1.0"])
    if ok is None or ok.code != 200:
        raise Failure(f"INVITE: final response {ok.first if ok else 'none'}")
    peer.mark("answered")
    media = sdp_addr(ok.sdp())
    if media is None:
        raise Failure("the 200 to the INVITE has no usable SDP")
    peer.sending = Rtp(a.port, media, 0x00C0FFEE)
    peer.poll(time.monotonic() + a.after)
    peer.sending = None
    peer.mark("bye")
    fin = dlg.bye()
    if fin is None or fin.code != 200:
        raise Failure(f"BYE: final response {fin.first if fin else 'none'}")
    peer.poll(time.monotonic() + 0.3)


def flow_multipart_uas(a, peer: Peer) -> None:
    got = peer.wait(lambda m: not m.is_response and m.method == "INVITE", a.wait)
    if got is None:
        raise Failure(f"no INVITE within {a.wait} s")
    inv, src = got
    peer.mark("invite")
    tag = rand_hex(8)
    peer.respond(inv, src, 100, "Trying")
    rr = [f"Record-Route: {v}" for v in inv.all("Record-Route")]
    contact = [f"Contact: <sip:carrier@{a.ip}:{peer.sip_port}>", "MIME-Version: 1.0"]
    body = multipart_body(make_sdp(a.ip, a.port), ISUP_ANM)
    ctype = f"multipart/mixed;boundary={BOUNDARY}"
    peer.echo = True
    ok = peer.respond(inv, src, 200, "OK", tag, rr + contact, body, ctype)
    peer.mark("answered")
    interval, resend = T1, time.monotonic() + T1
    deadline = time.monotonic() + 32 * T1
    while True:                                 # the 2xx is retransmitted until the ACK
        ack = peer.wait(lambda m: not m.is_response and m.method == "ACK"
                        and m.call_id == inv.call_id, max(0.0, min(resend, deadline) - time.monotonic()))
        if ack is not None:
            break
        if time.monotonic() >= deadline:
            raise Failure("no ACK for the 200")
        peer.sip.sendto(ok, src)
        interval = min(interval * 2, 4.0)
        resend = time.monotonic() + interval
    peer.mark("ack")
    bye = peer.wait(lambda m: not m.is_response and m.method == "BYE" and m.call_id == inv.call_id,
                    a.wait)
    if bye is None:
        raise Failure(f"no BYE within {a.wait} s of the ACK")
    peer.mark("bye")
    peer.poll(time.monotonic() + 0.2)


def start_call(a, peer: Peer, extra: list[str] = ()) -> tuple[Dialog, tuple[str, int]]:
    """INVITE (SDP m=audio a.port, `extra` headers) to a.to, the 200 ACKed; RTP from a.port to the
    answer's address. Returns the dialog and that address."""
    dlg = Dialog(peer, hostport(a.to), a.number)
    peer.mark("invite")
    ok = dlg.invite(make_sdp(a.ip, a.port).encode(), "application/sdp", extra)
    if ok is None or ok.code != 200:
        raise Failure(f"INVITE: final response {ok.first if ok else 'none'}")
    peer.mark("answered")
    media = sdp_addr(ok.sdp())
    if media is None:
        raise Failure("the 200 to the INVITE has no usable SDP")
    peer.sending = Rtp(a.port, media, 0x00C0FFEE)
    if a.rtcp:
        peer.rtcp = Rtcp(a.port + 1, (media[0], media[1] + 1), a.rtcp, a.port)
    return dlg, media


def end_call(peer: Peer, dlg: Dialog) -> None:
    peer.sending = None
    peer.rtcp = None
    peer.mark("bye")
    fin = dlg.bye()
    if fin is None or fin.code != 200:
        raise Failure(f"BYE: final response {fin.first if fin else 'none'}")
    peer.poll(time.monotonic() + 0.3)


def invite_reliably(a, peer: Peer, dlg: Dialog, body: bytes, ctype: str | None,
                    extra: list[str]) -> tuple[Msg, int]:
    """Send the INVITE (resent on timers A/E until a provisional), PRACK every reliable provisional
    (Require: 100rel, RSeq) with RAck: rseq cseq INVITE - the first one a.prack_delay s after it
    arrived, the others at once - each PRACK answered 200 (else Failure); returns the final response
    to the INVITE (not ACKed yet) and the INVITE's CSeq number."""
    data, cseq = dlg.request("INVITE", body, ctype, extra)
    peer.mark("invite")
    peer.send_sip(data, dlg.to)
    interval, resend = T1, time.monotonic() + T1
    provisional = False
    due: dict[int, tuple[float, Msg]] = {}       # RSeq -> (when to PRACK, the provisional)
    pracked: set[int] = set()
    final = None
    deadline = time.monotonic() + 20
    while final is None:
        now = time.monotonic()
        if now >= deadline:
            raise Failure("no final response to the INVITE within 20 s")
        for rseq, (when, prov) in sorted(due.items()):
            if now < when:
                continue
            del due[rseq]
            pracked.add(rseq)
            dlg.answered(prov)                   # the early dialog: To tag, target, route set
            pdata, pcseq = dlg.request("PRACK", extra=[f"RAck: {rseq} {cseq} INVITE"])
            peer.mark(f"prack{rseq}")
            r = peer.transact(pdata, dlg.next_hop(), dlg.call_id, pcseq, timeout=5.0)
            peer.mark(f"prack{rseq}_answered")
            if r is None or r.code != 200:
                raise Failure(f"PRACK for RSeq {rseq}: final response {r.first if r else 'none'}")
        wake = min([deadline] + [w for w, _ in due.values()] + ([resend] if not provisional else []))
        got = peer.wait(lambda m: m.is_response and m.call_id == dlg.call_id and m.cseq == (cseq, "INVITE"),
                        max(0.0, wake - time.monotonic()))
        if got is None:
            if not provisional and time.monotonic() >= resend:
                peer.sip.sendto(data, dlg.to)
                interval = min(interval * 2, 4.0)
                resend = time.monotonic() + interval
            continue
        m, _ = got
        if m.code >= 200:
            final = m
            break
        provisional = True
        rseq = m.header("RSeq")
        reliable = "100rel" in [t.strip().lower() for v in m.all("Require") for t in v.split(",")]
        if reliable and rseq and rseq.strip().isdigit():
            n = int(rseq)
            if n not in pracked and n not in due:
                delay = a.prack_delay if not pracked and not due else 0.0
                due[n] = (time.monotonic() + delay, m)
    return final, cseq


def ack_2xx(peer: Peer, dlg: Dialog, final: Msg, cseq: int, body: bytes = b"") -> None:
    """Take the dialog from the 2xx `final` and ACK it (with `body`, an SDP answer, if any); the
    ACK is sent again for a retransmitted 2xx."""
    dlg.answered(final)
    ack, _ = dlg.request("ACK", body, "application/sdp" if body else None, cseq=cseq)
    hop = dlg.next_hop()
    peer.send_sip(ack, hop)
    peer.acks[(dlg.call_id, cseq)] = (ack, hop)


def flow_100rel(a, peer: Peer) -> None:
    dlg = Dialog(peer, hostport(a.to), a.number)
    final, cseq = invite_reliably(a, peer, dlg, make_sdp(a.ip, a.port).encode(), "application/sdp",
                                  ["Require: 100rel", "Supported: 100rel"])
    if final.code != 200:
        raise Failure(f"INVITE: final response {final.first}")
    peer.mark("answered")
    ack_2xx(peer, dlg, final, cseq)
    media = sdp_addr(final.sdp())
    if media is None:
        raise Failure("the 200 to the INVITE has no usable SDP")
    peer.sending = Rtp(a.port, media, 0x00C0FFEE)
    peer.poll(time.monotonic() + a.after)
    end_call(peer, dlg)


def flow_delayed_offer(a, peer: Peer) -> None:
    dlg = Dialog(peer, hostport(a.to), a.number)
    data, cseq = dlg.request("INVITE")
    peer.mark("invite")
    final = peer.transact(data, dlg.to, dlg.call_id, cseq)
    if final is None or final.code != 200:
        raise Failure(f"INVITE without SDP: final response {final.first if final else 'none'}")
    peer.mark("answered")
    dlg.answered(final)
    media = sdp_addr(final.sdp())
    # The answer in the ACK (a bodiless one when there was no offer to answer).
    body = make_sdp(a.ip, a.port).encode() if media else b""
    ack, _ = dlg.request("ACK", body, "application/sdp" if body else None, cseq=cseq)
    hop = dlg.next_hop()
    peer.send_sip(ack, hop)
    peer.acks[(dlg.call_id, cseq)] = (ack, hop)
    peer.mark("ack")
    if media is None:
        end_call(peer, dlg)
        raise Failure("the 200 to the INVITE without SDP carries no offer")
    peer.sending = Rtp(a.port, media, 0x00C0FFEE)
    peer.poll(time.monotonic() + a.after)
    end_call(peer, dlg)


def flow_call(a, peer: Peer) -> None:
    dlg, _ = start_call(a, peer)
    peer.poll(time.monotonic() + a.after)
    end_call(peer, dlg)


def info_bodies(spec: str) -> list[tuple[str, bytes]]:
    """--info items: `relay:DIGIT:MS` (application/dtmf-relay) or `dtmf:DIGIT` (application/dtmf)."""
    out = []
    for item in (x for x in spec.split(",") if x):
        kind, _, rest = item.partition(":")
        if kind == "relay":
            digit, _, ms = rest.partition(":")
            out.append(("application/dtmf-relay", f"Signal={digit}\r\nDuration={ms or 250}\r\n".encode()))
        elif kind == "dtmf":
            out.append(("application/dtmf", rest.encode()))
        else:
            raise SystemExit(f"--info: unknown item {item!r}")
    return out


def flow_info_dtmf(a, peer: Peer) -> None:
    dlg, _ = start_call(a, peer)
    peer.poll(time.monotonic() + a.before)
    for i, (ctype, body) in enumerate(info_bodies(a.info)):
        if i:
            peer.poll(time.monotonic() + a.gap)
        data, cseq = dlg.request("INFO", body, ctype)
        peer.mark(f"info{i}")
        r = peer.transact(data, dlg.next_hop(), dlg.call_id, cseq, timeout=5.0)
        peer.mark(f"info{i}_answered")
        if r is None:
            raise Failure(f"INFO {i} ({ctype}): no final response")
    peer.poll(time.monotonic() + a.after)
    end_call(peer, dlg)


EVERYTHING_HEADERS = ["Supported: timer, 100rel", "Require: 100rel",
                      "Session-Expires: 90;refresher=uac", "Min-SE: 90",
                      "Allow: INVITE, ACK, BYE, CANCEL, UPDATE, INFO, PRACK"]
DIGITS = "1234567890"


def ended_by_them(peer: Peer, dlg: Dialog) -> None:
    """Failure if the other side ended the call: a BYE of our dialog in the inbox (Peer answered it
    200 already)."""
    for m, _ in peer.inbox:
        if not m.is_response and m.method == "BYE" and m.call_id == dlg.call_id:
            raise Failure(f"the SBC sent BYE (CSeq {m.header('CSeq')}, Reason: {m.header('Reason')}) "
                          f"{time.time() - peer.marks.get('ack', time.time()):.1f} s after our ACK")


def flow_everything(a, peer: Peer) -> None:
    dlg = Dialog(peer, hostport(a.to), a.number)
    final, cseq = invite_reliably(a, peer, dlg, b"", None, EVERYTHING_HEADERS)
    if final.code != 200:
        raise Failure(f"INVITE without SDP: final response {final.first}")
    peer.mark("answered")
    media = sdp_addr(final.sdp())
    ack_2xx(peer, dlg, final, cseq, make_sdp(a.ip, a.port).encode() if media else b"")
    peer.mark("ack")
    peer.notes["invite_session_expires"] = final.header("Session-Expires", "x")
    if media is None:
        end_call(peer, dlg)
        raise Failure("the 200 to the INVITE without SDP carries no offer")
    peer.sending = Rtp(a.port, media, 0x00C0FFEE)
    t0 = time.monotonic()
    # The refreshes and the digits on one timeline from the ACK (a refresh first when both are due).
    steps = sorted([(k * a.refresh, 0, "update", k - 1)
                    for k in range(1, int(a.hold / a.refresh) + 1) if k * a.refresh < a.hold]
                   + [(k * a.dtmf_every, 1, "info", k - 1)
                      for k in range(1, int(a.hold / a.dtmf_every) + 1) if k * a.dtmf_every < a.hold])
    peer.notes.update(update_session_expires=[], digits=[])
    try:
        for at, _, kind, i in steps + [(a.hold, 2, "end", 0)]:
            while time.monotonic() < t0 + at:
                peer.poll(min(t0 + at, time.monotonic() + 0.5))
                ended_by_them(peer, dlg)
            if kind == "end":
                break
            if kind == "update":
                data, n = dlg.request("UPDATE", extra=["Supported: timer",
                                                       "Session-Expires: 90;refresher=uac"])
            else:
                digit = DIGITS[i % len(DIGITS)]
                data, n = dlg.request("INFO", f"Signal={digit}\r\nDuration=160\r\n".encode(),
                                      "application/dtmf-relay")
            peer.mark(f"{kind}{i}")
            r = peer.transact(data, dlg.next_hop(), dlg.call_id, n, timeout=8.0)
            peer.mark(f"{kind}{i}_answered")
            what = f"{kind.upper()} {i + 1} (CSeq {n}, {time.monotonic() - t0:.1f} s after the ACK)"
            if r is None or r.code != 200:
                raise Failure(f"{what}: final response {r.first if r else 'none'}")
            if kind == "update":
                peer.notes["update_session_expires"].append(r.header("Session-Expires", "x"))
            else:
                peer.notes["digits"].append(digit)
            ended_by_them(peer, dlg)
    except Failure:
        try:                                    # leave no call behind (its BYE may well get 481)
            end_call(peer, dlg)
        except Failure:
            pass
        raise
    end_call(peer, dlg)


class Failure(Exception):
    pass


def hostport(s: str) -> tuple[str, int]:
    h, _, p = s.rpartition(":")
    return h, int(p)


FLOWS = {"call": flow_call, "port-move": flow_port_move, "multipart-uac": flow_multipart_uac,
         "multipart-uas": flow_multipart_uas, "100rel": flow_100rel,
         "delayed-offer": flow_delayed_offer, "info-dtmf": flow_info_dtmf,
         "everything": flow_everything}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("flow", choices=sorted(FLOWS))
    ap.add_argument("--ip", required=True, help="our address (SIP on --sip-port, RTP on --port)")
    ap.add_argument("--sip-port", type=int, default=5060)
    ap.add_argument("--port", type=int, default=6000, help="our RTP port P (port-move also uses P+2)")
    ap.add_argument("--to", default="10.0.0.100:5060", help="where a UAC sends its INVITE")
    ap.add_argument("--number", default="919876543210")
    ap.add_argument("--before", type=float, default=1.0, help="s of RTP before the re-INVITE")
    ap.add_argument("--after", type=float, default=2.0, help="s of RTP after the (re-)INVITE's 200")
    ap.add_argument("--wait", type=float, default=15.0, help="UAS: s to wait for the INVITE, the BYE")
    ap.add_argument("--update", action="store_true", help="port-move: move with UPDATE, not re-INVITE")
    ap.add_argument("--prack-delay", type=float, default=0.0,
                    help="100rel, everything: s before the PRACK of the first reliable provisional")
    ap.add_argument("--info", default="relay:1:160", help="info-dtmf: the INFOs, comma-separated")
    ap.add_argument("--gap", type=float, default=0.3, help="info-dtmf: s between INFOs")
    ap.add_argument("--hold", type=float, default=100.0, help="everything: s from the ACK to the BYE")
    ap.add_argument("--refresh", type=float, default=30.0, help="everything: s between UPDATE refreshes")
    ap.add_argument("--dtmf-every", type=float, default=20.0, help="everything: s between INFO digits")
    ap.add_argument("--rtcp", type=int, default=0,
                    help="call, info-dtmf: RTCP compounds (SR + SDES) to send from P+1, one a second")
    a = ap.parse_args()
    if a.rtcp and a.flow not in ("call", "info-dtmf"):
        ap.error("--rtcp: only the flows call and info-dtmf send RTCP")
    ports = [a.port, a.port + 2] if a.flow == "port-move" else [a.port]
    if a.rtcp:
        ports.append(a.port + 1)
    peer = Peer(a.ip, a.sip_port, ports)
    if a.rtcp:
        peer.rtcp_ports.add(a.port + 1)
    print(json.dumps({"ready": True}), flush=True)
    err = None
    try:
        FLOWS[a.flow](a, peer)
    except Failure as e:
        err = str(e)
    print(json.dumps({"flow": a.flow, "error": err, "marks": peer.marks, "notes": peer.notes,
                      "sip": peer.log_sip, "rtp_tx": peer.rtp_tx, "rtp_rx": peer.rtp_rx,
                      "rtcp_tx": peer.rtcp_tx, "rtcp_rx": peer.rtcp_rx}), flush=True)
    return 0 if err is None else 1


if __name__ == "__main__":
    sys.exit(main())
