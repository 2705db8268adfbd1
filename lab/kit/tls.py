"""SIP over TLS and TCP in the lab: test certificates made with the openssl CLI (make_certs), and a
small SIP user agent over TLS/TCP (Python's ssl, i.e. OpenSSL) that runs inside a namespace
(StreamUa): a UAS that answers INVITEs (and hangs up the calls it is told to), or a UAC that
places calls, pings, and answers the other side's BYE. Every message it reads or writes goes to a
JSON-lines log the test reads afterwards (stream_log). With SDES media (kit/srtp.py: options
"answers" of the UAS, "offers" of the UAC, per call) it answers or offers RTP/SAVP with an a=crypto
key of its own and runs RTP/RTCP, SRTP or plain, toward the SBC's media address for the call, its
record in the log (event "media") or the UAC's result.

This file is also the UA's program: `python3 -I kit/tls.py '<json options>'` (stdlib only at
module level; the kit helpers import lazily)."""
from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


# --- certificates ---------------------------------------------------------------------------------

def _openssl(args: list, cwd: Path) -> None:
    r = subprocess.run(["openssl"] + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {r.stderr.strip()}")


def _ca(d: Path, name: str) -> None:
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _leaf(d: Path, name: str, ca: str, san: str) -> None:
    _openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}"], d)
    (d / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\nsubjectAltName={san}\n"
                                   "keyUsage=critical,digitalSignature\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
              "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext"], d)


