"""PROTOS c07-sip against the SBC (issue 15): the University of Oulu's 2002 suite of 4,527
malformed INVITEs, each a valid INVITE with one field replaced by an anomaly, on either backend.
Against the old stack (Kamailio) it left good calls refused for about a minute, and a 64,570-byte
INVITE of the suite was accepted and forwarded to the gateway. The original Java jar is not
available offline: the generator below (protos_cases) rebuilds the suite's scheme.

  protos_c07_sip_invites
        The template: an INVITE from the carrier 10.0.1.10:5060 to 10.0.0.100:5060 for the lab's
        number 919876543210 (base provisioning: no tenant, gateway group 1 = 203.0.113.10) with
        an SDP offer and an X-Protos-Case header naming the case (how the gateway's INVITEs are
        traced back). One slot at a time is replaced, 38 slots: the Request-URI's scheme, user,
        host and port; the SIP-version; the Via's protocol, host, port and branch; From's and
        To's display name, URI and tag (the template's To has none: that slot adds ";tag=");
        Call-ID; the CSeq number and method; Contact; Max-Forwards; Content-Type;
        Content-Length; the SDP's v, o, s, c, t, m and a lines; the names of the nine headers
        above. The anomalies of each slot (124):
          overflow   128, 256, 512, 1,024, 2,048, 16,384 and 65,536 repetitions of each of
                     a 1 SP % < " 0xFF (49); no INVITE with 65,536 of them fits one UDP
                     datagram: those 266 are capped at the largest that does, 65,507 bytes
          boundary   'a' repeated until the INVITE is exactly [sip] max_message bytes, and one
                     byte more (2)
          format     %s x 10, %n x 10, %x x 8, %p x 4, %.1024d, %99999999999s, %s x 64,
                     %08x. x 32 (8)
          integer    0, -1, 1, +1, 2^31-1, 2^31, -2^31, 2^32-1, 2^32, 2^63-1, 2^63, 2^64, 64 and
                     1,024 nines, 00, 070 after 31 zeros, 0x7fffffff, 1.5, 1e9, 1 and 100 zeros (20)
          inject     22 sequences, as the whole value and in its middle (44): CRLF, lone CR, lone
                     LF, CRLF CRLF, a fold (CRLF SP), CRLF + a Via, CRLF + Content-Length: 0, NUL,
                     16 NULs, ANSI clear screen, ANSI colour, a terminal-title escape, TAB, DEL,
                     UTF-8 Latin and CJK text, U+202E, invalid UTF-8 (C0 AF, C0 80, ED A0 80,
                     F8 88 80 80 80, FF FE FD)
          empty      the slot empty (1)
        and per header (the nine) and per SDP line: the whole value empty, the line missing, the
        line twice (48); Content-Length lies: +1, +100, twice the body, 65535, 2^32, one byte
        short, half, 0, -1, minus the body (10). 4,770 cases: overflow 1,862, inject 1,672,
        integer 760, format 304, boundary 76, structure 48, empty 38, lie 10; 124 per slot (134
        for Content-Length, 127 per SDP line); 570 over 16,384 bytes, 1,178 IP-fragmented. Each
        has its own Call-ID, branch and From tag (protos-<n>) unless that is the slot mutated.
        A stdlib sender (SENDER, written to the test's directory, run in ns carrier) sends them
        from 10.0.1.10:5060 at 500/s (9.5 s) and records every datagram that comes back, put to
        a case by the protos-<n> most of its Call-ID, Via branch and From tag name (the few that
        name none - a Via cut short by an injected blank line - to the latest case sent with
        that Via line). As a UA would, it ACKs each non-2xx final answer to an INVITE (not the
        stateless 400/416/501/505 for one that does not parse) and listens 2.5 s after the last
        case. The gateway 203.0.113.10 runs one sipp UAS through the suite and the calls after
        it (GATEWAY_UAS, written to the test's directory): uas_simple for a good call, 486 Busy
        Here for an INVITE of the suite (X-Protos-Case), so nothing of the suite is ever answered
        200, even when the SBC sends it late. g0 is captured: every INVITE that reaches the
        gateway, reassembled, its size and its case.
        Fatal at once: the SBC dies (the cases sent in the second before are saved under
        crash_candidates/) or GET /api/v1/status does not answer after the suite (the cases
        sent around the SBC's last answer under hang_candidates/). Asserted after the suite,
        failures listed together: the sender sent every case; the carrier is not in
        GET /api/v1/bans and sip.dropped_banned/scanner/flood/too_many_sources stay put (carriers
        are trusted by the guard); no case is answered 2xx; no case over max_message (16,384)
        reached the gateway, nor any INVITE over max_message + 1,024 (what the SBC's own headers
        may add); every INVITE at the gateway has one Content-Length, plain digits, equal to its
        body; every INVITE at the gateway is valid SIP where a parser trips (wire_problems: no
        NUL, no bare CR or LF, no other control character in the headers, a Request-URI without
        whitespace, controls, non-ASCII or <>", From/To/Contact one name-addr); every case with a
        Via up to max_message (on DPDK: unfragmented) is answered or reaches the gateway;
        sip.dropped_too_large +570 exactly on sockets (on DPDK at most that, with
        io.dropped_truncated making up the rest), sip.rx_messages up by at least the cases that
        got past the guard, sip.parse_errors up, by no more than rx_messages; 100 calls from the
        carrier at 20/s right after the suite (sipp uac_simple) ALL complete and the gateway gets
        their 100 INVITEs; sip.dialogs and calls_up are 0 by 40 s after the suite began (waited
        for: nothing of the suite reaches the next test). Offending cases are saved with the
        bytes the gateway got (forwarded_too_large/, forwarded_amplified/, forwarded_malformed/
        and forwarded_malformed.txt, bad_content_length_at_gateway/, silently_dropped/,
        answered_2xx/; each .txt says how to replay it with lab/sipsend.py). Printed: cases sent,
        cases per final status class, provisional only, unanswered, the commonest answers, what
        reached the gateway per slot and size, the counters.
        On DPDK in this lab fragmented UDP (SIP over about 1,500 bytes) arrives truncated: the
        net_af_packet vdev's kernel defrag puts the reassembled datagram in a 2,048-byte ring
        frame and the poll loop drops it (io.dropped_truncated; see test_flood.py). The cases
        over about 2 KB never reach the guard there; the test prints how many and compares
        with the io counters.

Files in the test's directory: sender.json (every reply), cases.tsv (per case: slot, class,
anomaly, size, answers, whether it reached the gateway), gw.pcap, the sipp traces (uas.*,
after_uac.*).

Measured (2 cores; `--files protos`, one run per backend after the fixes below; the SBC
binary of 2026-12-07 12:05):
  socket  37 s in all (the suite 9.5 s of sending, the good calls, then the wait for the
          suite's last dialogs). 4,770 sent at 500/s. Cases by final answer: 4xx 4,073 (400
          2,440, 486 1,252, 488 299, 481 45, 414 32, 416 3, 483 2), provisional only 6,
          unanswered 691 (the 570 over max_message, 121 with no Via line as the SBC frames
          them). The gateway got 1,258 INVITEs of the suite, 462-16,470 bytes (the 16,384-byte
          boundary cases grown by our own headers), every one valid SIP with its Content-Length
          right. sip.rx_messages +8,346, parse_errors +2,640, dropped_too_large +570,
          banned/scanner/flood +0; the carrier not banned. 100/100 good calls, no
          retransmission; dialogs and calls_up 0 36 s after the suite began.
  dpdk    37 s. io.dropped_truncated +874 (every case over about 2 KB: the 570 over
          max_message and 304 more), sip.dropped_too_large +0. Cases by final answer: 4xx
          3,777, provisional only 6, unanswered 987. The gateway got 1,164 INVITEs, 463-1,633
          bytes, all valid; 100/100 good calls; dialogs 0 after 36.7 s.
  Before the fixes (the first runs, 2026-12-07 11:58) it FAILED on both backends: a
  16,384-byte INVITE (case 173, a Request-URI user of 15,864 'a') reached the gateway as
  32,302 bytes (the user written into both the Request-URI and the To), and 104 INVITEs
  that are not valid SIP reached it (control characters, a bare CR or LF, `<`, `"` and
  non-ASCII copied from the Request-URI user, display names, the From URI, Content-Type
  and the CSeq number; case 205 arrived as `INVITE sip:\r@203.0.113.10:5060 SIP/2.0`). The
  scanner now refuses those with 400 (a Request-URI over 1,024 bytes with 414), and a
  broken ACK gets no answer."""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP
