"""SRTP for the lab's own end points: libsrtp2 (libsrtp2.so.1) through ctypes (Session: protect /
unprotect of RTP and RTCP with one SDES key), the SDES a=crypto lines (RFC 4568) the tests write
and read, RTP/RTCP packets, and a small media end point (run_media: RTP every 20 ms from a UDP
socket, SRTP or plain, with RTCP sender reports on the next port, and a record of everything it
sent and received). self_check() is a round trip through both suites.

Stdlib only, no kit imports: kit/tls.py's UA program loads this file by path, and it is a program
too, the media end point inside a namespace:

    python3 -I kit/srtp.py '<json options of run_media, plus "result": path>'
    python3 -I kit/srtp.py --self-check
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import random
import re
import selectors
import socket
import struct
import sys
import time
from pathlib import Path

# --- libsrtp2 ---------------------------------------------------------------------------------------

# The SDES suites the SBC offers and takes: name -> (master key + salt bytes, RTP tag bytes).
SUITES = {
    "AEAD_AES_128_GCM": (16 + 12, 16),
    "AES_CM_128_HMAC_SHA1_80": (16 + 14, 10),
}
SRTCP_INDEX_LEN = 4            # E flag and SRTCP index, before the tag
_TRAILER_ROOM = 16 + 128 + 16  # SRTP_MAX_TRAILER_LEN (tag + MKI) and some slack

SSRC_ANY_INBOUND, SSRC_ANY_OUTBOUND = 2, 3
ERR_AUTH_FAIL, ERR_REPLAY_FAIL, ERR_REPLAY_OLD = 7, 9, 10


class _Ssrc(ctypes.Structure):          # srtp_ssrc_t
    _fields_ = [("type", ctypes.c_int), ("value", ctypes.c_uint)]


class _CryptoPolicy(ctypes.Structure):  # srtp_crypto_policy_t
    _fields_ = [("cipher_type", ctypes.c_uint32), ("cipher_key_len", ctypes.c_int),
                ("auth_type", ctypes.c_uint32), ("auth_key_len", ctypes.c_int),
                ("auth_tag_len", ctypes.c_int), ("sec_serv", ctypes.c_int)]


class _Policy(ctypes.Structure):        # srtp_policy_t (srtp2/srtp.h, libsrtp 2.x)
    pass


_Policy._fields_ = [("ssrc", _Ssrc), ("rtp", _CryptoPolicy), ("rtcp", _CryptoPolicy),
                    ("key", ctypes.POINTER(ctypes.c_ubyte)), ("keys", ctypes.c_void_p),
                    ("num_master_keys", ctypes.c_ulong), ("deprecated_ekt", ctypes.c_void_p),
                    ("window_size", ctypes.c_ulong), ("allow_repeat_tx", ctypes.c_int),
                    ("enc_xtn_hdr", ctypes.POINTER(ctypes.c_int)), ("enc_xtn_hdr_count", ctypes.c_int),
                    ("next", ctypes.POINTER(_Policy))]

_LIB = None


def lib():
    """libsrtp2, loaded and srtp_init()ed once."""
    global _LIB
    if _LIB is None:
        last = None
        for name in ("libsrtp2.so.1", "libsrtp2.so"):
            try:
                L = ctypes.CDLL(name)
                break
            except OSError as e:
                last = e
        else:
            raise OSError(f"libsrtp2 not found: {last}")
        vp, ip = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        L.srtp_init.restype = ctypes.c_int
        L.srtp_create.argtypes = [ctypes.POINTER(vp), ctypes.POINTER(_Policy)]
        L.srtp_create.restype = ctypes.c_int
        L.srtp_dealloc.argtypes = [vp]
        L.srtp_dealloc.restype = ctypes.c_int
        for f in ("srtp_protect", "srtp_unprotect", "srtp_protect_rtcp", "srtp_unprotect_rtcp"):
            getattr(L, f).argtypes = [vp, vp, ip]
            getattr(L, f).restype = ctypes.c_int
        for f in ("srtp_crypto_policy_set_rtp_default", "srtp_crypto_policy_set_rtcp_default",
                  "srtp_crypto_policy_set_aes_gcm_128_16_auth"):
            getattr(L, f).argtypes = [ctypes.POINTER(_CryptoPolicy)]
            getattr(L, f).restype = None
        st = L.srtp_init()
        if st != 0:
            raise SrtpError("srtp_init", st)
        _LIB = L
    return _LIB


class SrtpError(Exception):
    def __init__(self, what: str, status: int):
        super().__init__(f"{what}: srtp_err_status {status}")
        self.status = status


class Session:
    """One libsrtp session for one SDES key (master key then salt): `role` "protect" (ours,
    ssrc_any_outbound) or "unprotect" (the peer's, ssrc_any_inbound, a 128-packet replay window).
    RTP and RTCP share it, as RFC 3711 keys both from one master key."""

    def __init__(self, suite: str, key: bytes, role: str):
        if suite not in SUITES:
            raise ValueError(f"unknown SRTP suite {suite}")
        if len(key) != SUITES[suite][0]:
            raise ValueError(f"{suite}: key of {len(key)} bytes, want {SUITES[suite][0]}")
        L = lib()
        self.suite, self.role = suite, role
        pol = _Policy()
        if suite == "AEAD_AES_128_GCM":
            L.srtp_crypto_policy_set_aes_gcm_128_16_auth(ctypes.byref(pol.rtp))
            L.srtp_crypto_policy_set_aes_gcm_128_16_auth(ctypes.byref(pol.rtcp))
        else:
            L.srtp_crypto_policy_set_rtp_default(ctypes.byref(pol.rtp))
            L.srtp_crypto_policy_set_rtcp_default(ctypes.byref(pol.rtcp))
        pol.ssrc.type = SSRC_ANY_OUTBOUND if role == "protect" else SSRC_ANY_INBOUND
        self._key = (ctypes.c_ubyte * len(key)).from_buffer_copy(key)
        pol.key = ctypes.cast(self._key, ctypes.POINTER(ctypes.c_ubyte))
        pol.window_size = 128
        pol.allow_repeat_tx = 0
        pol.next = None
        self._ctx = ctypes.c_void_p()
        st = L.srtp_create(ctypes.byref(self._ctx), ctypes.byref(pol))
        if st != 0:
            raise SrtpError("srtp_create", st)

    def _run(self, fn: str, pkt: bytes) -> bytes:
        buf = ctypes.create_string_buffer(bytes(pkt), len(pkt) + _TRAILER_ROOM)
        n = ctypes.c_int(len(pkt))
        st = getattr(lib(), fn)(self._ctx, buf, ctypes.byref(n))
        if st != 0:
            raise SrtpError(fn, st)
        return buf.raw[:n.value]

    def protect(self, rtp: bytes) -> bytes:
        return self._run("srtp_protect", rtp)

    def unprotect(self, srtp: bytes) -> bytes:
        return self._run("srtp_unprotect", srtp)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return self._run("srtp_protect_rtcp", rtcp)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        return self._run("srtp_unprotect_rtcp", srtcp)

    def close(self) -> None:
        if self._ctx:
            lib().srtp_dealloc(self._ctx)
            self._ctx = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def rtp_overhead(suite: str) -> int:
    return SUITES[suite][1]


def rtcp_overhead(suite: str) -> int:
    return SRTCP_INDEX_LEN + SUITES[suite][1]


# --- SDES (RFC 4568) --------------------------------------------------------------------------------

CRYPTO_RE = re.compile(r"^a=crypto:(\d+)\s+(\S+)\s+inline:([A-Za-z0-9+/=]+)(\S*)\s*$", re.M)


def new_key(suite: str) -> bytes:
    return os.urandom(SUITES[suite][0])


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def crypto_line(tag: int, suite: str, key: bytes) -> str:
    return f"a=crypto:{tag} {suite} inline:{b64(key)}"


def sdp_cryptos(sdp: str) -> list[dict]:
    """The a=crypto lines of an SDP body: [{"tag", "suite", "key_b64", "key" (bytes or None when
    not base64), "rest" (lifetime/MKI after the key), "line"}]."""
    out = []
    for m in CRYPTO_RE.finditer(sdp.replace("\r\n", "\n")):
        try:
            key = base64.b64decode(m.group(3), validate=True)
        except ValueError:
            key = None
        out.append({"tag": int(m.group(1)), "suite": m.group(2), "key_b64": m.group(3), "key": key,
                    "rest": m.group(4), "line": m.group(0).strip()})
    return out


def sdp_audio(sdp: str) -> dict:
    """The first m=audio line of an SDP body: {"ip" (media-level c= over session-level), "port",
    "proto", "fmts", "rtcp" (a=rtcp port or None)}; {} when there is none."""
    sess_c = media_c = None
    out: dict = {}
    in_audio = False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("m="):
            if out:
                break
            f = line[2:].split()
            in_audio = f[:1] == ["audio"]
            if in_audio and len(f) >= 3:
                out = {"port": int(f[1].split("/")[0]), "proto": f[2], "fmts": f[3:], "rtcp": None}
        elif line.startswith("c="):
            addr = line.split()[-1].split("/")[0]
            if in_audio:
                media_c = addr
            elif not out:
                sess_c = addr
        elif line.startswith("a=rtcp:") and in_audio:
            out["rtcp"] = int(line[7:].split()[0])
    if out:
        out["ip"] = media_c or sess_c
    return out


def sdp_body(ip: str, port: int, proto: str = "RTP/AVP", cryptos: list[str] = ()) -> str:
    """A PCMA offer or answer at ip:port, with the given a=crypto lines."""
    lines = ["v=0", f"o=- {random.randint(1, 10**9)} 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0",
             f"m=audio {port} {proto} 8 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
             *cryptos, "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


# --- RTP and RTCP -----------------------------------------------------------------------------------

def rtp_packet(seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 8, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF,
                       ssrc) + payload


def rtp_fields(pkt: bytes) -> dict | None:
    """Version-2 RTP header fields, or None."""
    if len(pkt) < 12 or pkt[0] >> 6 != 2:
        return None
    _b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", pkt[:12])
    return {"pt": b1 & 0x7F, "seq": seq, "ts": ts, "ssrc": ssrc}


def rtcp_sr(ssrc: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    """An RTCP sender report without report blocks (28 bytes); the NTP time random enough to be
    unique."""
    ntp = int((time.time() + 2208988800) * (1 << 32))
    return struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, ntp, rtp_ts & 0xFFFFFFFF, packets, octets)


# --- the media end point ----------------------------------------------------------------------------

def bind_pair(ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP sockets on ip:port (RTP) and ip:port+1 (RTCP)."""
    socks = []
    for p in (port, port + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((ip, p))
        s.setblocking(False)
        socks.append(s)
    return socks[0], socks[1]


def run_media(o: dict, socks: tuple[socket.socket, socket.socket] | None = None) -> dict:
    """Send o["count"] RTP packets (PCMA, 160 random payload bytes, o["interval"] s apart, one SR
    on the RTCP port every o["rtcp_every"] packets) to o["remote"] = [ip, port] (RTCP to port + 1,
    or o["remote_rtcp"]); receive on both ports meanwhile and o["linger"] s after. o["send_key"] /
    o["recv_key"]: {"suite", "key_b64"} to protect what we send / unprotect what we get (None:
    plain). o["wait_first"] > 0: start sending only at the first packet received (or after that
    many seconds). Sockets: `socks`, else bound on o["ip"], o["port"].

    Returns {"sent": [{"seq", "ts", "plain", "wire"}] (hex), "sent_rtcp": [...], "got": [{"t", "src",
    "wire", "plain" or None, "err"}], "got_rtcp": [...], "started", "first_rx", ...}."""
    rtp_s, rtcp_s = socks or bind_pair(o["ip"], o["port"])
    remote = (o["remote"][0], int(o["remote"][1]))
    remote_rtcp = tuple(o["remote_rtcp"]) if o.get("remote_rtcp") else (remote[0], remote[1] + 1)
    tx = Session(o["send_key"]["suite"], base64.b64decode(o["send_key"]["key_b64"]), "protect") \
        if o.get("send_key") else None
    rx = Session(o["recv_key"]["suite"], base64.b64decode(o["recv_key"]["key_b64"]), "unprotect") \
        if o.get("recv_key") else None
    count, interval = int(o.get("count", 100)), float(o.get("interval", 0.02))
    rtcp_every = int(o.get("rtcp_every", 25))
    ssrc = random.getrandbits(32)
    seq0, ts0 = random.getrandbits(16), random.getrandbits(32)
    res: dict = {"local": list(rtp_s.getsockname()), "remote": list(remote), "remote_rtcp": list(remote_rtcp),
                 "ssrc": ssrc, "sent": [], "sent_rtcp": [], "got": [], "got_rtcp": [], "errors": [],
                 "srtp": bool(tx), "first_rx": None}
    sel = selectors.DefaultSelector()
    sel.register(rtp_s, selectors.EVENT_READ, "rtp")
    sel.register(rtcp_s, selectors.EVENT_READ, "rtcp")
    t0 = time.monotonic()
    wait_first = float(o.get("wait_first", 0))
    sending = wait_first <= 0
    start_by = t0 + wait_first
    next_send = t0 if sending else None
    end = None
    hard_end = t0 + wait_first + count * interval + float(o.get("linger", 1.0)) + 10
    sent = octets = 0

    def receive(kind: str, sock: socket.socket) -> None:
        while True:
            try:
                data, src = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # ICMP errors surface here
                res["errors"].append(f"recv {kind}: {e}")
                return
            row = {"t": round(time.monotonic() - t0, 4), "src": f"{src[0]}:{src[1]}", "wire": data.hex(),
                   "plain": None, "err": None}
            if rx is None:
                row["plain"] = data.hex()
            else:
                try:
                    row["plain"] = (rx.unprotect(data) if kind == "rtp" else rx.unprotect_rtcp(data)).hex()
                except SrtpError as e:
                    row["err"] = e.status
            res["got" if kind == "rtp" else "got_rtcp"].append(row)
            if kind == "rtp" and res["first_rx"] is None:
                res["first_rx"] = row["t"]

    while True:
        now = time.monotonic()
        if not sending and (res["first_rx"] is not None or now >= start_by):
            sending, next_send = True, now
        if sending and sent < count and now >= next_send:
            if sent == 0:
                res["started"] = round(now - t0, 4)
            seq, ts = (seq0 + sent) & 0xFFFF, (ts0 + 160 * sent) & 0xFFFFFFFF
            plain = rtp_packet(seq, ts, ssrc, os.urandom(160), marker=(sent == 0))
            wire = tx.protect(plain) if tx else plain
            try:
                rtp_s.sendto(wire, remote)
            except OSError as e:
                res["errors"].append(f"send rtp {sent}: {e}")
            res["sent"].append({"seq": seq, "ts": ts, "plain": plain.hex(), "wire": wire.hex()})
            sent += 1
            octets += 160
            if rtcp_every and sent % rtcp_every == 0:
                sr = rtcp_sr(ssrc, ts, sent, octets)
                w = tx.protect_rtcp(sr) if tx else sr
                try:
                    rtcp_s.sendto(w, remote_rtcp)
                except OSError as e:
                    res["errors"].append(f"send rtcp {sent}: {e}")
                res["sent_rtcp"].append({"plain": sr.hex(), "wire": w.hex()})
            next_send += interval
            if sent == count:
                end = now + float(o.get("linger", 1.0))
        if (end is not None and now >= end) or now >= hard_end:
            break
        wake = [end if end is not None else hard_end]
        if sending and sent < count:
            wake.append(next_send)
        elif not sending:
            wake.append(start_by)
        for key, _ in sel.select(max(0.0, min(wake) - time.monotonic())):
            receive(key.data, key.fileobj)
    res["elapsed"] = round(time.monotonic() - t0, 3)
    sel.close()
    for s in (rtp_s, rtcp_s):
        s.close()
    for sess in (tx, rx):
        if sess:
            sess.close()
    return res


# --- self-check -------------------------------------------------------------------------------------

def self_check() -> None:
    """A round trip per suite: RTP and RTCP protected with one session and unprotected with
    another of the same key (plaintext back, the expected overhead), a flipped bit and a replay
    refused, another key refused."""
    for suite in SUITES:
        key = new_key(suite)
        tx, rx, other = Session(suite, key, "protect"), Session(suite, key, "unprotect"), \
            Session(suite, new_key(suite), "unprotect")
        plain = rtp_packet(4242, 160, 0x11223344, os.urandom(160))
        wire = tx.protect(plain)
        assert len(wire) == len(plain) + rtp_overhead(suite), (suite, len(wire))
        assert wire[:12] == plain[:12] and wire[12:172] != plain[12:], suite
        bad = bytearray(wire)
        bad[20] ^= 1
        for probe, want in ((bytes(bad), ERR_AUTH_FAIL), (wire, None), (wire, ERR_REPLAY_FAIL)):
            try:
                got = rx.unprotect(probe)
            except SrtpError as e:
                assert e.status == want, (suite, e.status, want)
            else:
                assert want is None and got == plain, suite
        try:
            other.unprotect(tx.protect(rtp_packet(4243, 320, 0x11223344, b"x" * 160)))
            raise AssertionError(f"{suite}: another key unprotected")
        except SrtpError as e:
            assert e.status == ERR_AUTH_FAIL, (suite, e.status)
        sr = rtcp_sr(0x11223344, 160, 1, 160)
        w = tx.protect_rtcp(sr)
        assert len(w) == len(sr) + rtcp_overhead(suite) and w[8:28] != sr[8:], (suite, len(w))
        assert rx.unprotect_rtcp(w) == sr, suite
        for s in (tx, rx, other):
            s.close()


class MediaPeer:
    """run_media in namespace `ns` as a program of its own (this file), for the test's side: its
    result (JSON) and output in `out_dir` under `name`."""

    def __init__(self, ns: str, out_dir: Path, name: str, opts: dict):
        import subprocess
        from .proc import nsexec, spawn
        self.result_path = out_dir / f"{name}.media.json"
        self.stdout = out_dir / f"{name}.media.out"
        self.result_path.unlink(missing_ok=True)
        self.opts = dict(opts, result=str(self.result_path))
        self._out = open(self.stdout, "wb")
        self.proc = spawn(nsexec(ns, [sys.executable, "-I", Path(__file__).resolve(), json.dumps(self.opts)]),
                          stdout=self._out, stderr=subprocess.STDOUT)

    def wait(self, timeout: float) -> dict:
        """Its result once it has ended (stopped after `timeout` s): {"error": ...} if none."""
        import subprocess
        from .proc import stop_process
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        stop_process(self.proc, grace=2.0)
        if not self._out.closed:
            self._out.close()
        try:
            return json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            return {"error": f"no result from the media end point (rc {self.proc.returncode}): "
                             + self.stdout.read_text(errors="replace")[-800:]}


def main() -> None:
    if sys.argv[1:] == ["--self-check"]:
        self_check()
        print("srtp self-check ok: " + ", ".join(SUITES))
        return
    o = json.loads(sys.argv[1])
    try:
        res = run_media(o)
    except Exception as e:  # noqa: BLE001
        res = {"error": f"{type(e).__name__}: {e}"}
    with open(o["result"], "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