def make_certs(d: Path, sbc_ip: str, gw_ip: str) -> dict[str, Path]:
    """In `d`: the lab CA (ca.pem), the SBC's server certificate (IP SAN sbc_ip), the gateway's
    (IP SAN gw_ip), a rogue CA and a gateway certificate it signed (same IP SAN), and one of the
    lab CA for another address (IP SAN 192.0.2.99: a name mismatch). Returns their paths."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "rogue_ca")
    _leaf(d, "sbc", "ca", f"IP:{sbc_ip}")
    _leaf(d, "gw", "ca", f"IP:{gw_ip}")
    _leaf(d, "rogue_gw", "rogue_ca", f"IP:{gw_ip}")
    _leaf(d, "other_gw", "ca", "IP:192.0.2.99")
    return {k: d / f"{k}.pem" for k in ("ca", "rogue_ca", "sbc", "gw", "rogue_gw", "other_gw")} | \
        {k + "_key": d / f"{k}.key" for k in ("sbc", "gw", "rogue_gw", "other_gw")}


# --- SIP messages on a stream ---------------------------------------------------------------------

def parse(raw: bytes) -> dict:
    text = raw.decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    hdrs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if ":" in line:
            n, v = line.split(":", 1)
            hdrs.append((n.strip(), v.strip()))
    return {"first": lines[0], "headers": hdrs, "body": body, "text": text}


def hget(m: dict, name: str) -> list[str]:
    compact = {"via": "v", "from": "f", "to": "t", "call-id": "i", "contact": "m",
               "content-length": "l"}.get(name.lower())
    return [v for n, v in m["headers"] if n.lower() == name.lower() or (compact and n.lower() == compact)]


def h1(m: dict, name: str) -> str:
    v = hget(m, name)
    return v[0] if v else ""


def build(first: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    b = body.encode()
    lines = [first] + [f"{n}: {v}" for n, v in headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(b)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b


class Reader:
    """Content-Length framing of one stream; CRLFs between messages are returned as pongs."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def next(self, timeout: float):
        """A message (bytes), b"\\r\\n" (a pong / stray CRLF), None on timeout; EOFError at close."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf.startswith(b"\r\n") and not self.buf.startswith(b"\r\n\r\n"):
                self.buf = self.buf[2:]
                return b"\r\n"
            i = self.buf.find(b"\r\n\r\n")
            if i > 0:
                m = re.search(rb"^(?:content-length|l)\s*:\s*(\d+)", self.buf[:i], re.I | re.M)
                n = int(m.group(1)) if m else 0
                if len(self.buf) >= i + 4 + n:
                    msg, self.buf = self.buf[:i + 4 + n], self.buf[i + 4 + n:]
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except ssl.SSLWantReadError:
                continue
            if not data:
                raise EOFError
            self.buf += data


class Log:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, **kw) -> None:
        kw["t"] = time.time()
        with self.lock:
            self.f.write(json.dumps(kw) + "\n")


def branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex[:16]


# --- SDES media (kit/srtp.py, loaded by path: the UA program runs isolated, without kit/) -----------

_SRTP = None


def srtp_mod():
    global _SRTP
    if _SRTP is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("lab_kit_srtp", Path(__file__).with_name("srtp.py"))
        _SRTP = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_SRTP)
    return _SRTP


def _crypto_rows(cryptos: list[dict]) -> list[dict]:
    return [{k: c[k] for k in ("tag", "suite", "key_b64", "rest", "line")} for c in cryptos]


def media_thread(opts: dict, socks, done) -> threading.Thread:
    """run_media(opts) on the bound sockets in a thread; done(result) at the end (an "error" key
    if it failed)."""
    def run():
        try:
            res = srtp_mod().run_media(opts, socks)
        except Exception as e:  # noqa: BLE001
            res = {"error": f"{type(e).__name__}: {e}"}
        done(res)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def srtp_answer(o: dict, n: int, spec: dict, offer_body: str, cid: str, log: Log):
    """The UAS's answer to INVITE number n per spec {"crypto_tag": tag to take from the offer
    (None: a plain RTP/AVP answer), "proto" (default RTP/SAVP), "port", "media": run_media
    options (count, interval, rtcp_every, linger, wait_first)}: (SDP body, function starting the
    media once the 200 is sent, or None)."""
    S = srtp_mod()
    port = int(spec.get("port", o.get("media_port", 7000) + 2 * n))
    offer, cryptos = S.sdp_audio(offer_body), S.sdp_cryptos(offer_body)
    tag = spec.get("crypto_tag")
    chosen = next((c for c in cryptos if c["tag"] == tag), None) if tag is not None else None
    socks = S.bind_pair(o["ip"], port) if spec.get("media") else None
    key = None
    if chosen is not None:
        key = S.new_key(chosen["suite"])
        body = S.sdp_body(o["ip"], port, spec.get("proto", "RTP/SAVP"),
                          [S.crypto_line(tag, chosen["suite"], key)])
    else:
        body = S.sdp_body(o["ip"], port, "RTP/AVP")
    log.write(event="answer", n=n, call_id=cid, offer=offer, offer_cryptos=_crypto_rows(cryptos),
              chosen=_crypto_rows([chosen])[0] if chosen else None, key_b64=S.b64(key) if key else None,
              port=port)
    if not spec.get("media"):
        return body, None
    mo = dict(spec["media"], remote=[offer.get("ip"), offer.get("port")])
    mo.setdefault("wait_first", 3.0)
    if offer.get("rtcp"):
        mo["remote_rtcp"] = [offer.get("ip"), offer["rtcp"]]
    if chosen is not None:
        mo["send_key"] = {"suite": chosen["suite"], "key_b64": S.b64(key)}
        mo["recv_key"] = {"suite": chosen["suite"], "key_b64": chosen["key_b64"]}

    def start():
        media_thread(mo, socks, lambda res: log.write(event="media", n=n, call_id=cid, result=res))
    return body, start


# --- the UA program -------------------------------------------------------------------------------

def uas_conn(conn, peer, o: dict, log: Log, state: dict) -> None:
    """Answer every INVITE on this connection; hang up the calls whose ordinal is in o["hangup"]."""
    rd = Reader(conn)
    me = f"{o['ip']}:{o['port']}"
    tp = o["transport"]
    pending_bye: dict[str, float] = {}      # call-id -> when to send our BYE
    dialogs: dict[str, dict] = {}

    def send(data: bytes) -> None:
        conn.sendall(data)
        log.write(dir="out", peer=peer, msg=data.decode("utf-8", "replace"))

    while True:
        now = time.monotonic()
        for cid, when in list(pending_bye.items()):
            if now >= when:
                del pending_bye[cid]
                dg = dialogs[cid]
                hdrs = [("Via", f"SIP/2.0/{tp.upper()} {me};branch={branch()}"),
                        ("Max-Forwards", "70")] + [("Route", r) for r in dg["rr"]] + \
                       [("From", dg["local"]), ("To", dg["remote"]), ("Call-ID", cid),
                        ("CSeq", "1 BYE"), ("Contact", f"<sip:gw@{me};transport={tp}>")]
                send(build(f"BYE {dg['target']} SIP/2.0", hdrs))
        try:
            raw = rd.next(0.1)
        except (EOFError, OSError) as e:
            log.write(event="closed", peer=peer, why=str(e) or "eof")
            return
        if raw is None:
            continue
        if raw == b"\r\n":
            log.write(event="crlf", peer=peer)
            continue
        log.write(dir="in", peer=peer, msg=raw.decode("utf-8", "replace"))
        m = parse(raw)
        if m["first"].startswith("SIP/2.0"):
            continue
        method = m["first"].split()[0]
        if method == "ACK":
            continue
        to = h1(m, "To")
        base = [("Via", v) for v in hget(m, "Via")] + [("From", h1(m, "From"))]
        cid, cseq = h1(m, "Call-ID"), h1(m, "CSeq")
        tag = ";tag=" + uuid.uuid5(uuid.NAMESPACE_URL, cid).hex[:10]
        if ";tag=" not in to:
            to += tag
        common = base + [("To", to), ("Call-ID", cid), ("CSeq", cseq)]
        contact = ("Contact", f"<sip:gw@{me};transport={tp}>")
        if method == "INVITE":
            rr = [("Record-Route", r) for r in hget(m, "Record-Route")]
            with state["lock"]:
                n = state["invites"]
                state["invites"] += 1
            answers = o.get("answers") or []
            body, start_media = SDP.format(ip=o["ip"], port=o.get("media_port", 7000)), None
            if n < len(answers) and answers[n] is not None:
                try:
                    body, start_media = srtp_answer(o, n, answers[n], m["body"], cid, log)
                except Exception as e:  # noqa: BLE001
                    log.write(event="error", n=n, why=f"answer: {type(e).__name__}: {e}")
            send(build("SIP/2.0 100 Trying", common))
            send(build("SIP/2.0 180 Ringing", common + rr + [contact]))
            send(build("SIP/2.0 200 OK", common + rr + [contact], body))
            if start_media is not None:
                start_media()
            if n in o.get("hangup", []):
                target = re.search(r"<([^>]+)>", h1(m, "Contact"))
                dialogs[cid] = {"rr": hget(m, "Record-Route"), "local": to, "remote": h1(m, "From"),
                                "target": target.group(1) if target else h1(m, "Contact")}
                pending_bye[cid] = time.monotonic() + o.get("hangup_after", 0.5)
        else:
            send(build("SIP/2.0 200 OK", common + [contact]))


def run_uas(o: dict, log: Log) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((o["ip"], o["port"]))
    ls.listen(16)
    ctx = None
    if o["transport"] == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(o["cert"], o["key"])
    state = {"lock": threading.Lock(), "invites": 0}
    deadline = time.monotonic() + o.get("duration", 60)
    ls.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            conn, addr = ls.accept()
        except (socket.timeout, TimeoutError):
            continue
        peer = f"{addr[0]}:{addr[1]}"
        log.write(event="accepted", peer=peer)
        if ctx is not None:
            try:
                conn.settimeout(5)
                conn = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log.write(event="handshake_failed", peer=peer, why=str(e))
                conn.close()
                continue
            log.write(event="handshake_ok", peer=peer, version=conn.version())
        threading.Thread(target=uas_conn, args=(conn, peer, o, log, state), daemon=True).start()


def run_uac(o: dict, log: Log) -> None:
    """Connect to o["to"] from o["ip"]; o["calls"]: list of "caller_bye" | "callee_bye"; o["ping"]."""
    host, port = o["to"].rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5, source_address=(o["ip"], 0))
    sock = raw
    tp = o["transport"]
    if tp == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(o["ca"])
        sock = ctx.wrap_socket(raw, server_hostname=host)
        log.write(event="handshake_ok", peer=o["to"], version=sock.version(),
                  peer_san=str(sock.getpeercert().get("subjectAltName")))
    lport = sock.getsockname()[1]
    me = f"{o['ip']}:{lport}"
    rd = Reader(sock)
    results: dict = {"calls": [], "pong": None}

    def send(data: bytes) -> None:
        sock.sendall(data)
        log.write(dir="out", peer=o["to"], msg=data.decode("utf-8", "replace"))

    def recv(timeout: float):
        r = rd.next(timeout)
        if r is not None and r != b"\r\n":
            log.write(dir="in", peer=o["to"], msg=r.decode("utf-8", "replace"))
        elif r == b"\r\n":
            log.write(event="crlf", peer=o["to"])
        return r

    def answer(m: dict) -> None:
        send(build("SIP/2.0 200 OK", [("Via", v) for v in hget(m, "Via")] +
                   [("From", h1(m, "From")), ("To", h1(m, "To")), ("Call-ID", h1(m, "Call-ID")),
                    ("CSeq", h1(m, "CSeq")), ("Contact", f"<sip:gw@{me};transport={tp}>")]))

    if o.get("ping"):
        t0 = time.monotonic()
        sock.sendall(b"\r\n\r\n")
        log.write(event="ping")
        r = rd.next(3)
        results["pong"] = {"got": r.decode() if r else None, "ms": (time.monotonic() - t0) * 1000}
        log.write(event="pong", got=r.decode() if r else None)

    for i, how in enumerate(o["calls"]):
        cid = f"{uuid.uuid4().hex}@{o['ip']}"
        ftag = uuid.uuid4().hex[:8]
        frm = f"<sip:gw@{o['ip']}>;tag={ftag}"
        to = f"<sip:{o['number']}@{host}>"
        ruri = f"sip:{o['number']}@{o['to']};transport={tp}"
        contact = ("Contact", f"<sip:gw@{me};transport={tp}>")
        call = {"how": how, "call_id": cid, "invite": None, "bye": None, "callee_bye": False}
        results["calls"].append(call)
        port = o.get("media_port", 7000) + 2 * i
        body = SDP.format(ip=o["ip"], port=port)
        offers = o.get("offers") or []
        spec = offers[i] if i < len(offers) else None
        socks = media = None
        if spec is not None:
            S = srtp_mod()
            cr = spec.get("crypto")
            lines, proto = [], spec.get("proto", "RTP/SAVP" if cr else "RTP/AVP")
            if cr:
                key = S.new_key(cr["suite"])
                lines = [S.crypto_line(cr["tag"], cr["suite"], key)]
                call["offer"] = {"tag": cr["tag"], "suite": cr["suite"], "key_b64": S.b64(key), "port": port}
            body = S.sdp_body(o["ip"], port, proto, lines)
            if spec.get("media"):
                socks = S.bind_pair(o["ip"], port)
        send(build(f"INVITE {ruri} SIP/2.0",
                   [("Via", f"SIP/2.0/{tp.upper()} {me};branch={branch()};alias"), ("Max-Forwards", "70"),
                    ("From", frm), ("To", to), ("Call-ID", cid), ("CSeq", "1 INVITE"), contact],
                   body))
        final = None
        deadline = time.monotonic() + 10
        while final is None and time.monotonic() < deadline:
            r = recv(deadline - time.monotonic())
            if r is None or r == b"\r\n":
                continue
            m = parse(r)
            if m["first"].startswith("SIP/2.0") and h1(m, "Call-ID") == cid:
                code = int(m["first"].split()[1])
                if code >= 200:
                    final = m
        if final is None:
            call["invite"] = "timeout"
            break
        code = int(final["first"].split()[1])
        call["invite"] = code
        rto = h1(final, "To")
        routes = list(reversed(hget(final, "Record-Route")))
        tm = re.search(r"<([^>]+)>", h1(final, "Contact"))
        target = tm.group(1) if tm else ruri
        if spec is not None and code < 300:
            S = srtp_mod()
            ans, acr = S.sdp_audio(final["body"]), S.sdp_cryptos(final["body"])
            call["answer"] = {"audio": ans, "cryptos": _crypto_rows(acr)}
            if socks is not None:
                mo = dict(spec["media"], remote=[ans.get("ip"), ans.get("port")])
                mo.setdefault("wait_first", 2.0)
                if ans.get("rtcp"):
                    mo["remote_rtcp"] = [ans.get("ip"), ans["rtcp"]]
                theirs = next((c for c in acr if call.get("offer") and c["tag"] == call["offer"]["tag"]), None)
                if call.get("offer"):
                    mo["send_key"] = {"suite": call["offer"]["suite"], "key_b64": call["offer"]["key_b64"]}
                if theirs is not None:
                    mo["recv_key"] = {"suite": theirs["suite"], "key_b64": theirs["key_b64"]}
                media = media_thread(mo, socks, lambda res, c=call: c.__setitem__("media", res))
        elif socks is not None:
            for s_ in socks:
                s_.close()
        if code >= 300:
            send(build(f"ACK {ruri} SIP/2.0",
                       [("Via", f"SIP/2.0/{tp.upper()} {me};branch={branch()}"), ("Max-Forwards", "70"),
                        ("From", frm), ("To", rto), ("Call-ID", cid), ("CSeq", "1 ACK")]))
            continue
        dlg = [("Max-Forwards", "70")] + [("Route", r) for r in routes] + \
              [("From", frm), ("To", rto), ("Call-ID", cid)]
        send(build(f"ACK {target} SIP/2.0",
                   [("Via", f"SIP/2.0/{tp.upper()} {me};branch={branch()}")] + dlg + [("CSeq", "1 ACK")]))
        if how == "caller_bye":
            if media is not None:
                media.join(60)
            time.sleep(o.get("hold", 0.3))
            send(build(f"BYE {target} SIP/2.0",
                       [("Via", f"SIP/2.0/{tp.upper()} {me};branch={branch()}")] + dlg +
                       [("CSeq", "2 BYE"), contact]))
            deadline = time.monotonic() + 10
            while call["bye"] is None and time.monotonic() < deadline:
                r = recv(deadline - time.monotonic())
                if r is None or r == b"\r\n":
                    continue
                m = parse(r)
                if m["first"].startswith("SIP/2.0") and "BYE" in h1(m, "CSeq") and h1(m, "Call-ID") == cid:
                    call["bye"] = int(m["first"].split()[1])
                elif not m["first"].startswith("SIP/2.0"):
                    answer(m)
        else:   # the other side hangs up: its BYE must come over this connection
            deadline = time.monotonic() + 10
            while not call["callee_bye"] and time.monotonic() < deadline:
                r = recv(deadline - time.monotonic())
                if r is None or r == b"\r\n":
                    continue
                m = parse(r)
                if m["first"].startswith("BYE ") and h1(m, "Call-ID") == cid:
                    call["callee_bye"] = True
                    answer(m)
                elif not m["first"].startswith("SIP/2.0"):
                    answer(m)
            if media is not None:
                media.join(60)
    # Linger a moment for retransmissions the SBC might (wrongly) send, then close.
    end = time.monotonic() + o.get("linger", 0.5)
    while time.monotonic() < end:
        r = recv(end - time.monotonic())
        if r not in (None, b"\r\n"):
            m = parse(r)
            if not m["first"].startswith("SIP/2.0"):
                answer(m)
    sock.close()
    with open(o["result"], "w") as f:
        json.dump(results, f)


def main() -> None:
    o = json.loads(sys.argv[1])
    log = Log(o["log"])
    try:
        if o["mode"] == "uas":
            run_uas(o, log)
        else:
            run_uac(o, log)
    except Exception as e:  # noqa: BLE001
        log.write(event="error", why=f"{type(e).__name__}: {e}")
        if o.get("result"):
            with open(o["result"], "w") as f:
                json.dump({"error": f"{type(e).__name__}: {e}"}, f)
        raise


# --- the test's side --------------------------------------------------------------------------------

def stream_log(path: Path | str) -> list[dict]:
    """The UA's log: {"t", "dir": "in"|"out", "peer", "msg"} or {"t", "event", ...} rows."""
    try:
        return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    except OSError:
        return []