from kit.calls import tail_if, uac_outcomes
from kit.ctx import Ctx, TestFailure, check
from kit.pcap import Capture, read_pcap_udp
from kit.proc import nsexec, spawn, stop_process, tail
from kit.provisioning import NUMBER
from kit.registry import lab_test
from kit.sip import received_invites
from kit.sipp import Uas, run_uac

DEFAULT_MAX_MESSAGE = 16_384        # [sip] max_message (controlplane/src/config/mod.rs)
MAX_UDP_PAYLOAD = 65_507            # 65,535 - 20 (IPv4 header) - 8 (UDP header)
RATE = 500                          # cases per second
LINGER_S = 2.5                      # after the last case: late answers (failover 1 s), ACKs
GOOD_CALLS, GOOD_RATE = 100, 20
SBC_OVERHEAD = 1024                 # what the SBC's own headers may add to a forwarded INVITE
IDLE_WITHIN_S = 40.0                # the suite's leftovers gone this long after it began
SIP_KEYS = ("rx_messages", "tx_messages", "parse_errors", "dropped_too_large", "dropped_banned",
            "dropped_scanner", "dropped_flood", "dropped_too_many_sources", "calls_total",
            "calls_rejected", "calls_failed", "calls_answered", "retransmissions_absorbed",
            "stray_responses")
IO_KEYS = ("rx_packets", "rx_truncated", "rx_ring_full", "dropped_truncated", "reassembled",
           "tx_fragmented", "fragments_dropped")

# --- the generator --------------------------------------------------------------------------------

OVERFLOW_SIZES = (128, 256, 512, 1024, 2048, 16384, 65536)
OVERFLOW_CHARS = (b"a", b"1", b" ", b"%", b"<", b'"', b"\xff")
FORMATS = (b"%s%s%s%s%s%s%s%s%s%s", b"%n%n%n%n%n%n%n%n%n%n", b"%x%x%x%x%x%x%x%x", b"%p%p%p%p",
           b"%.1024d", b"%99999999999s", b"%s" * 64, b"%08x." * 32)
INTEGERS = (b"0", b"-1", b"1", b"+1", b"2147483647", b"2147483648", b"-2147483648", b"4294967295",
            b"4294967296", b"9223372036854775807", b"9223372036854775808", b"18446744073709551616",
            b"9" * 64, b"9" * 1024, b"00", b"0" * 31 + b"70", b"0x7fffffff", b"1.5", b"1e9",
            b"1" + b"0" * 100)
INJECTIONS = (      # 22: each as the whole value and in the middle of the template's
    ("CRLF", b"\r\n"), ("CR", b"\r"), ("LF", b"\n"), ("CRLFCRLF", b"\r\n\r\n"), ("fold", b"\r\n "),
    ("CRLF+Via", b"\r\nVia: SIP/2.0/UDP 6.6.6.6:5060;branch=z9hG4bK-injected"),
    ("CRLF+Content-Length", b"\r\nContent-Length: 0"),
    ("NUL", b"\x00"), ("16 NUL", b"\x00" * 16), ("ANSI clear", b"\x1b[2J\x1b[H"),
    ("ANSI colour", b"\x1b[31;1m"), ("ANSI title", b"\x1b]0;protos\x07"), ("TAB", b"\t"),
    ("DEL", b"\x7f"), ("UTF-8 Latin", "ÄÖüß".encode()), ("UTF-8 CJK", "日本語".encode()),
    ("RTL override", "\u202e".encode()), ("C0 AF", b"\xc0\xaf"), ("C0 80", b"\xc0\x80"),
    ("surrogate", b"\xed\xa0\x80"), ("F8 5-byte", b"\xf8\x88\x80\x80\x80"), ("FF FE FD", b"\xff\xfe\xfd"),
)

# The headers of the template, in order: key -> name. "x-protos-case" is never mutated.
HEADER_NAMES = {"via": b"Via", "max-forwards": b"Max-Forwards", "from": b"From", "to": b"To",
                "call-id": b"Call-ID", "cseq": b"CSeq", "contact": b"Contact",
                "x-protos-case": b"X-Protos-Case", "content-type": b"Content-Type",
                "content-length": b"Content-Length"}
SDP_KEYS = ("v", "o", "s", "c", "t", "m", "a")


