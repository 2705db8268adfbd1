"""Captures: tcpdump inside a namespace (Capture), and reading pcap files with the standard
library: frames, the addresses of IPv4 and ARP packets, UDP datagrams (fragments reassembled),
RTP packets, call-setup latencies, and private addresses where they must not be."""
from __future__ import annotations

import re
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .addresses import PRIVATE_RE
from .proc import nsexec, spawn, stop_process, tail


class Capture:
    """tcpdump on `iface` in `ns` into `path`; `filter` is a pcap filter expression (None or ""
    captures everything, ARP included)."""

    def __init__(self, ns: str, iface: str, path: Path, filter: str | None = "udp"):
        self.path = path
        self._log = open(str(path) + ".log", "wb")
        # --immediate-mode: libpcap hands each packet over at once; in block
        # mode a partly filled block (the last ~1 s) is lost on SIGINT.
        argv = ["tcpdump", "-i", iface, "-n", "-s", "0", "-U", "--immediate-mode", "-Z", "root",
                "-w", path]
        if filter:
            argv.append(filter)
        self.proc = spawn(nsexec(ns, argv), stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size >= 24:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("tcpdump exited: " + tail(str(path) + ".log", 10))
            time.sleep(0.1)
        time.sleep(0.3)

    def stop(self) -> None:
        time.sleep(0.3)
        stop_process(self.proc, signal.SIGINT, grace=3.0)
        self._log.close()


def pcap_frames(path: Path):
    """Yield (ts, ethertype, layer-3 bytes) for every frame of a pcap file (Ethernet, Linux
    cooked or raw IPv4 link type)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        ts_s, ts_f, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        if linktype == 1:  # Ethernet
            if len(pkt) < 14:
                continue
            etype = struct.unpack("!H", pkt[12:14])[0]
            l3 = pkt[14:]
            if etype == 0x8100 and len(pkt) >= 18:
                etype = struct.unpack("!H", pkt[16:18])[0]
                l3 = pkt[18:]
        elif linktype == 113:  # Linux cooked
            if len(pkt) < 16:
                continue
            etype = struct.unpack("!H", pkt[14:16])[0]
            l3 = pkt[16:]
        elif linktype in (101, 228):  # raw IPv4
            etype, l3 = 0x0800, pkt
        else:
            continue
        yield ts_s + ts_f / (1e9 if nano else 1e6), etype, l3


def _ip4(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def pcap_addresses(path: Path):
    """Yield (ts, kind, src, dst) for every IPv4 packet (kind "ip/<protocol number>": the
    addresses of its IP header) and every ARP packet (kind "arp": sender and target protocol
    addresses) of a pcap file; kind "other/<ethertype hex>" for anything else (src, dst None)."""
    for ts, etype, l3 in pcap_frames(path):
        if etype == 0x0800 and len(l3) >= 20:
            yield ts, f"ip/{l3[9]}", _ip4(l3[12:16]), _ip4(l3[16:20])
        elif etype == 0x0806 and len(l3) >= 28:
            yield ts, "arp", _ip4(l3[14:18]), _ip4(l3[24:28])
        else:
            yield ts, f"other/{etype:04x}", None, None


def read_pcap_udp(path: Path):
    """Yield (ts, src, sport, dst, dport, payload) for every UDP/IPv4 datagram of a pcap file
    (Ethernet or Linux cooked link type; IPv4 fragments are reassembled)."""
    frags: dict = {}
    for ts, etype, l3 in pcap_frames(path):
        if etype != 0x0800 or len(l3) < 20:
            continue
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        ident = struct.unpack("!H", l3[4:6])[0]
        flags_frag = struct.unpack("!H", l3[6:8])[0]
        proto = l3[9]
        src = ".".join(str(b) for b in l3[12:16])
        dst = ".".join(str(b) for b in l3[16:20])
        body = l3[ihl:total]
        if proto != 17:
            continue
        more = bool(flags_frag & 0x2000)
        frag_off = (flags_frag & 0x1FFF) * 8
        if more or frag_off:
            key = (src, dst, ident)
            parts = frags.setdefault(key, {})
            parts[frag_off] = body
            if not more:
                parts["end"] = frag_off + len(body)
            if "end" in parts:
                buf, pos = b"", 0
                while pos in parts:
                    buf += parts[pos]
                    pos += len(parts[pos])
                if pos == parts["end"]:
                    del frags[key]
                    body = buf
                else:
                    continue
            else:
                continue
        if len(body) < 8:
            continue
        sport, dport = struct.unpack("!HH", body[:4])
        yield ts, src, sport, dst, dport, body[8:]


def setup_latencies_from_pcap(path: Path, uac_ip: str) -> list[float]:
    """INVITE -> 200 (CSeq INVITE) latency in ms per Call-ID, seen at the UAC's interface.
    Uses the first transmission of the initial INVITE and the first 200 for it."""
    sent: dict[bytes, float] = {}
    done: dict[bytes, float] = {}
    callid_re = re.compile(rb"\r\n(?:Call-ID|i)\s*:\s*([^\r\n]+)", re.I)
    cseq_re = re.compile(rb"\r\nCSeq\s*:\s*\d+\s+INVITE", re.I)
    for ts, src, _sp, dst, _dp, payload in read_pcap_udp(path):
        m = callid_re.search(payload)
        if not m or not cseq_re.search(payload):
            continue
        cid = m.group(1).strip()
        if src == uac_ip and payload.startswith(b"INVITE "):
            sent.setdefault(cid, ts)
        elif dst == uac_ip and payload.startswith(b"SIP/2.0 200"):
            if cid in sent and cid not in done:
                done[cid] = ts
    return [(done[c] - sent[c]) * 1000.0 for c in done]


@dataclass(frozen=True)
class RtpPkt:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    pt: int
    seq: int
    ssrc: int
    payload: bytes          # the whole RTP packet (header included)

    @property
    def key(self) -> tuple[int, int]:
        return self.ssrc, self.seq


def rtp_packets(path: Path) -> list[RtpPkt]:
    """Every UDP datagram of a capture that looks like RTP (version 2, not RTCP). SIP text never
    does: its first byte is a letter (version bits 01)."""
    out = []
    for ts, src, sport, dst, dport, data in read_pcap_udp(path):
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76:
            continue
        seq, = struct.unpack("!H", data[2:4])
        ssrc, = struct.unpack("!I", data[8:12])
        out.append(RtpPkt(ts, src, sport, dst, dport, data[1] & 0x7F, seq, ssrc, data))
    return out


def rtp_flow(pkts: list[RtpPkt], src: tuple[str, int | None], dst: tuple[str, int | None],
             since: float | None = None) -> list[RtpPkt]:
    """The packets from src to dst ((ip, port); port None: any), at or after `since`."""
    return [p for p in pkts
            if p.src == src[0] and (src[1] is None or p.sport == src[1])
            and p.dst == dst[0] and (dst[1] is None or p.dport == dst[1])
            and (since is None or p.ts >= since)]


def private_sip_leaks(path: Path) -> tuple[int, list[tuple]]:
    """Private (10.x) addresses in the UDP payloads of a capture: every line of each SIP message
    (headers and SDP), and non-SIP payloads as a whole. Returns (number of SIP messages,
    [(ts, src, sport, dst, dport, first line or "<non-SIP payload>", offending line)])."""
    sip, leaks = 0, []
    for ts, src, sport, dst, dport, payload in read_pcap_udp(path):
        if not (payload.startswith(b"SIP/2.0 ") or re.match(rb"^[A-Z]+ \S+ SIP/2\.0\r\n", payload)):
            m = PRIVATE_RE.search(payload)
            if m:
                leaks.append((ts, src, sport, dst, dport, "<non-SIP payload>", m.group().decode()))
            continue
        sip += 1
        for line in payload.split(b"\r\n"):
            if PRIVATE_RE.search(line):
                first = payload.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                leaks.append((ts, src, sport, dst, dport, first, line.decode("utf-8", "replace")))
    return sip, leaks


def private_header_leaks(path: Path, prefix: str = "10.") -> tuple[int, list[tuple]]:
    """Packets of a capture whose IPv4 header (or ARP sender/target) has an address starting
    with `prefix`. Returns (packets looked at, [(ts, kind, src, dst)])."""
    n, bad = 0, []
    for ts, kind, src, dst in pcap_addresses(path):
        n += 1
        if (src or "").startswith(prefix) or (dst or "").startswith(prefix):
            bad.append((ts, kind, src, dst))
    return n, bad


def trim_pcap(src: Path, dst: Path, packets: int) -> Path:
    """Copy the first `packets` records of the pcap file `src` (with its header) to `dst`: a
    shorter audio file for sipp's play_pcap_audio."""
    data = Path(src).read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, n = 24, 0
    while off + 16 <= len(data) and n < packets:
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        off += 16 + incl
        n += 1
    Path(dst).write_bytes(data[:off])
    return Path(dst)