def wait_tcp_listen(ns: str, ip: str, port: int, timeout: float = 5.0) -> bool:
    from .proc import nsexec
    deadline = time.monotonic() + timeout
    needle = f"{ip}:{port}"
    while time.monotonic() < deadline:
        r = subprocess.run(nsexec(ns, ["ss", "-Hltn"]), capture_output=True, text=True, timeout=5)
        if any(needle in line.split() for line in r.stdout.splitlines()):
            return True
        time.sleep(0.1)
    return False


class StreamUa:
    """The UA program in namespace `ns`; `opts` as main() reads them (mode, ip, port/to,
    transport, ...); its log and result files in `out_dir` under `name`."""

    def __init__(self, ns: str, out_dir: Path, name: str, opts: dict):
        from .proc import nsexec, spawn
        self.log_path = out_dir / f"{name}.jsonl"
        self.result_path = out_dir / f"{name}.result.json"
        self.stdout = out_dir / f"{name}.out"
        for p in (self.log_path, self.result_path):
            p.unlink(missing_ok=True)
        self.opts = dict(opts, log=str(self.log_path), result=str(self.result_path))
        self._out = open(self.stdout, "wb")
        self.proc = spawn(nsexec(ns, [sys.executable, "-I", Path(__file__).resolve(),
                                      json.dumps(self.opts)]),
                          stdout=self._out, stderr=subprocess.STDOUT)
        if opts["mode"] == "uas" and not wait_tcp_listen(ns, opts["ip"], opts["port"], 5.0):
            self.stop()
            raise RuntimeError(f"{name} did not listen on {opts['ip']}:{opts['port']}: "
                               f"{self.stdout.read_text(errors='replace')[-800:]}")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.proc.poll() is not None:
                self.stop()

    def stop(self) -> None:
        from .proc import stop_process
        stop_process(self.proc, grace=2.0)
        if not self._out.closed:
            self._out.close()

    def log(self) -> list[dict]:
        return stream_log(self.log_path)

    def result(self) -> dict:
        try:
            return json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            return {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


if __name__ == "__main__":
    main()