def defaults(n: int) -> dict:
    """The template's slot values for case n."""
    cid = f"protos-{n}".encode()
    return {
        "ruri.scheme": b"sip", "ruri.user": NUMBER.encode(), "ruri.host": SBC_PRIV_IP.encode(),
        "ruri.port": b"5060", "version": b"SIP/2.0",
        "via.proto": b"SIP/2.0/UDP", "via.host": CARRIER_IP.encode(), "via.port": b"5060",
        "via.branch": b"z9hG4bK-" + cid,
        "from.display": b"PROTOS c07", "from.uri": f"sip:protos@{CARRIER_IP}:5060".encode(),
        "from.tag": cid,
        "to.display": b"Callee", "to.uri": f"sip:{NUMBER}@{SBC_PRIV_IP}:5060".encode(),
        "to.tag": None,
        "call-id": cid + f"@{CARRIER_IP}".encode(),
        "cseq.num": b"1", "cseq.method": b"INVITE",
        "contact": f"<sip:protos@{CARRIER_IP}:5060>".encode(),
        "max-forwards": b"70", "content-type": b"application/sdp", "content-length": None,
        "sdp.v": b"0", "sdp.o": f"protos {n} 1 IN IP4 {CARRIER_IP}".encode(),
        "sdp.s": b"PROTOS c07-sip", "sdp.c": f"IN IP4 {CARRIER_IP}".encode(), "sdp.t": b"0 0",
        "sdp.m": b"audio 6000 RTP/AVP 8", "sdp.a": b"rtpmap:8 PCMA/8000",
        **{f"name.{k}": v for k, v in HEADER_NAMES.items() if k != "x-protos-case"},
    }


SLOTS = [k for k in defaults(0) if not k.startswith("name.")] + \
        [f"name.{k}" for k in HEADER_NAMES if k != "x-protos-case"]


def render(n: int, over: dict | None = None, op: tuple | None = None) -> bytes:
    """Case n: the template with the slots of `over` replaced and the structural `op`
    (("empty"|"missing"|"dup", header key or "sdp.<letter>")) applied."""
    v = defaults(n)
    v.update(over or {})
    kind, target = op if op else (None, None)
    body_lines = []
    for k in SDP_KEYS:
        line = k.encode() + b"=" + (b"" if (kind, target) == ("empty", f"sdp.{k}") else v[f"sdp.{k}"]) + b"\r\n"
        if (kind, target) == ("missing", f"sdp.{k}"):
            continue
        body_lines.append(line)
        if (kind, target) == ("dup", f"sdp.{k}"):
            body_lines.append(line)
    body = b"".join(body_lines)
    values = {
        "via": b"%s %s:%s;branch=%s;rport" % (v["via.proto"], v["via.host"], v["via.port"],
                                              v["via.branch"]),
        "max-forwards": v["max-forwards"],
        "from": b'"%s" <%s>;tag=%s' % (v["from.display"], v["from.uri"], v["from.tag"]),
        "to": b'"%s" <%s>%s' % (v["to.display"], v["to.uri"],
                                b"" if v["to.tag"] is None else b";tag=" + v["to.tag"]),
        "call-id": v["call-id"],
        "cseq": v["cseq.num"] + b" " + v["cseq.method"],
        "contact": v["contact"],
        "x-protos-case": str(n).encode(),
        "content-type": v["content-type"],
        "content-length": str(len(body)).encode() if v["content-length"] is None else v["content-length"],
    }
    lines = [b"INVITE %s:%s@%s:%s %s" % (v["ruri.scheme"], v["ruri.user"], v["ruri.host"],
                                         v["ruri.port"], v["version"])]
    for k, value in values.items():
        if (kind, target) == ("missing", k):
            continue
        if (kind, target) == ("empty", k):
            value = b""
        name = v.get(f"name.{k}", HEADER_NAMES[k])
        lines.append(name + b": " + value)
        if (kind, target) == ("dup", k):
            lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def sized(n: int, slot: str, ch: bytes, target: int) -> tuple[bytes, int]:
    """Case n with `slot` made of `ch` repeated so that the whole INVITE is `target` bytes (the
    Content-Length of an SDP slot changes with it: a few rounds). Returns (bytes, repetitions)."""
    reps = max(0, target - len(render(n, {slot: b""})))
    for _ in range(4):
        msg = render(n, {slot: ch * reps})
        if len(msg) == target:
            break
        reps = max(0, reps + target - len(msg))
    return render(n, {slot: ch * reps}), reps


def protos_cases(max_message: int) -> list[dict]:
    """The suite: [{"id", "field", "cls", "desc", "data"}], ids 0.. in order."""
    specs = []   # (field, cls, desc, builder(n) -> bytes)

    def add(field, cls, desc, fn):
        specs.append((field, cls, desc, fn))

    for slot in SLOTS:
        for size in OVERFLOW_SIZES:
            for ch in OVERFLOW_CHARS:
                def fn(n, slot=slot, size=size, ch=ch):
                    msg = render(n, {slot: ch * size})
                    if len(msg) > MAX_UDP_PAYLOAD:      # one UDP datagram at most
                        msg, _ = sized(n, slot, ch, MAX_UDP_PAYLOAD)
                    return msg
                label = ch.decode("latin-1") if ch not in (b" ", b"\xff") else \
                    {b" ": "SP", b"\xff": "0xFF"}[ch]
                add(slot, "overflow", f"{size} x {label}", fn)
        for total in (max_message, max_message + 1):
            add(slot, "boundary", f"'a' to a {total}-byte INVITE",
                lambda n, slot=slot, total=total: sized(n, slot, b"a", total)[0])
        for f in FORMATS:
            add(slot, "format", f.decode()[:24] + ("..." if len(f) > 24 else ""),
                lambda n, slot=slot, f=f: render(n, {slot: f}))
        for i in INTEGERS:
            add(slot, "integer", i.decode()[:24] + (f"...({len(i)} chars)" if len(i) > 24 else ""),
                lambda n, slot=slot, i=i: render(n, {slot: i}))
        for label, seq in INJECTIONS:
            add(slot, "inject", f"{label} (whole value)", lambda n, slot=slot, seq=seq: render(n, {slot: seq}))

            def mid(n, slot=slot, seq=seq):
                orig = defaults(n)[slot] or (b"protos" if slot == "to.tag" else b"%d" % 0)
                if slot == "content-length":
                    orig = str(len(render(n).split(b"\r\n\r\n", 1)[1])).encode()
                k = max(1, len(orig) // 2)
                return render(n, {slot: orig[:k] + seq + orig[k:]})
            add(slot, "inject", f"{label} (mid value)", mid)
        add(slot, "empty", "empty", lambda n, slot=slot: render(n, {slot: b""}))
    for target in [k for k in HEADER_NAMES if k != "x-protos-case"] + [f"sdp.{k}" for k in SDP_KEYS]:
        field = target if target.startswith("sdp.") else f"header.{target}"
        for kind in ("empty", "missing", "dup"):
            add(field, "structure", f"{target} {kind}", lambda n, kind=kind, target=target: render(n, op=(kind, target)))

    def body_len(n):
        return len(render(n).split(b"\r\n\r\n", 1)[1])
    lies = (("+1", lambda b: b + 1), ("+100", lambda b: b + 100), ("twice", lambda b: 2 * b),
            ("65535", lambda b: 65535), ("2^32", lambda b: 2 ** 32), ("-1 byte", lambda b: b - 1),
            ("half", lambda b: b // 2), ("0", lambda b: 0), ("negative -1", lambda b: -1),
            ("negative body", lambda b: -b))
    for label, f in lies:
        add("content-length", "lie", f"Content-Length {label}",
            lambda n, f=f: render(n, {"content-length": str(f(body_len(n))).encode()}))

    cases = []
    for n, (field, cls, desc, fn) in enumerate(specs):
        cases.append({"id": n, "field": field, "cls": cls, "desc": desc, "data": fn(n)})
    return cases


# --- the sender (run in ns carrier) ---------------------------------------------------------------

SENDER = r'''
import json, re, select, socket, struct, sys, time

bind_ip, bind_port, to_ip, to_port, rate, cases_path, linger = sys.argv[1:8]
to = (to_ip, int(to_port)); rate = float(rate); linger = float(linger)
data = open(cases_path, "rb").read()
cases, off = [], 0
while off < len(data):
    (size,) = struct.unpack_from("!I", data, off)
    cases.append(data[off + 4:off + 4 + size])
    off += 4 + size
N = len(cases)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.bind((bind_ip, int(bind_port)))
s.setblocking(False)
ID = re.compile(rb"protos-(\d+)")
NO_ACK = (400, 416, 501, 505)        # the stateless answers to a message that did not parse

def case_of(head):
    votes = {}
    for m in ID.finditer(head):
        k = int(m.group(1))
        if k < N:
            votes[k] = votes.get(k, 0) + 1
    return max(votes.items(), key=lambda kv: kv[1])[0] if votes else None

def hname(line):
    return line.split(b":", 1)[0].strip().lower() if b":" in line else b""

def first(lines, *names):
    return next((l for l in lines if hname(l) in names), None)

def in_dialog(case, head, code, lines):
    """The ACK of a final answer (and for a 2xx a BYE too), from its own header lines."""
    via, frm, to_, cid = (first(lines, b"via", b"v"), first(lines, b"from", b"f"),
                          first(lines, b"to", b"t"), first(lines, b"call-id", b"i"))
    cseq = first(lines, b"cseq")
    req = cases[case].split(b"\r\n", 1)[0].split(b" ")
    if None in (via, frm, to_, cid, cseq) or len(req) != 3:
        return []
    num = cseq.split(b":", 1)[1].split()
    if len(num) != 2 or num[1].upper() != b"INVITE":
        return []
    common = via + b"\r\n" + frm + b"\r\n" + to_ + b"\r\n" + cid + b"\r\n"
    out = [b"ACK " + req[1] + b" SIP/2.0\r\n" + common + b"CSeq: " + num[0] +
           b" ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"]
    if 200 <= code < 300:
        try:
            bye_cseq = str(int(num[0]) + 1).encode()
        except ValueError:
            bye_cseq = b"2"
        out.append(b"BYE " + req[1] + b" SIP/2.0\r\n" + common.replace(b"branch=", b"branch=z9hG4bK-bye-", 1) +
                   b"CSeq: " + bye_cseq + b" BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    return out

replies, acked, acks, byes, unmatched = [], {}, 0, 0, 0
i = 0                # the next case to send

def drain():
    global acks, byes, unmatched
    while True:
        try:
            dgram, src = s.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        head = dgram.split(b"\r\n\r\n", 1)[0]
        lines = head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n")  # unfolded
        case = case_of(head)
        code = None
        parts = lines[0].split(b" ", 2)
        if lines[0].startswith(b"SIP/2.0 ") and len(parts) >= 2 and parts[1].isdigit():
            code = int(parts[1])
        if case is None:
            unmatched += 1
        replies.append([time.time(), case, code, lines[0][:160].decode("latin-1"), len(dgram), i - 1,
                        "" if case is not None else head[:2000].decode("latin-1")])
        if case is None or code is None or code < 200 or code in NO_ACK:
            continue
        key = (case, code)
        if acked.get(key, 0) >= 4:
            continue
        acked[key] = acked.get(key, 0) + 1
        for m in in_dialog(case, head, code, lines):
            try:
                s.sendto(m, to)
                if m.startswith(b"ACK"):
                    acks += 1
                else:
                    byes += 1
            except OSError:
                pass

send_ts, blocked, errors = [None] * N, 0, []
t0 = time.monotonic()
while i < N:
    due = min(N, int((time.monotonic() - t0) * rate) + 1)
    while i < due:
        try:
            s.sendto(cases[i], to)
        except (BlockingIOError, InterruptedError):
            blocked += 1
            select.select([], [s], [], 0.005)
            break
        except OSError as e:
            errors.append([i, str(e)])
        send_ts[i] = time.time()
        i += 1
    drain()
    time.sleep(0.0005)
last = time.time()
end = time.monotonic() + linger
while time.monotonic() < end:
    select.select([s], [], [], 0.05)
    drain()
print(json.dumps({"sent": sum(1 for t in send_ts if t is not None), "n": N, "blocked": blocked,
                  "errors": errors, "send_ts": send_ts, "first_ts": send_ts[0] if N else None,
                  "last_ts": last, "rate": N / max(1e-6, last - (send_ts[0] or last)),
                  "replies": replies, "acks": acks, "byes": byes, "unmatched": unmatched}),
      flush=True)
'''


# --- the gateway ---------------------------------------------------------------------------------

# uas_simple for the good calls (100/180/200 with SDP, ACK, BYE/200), 486 Busy Here for every INVITE
# of the suite (it carries X-Protos-Case): one sipp runs through the suite and the calls after it,
# so an INVITE of the suite the SBC is still retransmitting then is refused as well, never answered
# 200 (nothing stays up).
GATEWAY_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="protos_uas">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE">
    <action>
      <ereg regexp="X-Protos-Case" search_in="msg" check_it="false" assign_to="suite"/>
    </action>
  </recv>
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
  <nop test="suite" next="busy"/>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port]>
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

      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a=sendrecv

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
  <nop next="end"/>
  <label id="busy"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <nop next="end"/>
  <label id="options"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""


# --- helpers --------------------------------------------------------------------------------------

def counters(ctx: Ctx) -> tuple[dict, dict]:
    st = ctx.api.status()
    sip, io = st.get("sip") or {}, st.get("io") or {}
    missing = [k for k in ("rx_messages", "parse_errors", "dropped_too_large") if k not in sip]
    check(not missing, f"GET /api/v1/status has no sip.{', sip.'.join(missing)}")
    return ({k: int(sip.get(k) or 0) for k in SIP_KEYS},
            {k: int(io[k]) if isinstance(io.get(k), (int, float)) else None for k in IO_KEYS})


def bans(ctx: Ctx) -> list:
    r = ctx.api.request("GET", "/api/v1/bans")
    check(r.code == 200 and isinstance(r.json(), list), f"GET /api/v1/bans -> {r.code} {r.body[:300]}")
    return r.json()


def header_values(head: bytes, *names: bytes) -> list[bytes]:
    out = []
    for line in head.split(b"\r\n")[1:]:
        if b":" in line and line.split(b":", 1)[0].strip().lower() in names:
            out.append(line.split(b":", 1)[1].strip())
    return out


def content_length_problem(payload: bytes) -> str | None:
    """Why the Content-Length of a datagram is unbalanced or absurd (None: it is fine)."""
    if b"\r\n\r\n" not in payload:
        return "no blank line after the headers"
    head, body = payload.split(b"\r\n\r\n", 1)
    vals = header_values(head, b"content-length", b"l")
    if len(vals) != 1:
        return f"{len(vals)} Content-Length headers"
    v = vals[0]
    if not v.isdigit() or len(v) > 5 or (len(v) > 1 and v.startswith(b"0")):
        return f"absurd Content-Length {v[:40]!r}"
    if int(v) != len(body):
        return f"Content-Length {int(v)} for a {len(body)}-byte body"
    return None


URI_BAD = re.compile(rb'[\x00-\x20\x7f-\xff<>"]')      # never raw in a SIP URI (RFC 3261 25.1)
NAME_ADDR = re.compile(rb'^(?:"(?:[^"\\]|\\.)*"[ \t]*|[^"<>]*)<[^<>"\x00-\x20\x7f-\xff]+>[ \t]*(?:;.*)?$'
                       rb'|^[^<>"\x00-\x20\x7f-\xff;]+(?:;.*)?$', re.S)


def wire_problems(payload: bytes) -> list[str]:
    """What makes the start line and headers of a forwarded INVITE invalid SIP (RFC 3261 25.1)
    in ways a gateway's parser trips over: NUL, a bare CR or LF, another control character, a
    Request-URI with whitespace, controls, non-ASCII or <>", a From/To/Contact that is not one
    name-addr or addr-spec. Folded lines (CRLF + SP/HTAB) are legal and unfolded first."""
    head = payload.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    out = []
    if b"\x00" in head:
        out.append("NUL in the headers")
    lines = head.split(b"\r\n")
    if any(b"\r" in ln or b"\n" in ln for ln in lines):
        out.append("bare CR or LF in the headers")
    ctl = sorted({b for ln in lines for b in ln if (b < 0x20 and b not in (0x00, 0x09, 0x0A, 0x0D)) or b == 0x7F})
    if ctl:
        out.append("control characters " + " ".join(f"0x{b:02X}" for b in ctl))
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"SIP/2.0":
        out.append("malformed Request-Line")
    elif not re.match(rb"sips?:", parts[1], re.I) or URI_BAD.search(parts[1]):
        bad = sorted(set(URI_BAD.findall(parts[1])))
        out.append("Request-URI with " + " ".join(f"0x{b[0]:02X}" for b in bad[:8]))
    for names, label in (((b"from", b"f"), "From"), ((b"to", b"t"), "To"), ((b"contact", b"m"), "Contact")):
        for v in header_values(head, *names):
            if v != b"*" and not NAME_ADDR.match(v):
                out.append(f"malformed {label}")
    return out


def first_via(data: bytes) -> bytes | None:
    """The first Via line of the header section, framed as the SBC frames it (lines end at LF, a
    CR before it dropped, the first empty line ends it); None: it has none, and the SBC's
    stateless answer to a request that does not parse needs one (dataplane/src/engine/local.rs
    error_response, which echoes that line)."""
    for line in data.split(b"\n")[1:]:
        line = line[:-1] if line.endswith(b"\r") else line
        if not line:
            return None
        if line[:1] not in (b" ", b"\t") and b":" in line and \
                line.split(b":", 1)[0].strip().lower() in (b"via", b"v"):
            return line
    return None


def gateway_invites(pcap: Path) -> tuple[list[dict], list[dict]]:
    """The INVITEs the gateway received, reassembled: (the first transmission per Call-ID, every
    datagram as {"ts", "case"})."""
    seen, first, every = set(), [], []
    for ts, src, _sport, dst, dport, payload in read_pcap_udp(pcap):
        if dst != GW1_IP or dport != 5060 or not payload.startswith(b"INVITE "):
            continue
        head = payload.split(b"\r\n\r\n", 1)[0]
        cid = (header_values(head, b"call-id", b"i") or [b""])[0]
        case = header_values(head, b"x-protos-case")
        case = int(case[0]) if case and case[0].isdigit() else None
        every.append({"ts": ts, "case": case})
        if cid in seen:
            continue
        seen.add(cid)
        first.append({"ts": ts, "src": src, "size": len(payload), "data": payload, "case": case})
    return first, every


def final_of(codes: list) -> int | None:
    finals = [c for c in codes if c is not None and c >= 200]
    return finals[0] if finals else None


class AliveWatch:
    """Polls the SBC process every 20 ms in a thread: when it was first seen gone."""

    def __init__(self, ctx: Ctx):
        self.ctx, self.died_at = ctx, None
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_ev.is_set():
            if not self.ctx.sbc.alive():
                self.died_at = time.time()
                return
            self.stop_ev.wait(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(5)
        return False


def save_case(d: Path, sub: str, case: dict, extra: bytes | None = None) -> Path:
    """The case's exact bytes (and what the gateway got of it) under d/sub/, with how to replay it."""
    out = d / sub
    out.mkdir(exist_ok=True)
    p = out / f"case-{case['id']:04d}-{case['field']}-{case['cls']}.sip"
    p.write_bytes(case["data"])
    (out / (p.stem + ".txt")).write_text(
        f"case {case['id']}: field {case['field']}, class {case['cls']}, {case['desc']}, "
        f"{len(case['data'])} bytes\nreplay: ip netns exec carrier python3 lab/sipsend.py send "
        f"--bind {CARRIER_IP}:5062 --to {SBC_PRIV_IP}:5060 --file {p}\n")
    if extra is not None:
        (out / (p.stem + ".at-gateway.sip")).write_bytes(extra)
    return p


def wait_idle(ctx: Ctx, deadline: float) -> tuple[float, dict]:
    """Poll sip.dialogs and calls_up until both are 0 or `deadline` (monotonic); returns (seconds
    waited, the last values)."""
    t0 = time.monotonic()
    last = {}
    while True:
        try:
            st = ctx.api.status()
            last = {"dialogs": (st.get("sip") or {}).get("dialogs"), "calls_up": st.get("calls_up")}
        except Exception as e:  # noqa: BLE001
            last = {"error": str(e)}
        if last.get("dialogs") == 0 and last.get("calls_up") == 0:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    return time.monotonic() - t0, last


def describe(case: dict) -> str:
    return f"#{case['id']} {case['field']} {case['cls']} {case['desc']} ({len(case['data'])} bytes)"


# --- the test -------------------------------------------------------------------------------------

@lab_test
def protos_c07_sip_invites(ctx: Ctx):
    d = ctx.tdir("protos_c07_sip_invites")
    max_message = int((ctx.sbc.sip_extra or {}).get("max_message", DEFAULT_MAX_MESSAGE))
    dpdk = ctx.sbc.backend == "dpdk"
    t_gen = time.monotonic()
    cases = protos_cases(max_message)
    n = len(cases)
    sizes = [len(c["data"]) for c in cases]
    big = [c for c in cases if len(c["data"]) > max_message]
    unfragmented = [c for c in cases if len(c["data"]) + 28 <= 1500]
    check(max(sizes) <= MAX_UDP_PAYLOAD, f"a case of {max(sizes)} bytes does not fit one datagram")
    tmp = Path(tempfile.mkdtemp(prefix="protos-"))
    problems: list[str] = []        # what went wrong after the suite: reported together at the end
    idle_done = False

    def expect(cond: bool, reason: str) -> None:
        if not cond:
            problems.append(reason)

    t_suite = time.monotonic()
    try:
        cases_file = tmp / "cases.bin"
        with open(cases_file, "wb") as f:
            for c in cases:
                f.write(struct.pack("!I", len(c["data"])) + c["data"])
        per_cls = Counter(c["cls"] for c in cases)
        print(f"  ({n} cases from {len(SLOTS)} slots built in {time.monotonic() - t_gen:.1f} s: "
              f"{dict(per_cls)}; {len(big)} over max_message {max_message}, "
              f"{sum(1 for s in sizes if s == MAX_UDP_PAYLOAD)} of them capped at {MAX_UDP_PAYLOAD} "
              f"bytes; {n - len(unfragmented)} IP-fragmented on a 1,500-byte MTU)", flush=True)
        script = d / "sender.py"
        script.write_text(SENDER)
        scenario = d / "protos_uas.xml"
        scenario.write_text(GATEWAY_UAS)

        check(not any(b.get("ip") == CARRIER_IP for b in bans(ctx)), "the carrier is banned before the suite")
        sip0, io0 = counters(ctx)
        cap = Capture("gw", "g0", d / "gw.pcap", filter=f"udp and dst host {GW1_IP}")
        try:
            with Uas("gw", str(scenario), GW1_IP, 5060, d, "uas") as uas:
                out_path, err_path = d / "sender.json", d / "sender.err"
                t_suite = time.monotonic()
                with AliveWatch(ctx) as watch, open(out_path, "wb") as out, open(err_path, "wb") as err:
                    p = spawn(nsexec("carrier", [sys.executable, script, CARRIER_IP, 5060, SBC_PRIV_IP,
                                                 5060, RATE, cases_file, LINGER_S]),
                              stdout=out, stderr=err)
                    try:
                        p.wait(n / RATE + LINGER_S + 30)
                    except subprocess.TimeoutExpired:
                        pass
                    stop_process(p)
                try:
                    res = json.loads(out_path.read_text().strip().splitlines()[-1])
                except (IndexError, ValueError) as e:
                    raise TestFailure(f"the sender printed no summary ({e}):\n" + tail(err_path, 20)) from None

                # The SBC must have lived through it; if not, the cases sent in the second before.
                if watch.died_at is not None or not ctx.sbc.alive():
                    died = watch.died_at or time.time()
                    near = [c for c, t in zip(cases, res["send_ts"]) if t is not None and died - 1.0 <= t <= died]
                    for c in near[-200:]:
                        save_case(d, "crash_candidates", c)
                    raise TestFailure(
                        f"the SBC died during the suite (exit status {ctx.sbc.proc.returncode}, seen "
                        f"at {died:.3f}); the {len(near)} cases sent in the second before are in "
                        f"{d / 'crash_candidates'}, the last ones: "
                        + "; ".join(describe(c) for c in near[-5:])
                        + "\n--- SBC log:\n" + tail(ctx.sbc.log_path, 30))
                # And answer: if it hangs, the cases sent around its last answer.
                try:
                    st = ctx.api.request("GET", "/api/v1/status")
                    why = None if st.code == 200 and isinstance(st.json(), dict) else f"{st.code} {st.body[:200]}"
                except Exception as e:  # noqa: BLE001
                    why = f"{type(e).__name__}: {e}"
                if why is not None:
                    quiet = res["replies"][-1][0] if res["replies"] else res["first_ts"]
                    near = [c for c, t in zip(cases, res["send_ts"])
                            if t is not None and quiet - 0.5 <= t <= quiet + 1.0]
                    for c in near[:300]:
                        save_case(d, "hang_candidates", c)
                    raise TestFailure(
                        f"GET /api/v1/status after the suite: {why}; the SBC's last answer came "
                        f"{quiet - res['first_ts']:.2f} s into the suite; the {len(near)} cases sent "
                        f"around it are in {d / 'hang_candidates'}, the first ones: "
                        + "; ".join(describe(c) for c in near[:5]))
                time.sleep(0.3)     # the engine publishes its counters every turn
                sip1, io1 = counters(ctx)
                calls_up_after = st.json().get("calls_up")
                listed = [b for b in bans(ctx) if b.get("ip") == CARRIER_IP]

                # Good calls right after the suite, to the same gateway UAS.
                t_good = time.time()
                r = run_uac("carrier", "uac_simple", CARRIER_IP, 5060, SBC_PRIV, d, "after_uac",
                            calls=GOOD_CALLS, rate=GOOD_RATE, duration_ms=200, timeout_s=30,
                            service=NUMBER)
                ur = uas.stop()
        finally:
            cap.stop()
        dsip = {k: sip1[k] - sip0[k] for k in SIP_KEYS}
        dio = {k: io1[k] - io0[k] if io0[k] is not None and io1[k] is not None else None for k in IO_KEYS}

        # Who answered what.
        codes: dict[int, list] = {}
        lines: dict[int, list] = {}
        by_time = set()     # answers that name no case (no protos-<n> left in them): the latest case
        for _t, case, code, line, _size, last_sent, head in res["replies"]:   # sent with their Via
            if case is None and 0 <= last_sent < n:
                via = next((ln for ln in head.encode("latin-1").split(b"\r\n")[1:]
                            if ln.split(b":", 1)[0].strip().lower() in (b"via", b"v")), None)
                case = next((k for k in range(last_sent, max(-1, last_sent - 200), -1)
                             if via is not None and first_via(cases[k]["data"]) == via), last_sent)
                by_time.add(case)
            if case is not None:
                codes.setdefault(case, []).append(code)
                lines.setdefault(case, []).append(line)
        at_gw, every_gw = gateway_invites(d / "gw.pcap")
        suite_gw = [g for g in at_gw if g["ts"] < t_good]
        gw_cases = {g["case"] for g in suite_gw if g["case"] is not None and g["case"] < n}
        traced = received_invites(ur.files.get("messages"))
        sipp_suite = [m for m in traced if "protos" in m.text.lower()]
        good_at_gw = [m for m in traced if "protos" not in m.text.lower()]
        klass = Counter()
        for c in cases:
            cc = codes.get(c["id"])
            fin = final_of(cc or [])
            klass["unanswered" if not cc else "provisional only" if fin is None else f"{fin // 100}xx"] += 1
        finals = Counter()
        for cid, ls in lines.items():
            fin = next((ln for ln in ls if ln.startswith("SIP/2.0 ") and not ln.startswith("SIP/2.0 1")), None)
            if fin:
                finals[fin[8:60]] += 1
        with open(d / "cases.tsv", "w") as f:
            f.write("id\tfield\tclass\tanomaly\tsize\tanswers\tat_gateway\n")
            for c in cases:
                ans = ",".join(str(x) for x in codes.get(c["id"], []))
                f.write(f"{c['id']}\t{c['field']}\t{c['cls']}\t{c['desc']!r}\t{len(c['data'])}\t"
                        f"{ans or '-'}\t{int(c['id'] in gw_cases)}\n")
        print(f"  (sent {res['sent']}/{n} cases at {res['rate']:.0f}/s in "
              f"{res['last_ts'] - res['first_ts']:.1f} s, {res['blocked']} send stalls; "
              f"{len(res['replies'])} replies ({res['unmatched']} name no case: put to the latest case "
              f"sent with their Via line, {sorted(by_time)[:10]}), {res['acks']} ACKs, "
              f"{res['byes']} BYEs sent)", flush=True)
        print("  (cases by final answer: " + ", ".join(f"{k} {v}" for k, v in sorted(klass.items()))
              + ")", flush=True)
        print("  (commonest final answers: " + "; ".join(f"{v} x {k}" for k, v in finals.most_common(14))
              + ")", flush=True)
        unans = Counter(c["field"] for c in cases if c["id"] not in codes and len(c["data"]) <= max_message)
        print(f"  (unanswered cases up to max_message, per slot: {dict(unans.most_common())})", flush=True)
        per_field_gw = Counter(cases[i]["field"] for i in gw_cases)
        bounds = (1472, 4096, max_message, max_message + SBC_OVERHEAD)
        buckets = Counter(next((f"<={b:,}" for b in bounds if g["size"] <= b), f">{bounds[-1]:,}")
                          for g in suite_gw)
        buckets = {k: buckets[k] for k in [f"<={b:,}" for b in bounds] + [f">{bounds[-1]:,}"] if k in buckets}
        largest = max(suite_gw, key=lambda g: g["size"], default=None)
        print(f"  (the gateway got {len(suite_gw)} INVITEs of the suite ({len(gw_cases)} cases traced; "
              f"sipp's trace {len(sipp_suite)} in all); sizes {min((g['size'] for g in suite_gw), default=0)}"
              f"-{largest['size'] if largest else 0} bytes"
              + (f" (the largest: case {describe(cases[largest['case']])})"
                 if largest and largest["case"] is not None and largest["case"] < n else "")
              + f"; by size {buckets}; per slot {dict(per_field_gw.most_common())})", flush=True)
        print(f"  (sip counters went up by {dsip}; io {dio}; calls_up {calls_up_after} after the suite)",
              flush=True)

        # The sender and the SBC's health.
        expect(res["sent"] == n and not res["errors"],
               f"the sender sent {res['sent']} of {n} cases; errors {res['errors'][:5]}")
        expect(not listed, f"the carrier {CARRIER_IP} is banned after the suite: {listed}")
        for k in ("dropped_banned", "dropped_scanner", "dropped_flood", "dropped_too_many_sources"):
            expect(dsip[k] == 0, f"sip.{k} went up by {dsip[k]} for the carrier's cases")

        # What reached the gateway: nothing over max_message, Content-Length sane, valid SIP.
        ok2 = [c for c in cases if any(x is not None and 200 <= x < 300 for x in codes.get(c["id"], []))]
        for c in ok2[:20]:
            save_case(d, "answered_2xx", c)
        if ok2:
            problems.append(f"{len(ok2)} cases were answered 2xx (the gateway refuses them all), e.g. "
                            + "; ".join(f"{describe(c)}: {lines.get(c['id'])}" for c in ok2[:3]))
        too_big = [g for g in suite_gw if g["case"] is not None and g["case"] < n
                   and len(cases[g["case"]]["data"]) > max_message]
        for g in too_big:
            save_case(d, "forwarded_too_large", cases[g["case"]], g["data"])
        if too_big:
            problems.append(f"{len(too_big)} cases over max_message {max_message} reached the gateway "
                            f"(saved in {d / 'forwarded_too_large'}): "
                            + "; ".join(f"{describe(cases[g['case']])} -> {g['size']} bytes"
                                        for g in too_big[:5]))
        grown = [g for g in suite_gw if g["size"] > max_message + SBC_OVERHEAD]
        for g in grown:
            if g["case"] is not None and g["case"] < n:
                save_case(d, "forwarded_amplified", cases[g["case"]], g["data"])
        if grown:
            problems.append(
                f"{len(grown)} INVITEs over max_message {max_message} + {SBC_OVERHEAD} (the SBC's own "
                f"headers) reached the gateway (saved in {d / 'forwarded_amplified'}): "
                + "; ".join((f"{describe(cases[g['case']])} -> {g['size']} bytes at the gateway"
                             if g["case"] is not None and g["case"] < n else f"{g['size']} bytes, no case")
                            for g in grown[:5])
                + " (a Request-URI user is written twice on the gateway leg: Request-URI and To)")
        near_limit = sorted(g["size"] for g in suite_gw if g["case"] is not None and g["case"] < n
                            and cases[g["case"]]["cls"] == "boundary")
        if near_limit:
            print(f"  (the {max_message}-byte boundary cases that reached the gateway: {len(near_limit)}, "
                  f"{near_limit[0]}-{near_limit[-1]} bytes there)", flush=True)
        untraced = [g for g in suite_gw if g["case"] is None or g["case"] >= n]
        if untraced:
            (d / "untraced_at_gateway.sip").write_bytes(b"\n\n=====\n\n".join(g["data"] for g in untraced))
            print(f"  note: {len(untraced)} INVITEs at the gateway name no case in an X-Protos-Case "
                  f"header (an injected blank line made the rest a body); sizes "
                  f"{[g['size'] for g in untraced[:10]]}", flush=True)
        bad_cl = [(g, content_length_problem(g["data"])) for g in suite_gw]
        bad_cl = [(g, why) for g, why in bad_cl if why]
        for g, _why in bad_cl[:20]:
            if g["case"] is not None and g["case"] < n:
                save_case(d, "bad_content_length_at_gateway", cases[g["case"]], g["data"])
        if bad_cl:
            problems.append(f"{len(bad_cl)} INVITEs reached the gateway with a bad Content-Length: "
                            + "; ".join(f"case #{g['case']}: {why}" for g, why in bad_cl[:5]))
        else:
            print(f"  (Content-Length checked on all {len(suite_gw)} INVITEs at the gateway: one, "
                  f"plain digits, equal to the body)", flush=True)
        malformed: dict[str, list] = {}
        for g in suite_gw:
            for why in wire_problems(g["data"]):
                malformed.setdefault(re.sub(r" 0x.*", "", why), []).append((g, why))
        if malformed:
            listing = []
            for kind, hits in sorted(malformed.items(), key=lambda kv: -len(kv[1])):
                ids = sorted({g["case"] for g, _ in hits if g["case"] is not None and g["case"] < n})
                slots = Counter(cases[i]["field"] for i in ids)
                for slot in slots:          # two of each slot's, with what the gateway got
                    for cid in [i for i in ids if cases[i]["field"] == slot][:2]:
                        g = next(g for g, _ in hits if g["case"] == cid)
                        save_case(d, "forwarded_malformed", cases[cid], g["data"])
                listing.append(f"    {kind}: {len(hits)} INVITEs ({dict(slots.most_common(6))}), e.g. "
                               + "; ".join(f"{describe(cases[i])}: "
                                           + next(w for g, w in hits if g['case'] == i) for i in ids[:3]))
            with open(d / "forwarded_malformed.txt", "w") as f:
                for kind, hits in malformed.items():
                    f.write(f"{kind}: " + " ".join(str(g["case"]) for g, _ in hits) + "\n")
            distinct = {id(g) for hits in malformed.values() for g, _ in hits}
            problems.append(f"the SBC forwarded {len(distinct)} INVITEs that are not valid SIP to the "
                            f"gateway (per fault below; examples saved in "
                            f"{d / 'forwarded_malformed'}, all listed in forwarded_malformed.txt):\n"
                            + "\n".join(listing))

        # What the carrier heard back.
        forwarded_unanswered = sorted(i for i in gw_cases if final_of(codes.get(i, [])) is None)
        if forwarded_unanswered:
            print(f"  note: {len(forwarded_unanswered)} forwarded cases got no final answer in the "
                  f"{LINGER_S} s after the suite (the gateway could not parse them, or the SBC could "
                  f"not parse the gateway's 486 to its own INVITE: Timer B, 32 s): "
                  + ", ".join(f"#{i} {cases[i]['field']} {cases[i]['desc']}" for i in forwarded_unanswered[:8]),
                  flush=True)
        late = [e for e in every_gw if e["ts"] >= t_good and e["case"] is not None]
        if late:
            print(f"  note: the SBC still sent {len(late)} INVITEs of {len({e['case'] for e in late})} "
                  f"suite cases to the gateway during the calls after the suite (the last "
                  f"{max(e['ts'] for e in late) - res['last_ts']:.1f} s after the last case)", flush=True)
        silent = [c for c in (unfragmented if dpdk else cases)
                  if len(c["data"]) <= max_message and c["id"] not in codes and c["id"] not in gw_cases
                  and first_via(c["data"]) is not None]
        for c in silent[:20]:
            save_case(d, "silently_dropped", c)
        if silent:
            problems.append(f"{len(silent)} cases with a Via got no answer at all and did not reach the "
                            f"gateway: " + "; ".join(describe(c) for c in silent[:6]))

        # The counters.
        small = n - len(big)
        if not dpdk:
            expect(dsip["dropped_too_large"] == len(big),
                   f"sip.dropped_too_large went up by {dsip['dropped_too_large']}, want {len(big)} (the "
                   f"cases over {max_message} bytes)")
            expect(dsip["rx_messages"] >= small,
                   f"sip.rx_messages went up by {dsip['rx_messages']} for {small} cases under the limit "
                   f"(+ {res['acks']} ACKs); io {dio}")
        else:
            trunc = dio.get("dropped_truncated") or 0
            print(f"  note: on the net_af_packet vdev {trunc} datagrams were dropped as truncated "
                  f"(io.reassembled +{dio.get('reassembled')}, sip.dropped_too_large "
                  f"+{dsip['dropped_too_large']}); {n - len(unfragmented)} cases are IP-fragmented, "
                  f"{len(big)} of them over max_message", flush=True)
            expect(dsip["dropped_too_large"] <= len(big) and dsip["dropped_too_large"] + trunc >= len(big),
                   f"sip.dropped_too_large +{dsip['dropped_too_large']}, io.dropped_truncated +{trunc} "
                   f"for {len(big)} cases over {max_message} bytes")
            expect(dsip["rx_messages"] >= n - trunc - dsip["dropped_too_large"],
                   f"sip.rx_messages went up by {dsip['rx_messages']} for {n} cases of which "
                   f"{trunc} were truncated and {dsip['dropped_too_large']} too large")
        expect(0 < dsip["parse_errors"] <= dsip["rx_messages"],
               f"sip.parse_errors went up by {dsip['parse_errors']} (rx_messages +{dsip['rx_messages']})")

        # The good calls.
        o = uac_outcomes(r)
        print(f"  (after the suite: {r.successful}/{GOOD_CALLS} calls completed, {r.failed} failed, "
              f"{r.stats.get('Retransmissions(C)', '?')} retransmissions, outcomes {o['codes']}; the "
              f"gateway got {len(good_at_gw)} of their INVITEs)", flush=True)
        expect(r.ok(GOOD_CALLS), f"calls right after the suite: {r.summary()}\n{r.diagnostics()}\n"
                                 f"--- UAS: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
        expect(len(good_at_gw) == GOOD_CALLS,
               f"the gateway got {len(good_at_gw)} INVITEs for {GOOD_CALLS} good calls")

        # Nothing of the suite left up: what the SBC still holds goes by IDLE_WITHIN_S after it began.
        waited, last = wait_idle(ctx, max(time.monotonic(), t_suite + IDLE_WITHIN_S))
        idle_done = True
        took = time.monotonic() - t_suite
        print(f"  (sip.dialogs and calls_up {last} {took:.1f} s after the suite began)", flush=True)
        if last.get("dialogs") or last.get("calls_up"):
            problems.append(f"the SBC still holds {last} {took:.0f} s after the suite began")
        elif waited > 1.0:
            print(f"  note: the SBC held dialogs of the suite until {took:.0f} s after it began (calls_up "
                  f"{calls_up_after} right after it): the forwarded INVITEs without a final answer, to "
                  f"Timer B", flush=True)
        check(not problems, f"{len(problems)} failures after PROTOS c07-sip:\n  - " + "\n  - ".join(problems))
    finally:
        if not idle_done:       # the suite's leftovers must not reach the next test
            wait_idle(ctx, max(time.monotonic(), t_suite + IDLE_WITHIN_S))
        shutil.rmtree(tmp, ignore_errors=True)
