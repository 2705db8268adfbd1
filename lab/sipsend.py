#!/usr/bin/env python3
"""Tiny SIP-over-UDP helper for the namespace lab (stdlib only).

Run it inside a lab namespace, e.g. `ip netns exec carrier python3 lab/sipsend.py ...`.

  options  --bind IP --to IP:PORT [--timeout S]
        Send one OPTIONS and print every reply's status line ("REPLY <src> <status line>").
  send     --bind IP[:PORT] --to IP:PORT --file F [--timeout S]
        Send the file's bytes as ONE datagram and print the replies the same way.
  batch    --bind IP --to IP:PORT --dir D [--timeout S] FILE...
        For each file: one datagram from a fresh ephemeral port; print one JSON object per file
        with the replies seen within the timeout (on the ephemeral port and on the bind IP's
        5060/5050/5070, where a non-symmetric (RFC 3261 18.2.2) reply would land).
  rtp      --bind IP:PORT --to IP:PORT [--count N] [--interval S] [--ssrc X] [--linger S]
        Send N RTP packets (PCMA, 20 ms) from IP:PORT and count the RTP packets received on it;
        print one JSON object {sent, received, sources, ssrcs}.
  sink     --bind IP:PORT [--duration S]
        Answer OPTIONS with 200 and silently swallow everything else (a gateway that never
        answers INVITEs but still passes health probes).

Exit status: 0, or 2 on usage errors.
"""
import argparse
import json
import os
import random
import re
import select
import socket
import sys
import time

STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3})")


def hostport(s, default_port=None):
    if ":" in s:
        h, p = s.rsplit(":", 1)
        return h, int(p)
    if default_port is None:
        raise SystemExit(f"address needs a port: {s}")
    return s, default_port


def first_line(data):
    return data.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("utf-8", "replace")


def header(data, *names):
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        if b":" not in line:
            continue
        name, value = line.split(b":", 1)
        if name.strip().lower().decode("latin-1") in names:
            return value.strip().decode("utf-8", "replace")
    return None


def status_of(data):
    m = STATUS_RE.match(data)
    return int(m.group(1)) if m else None


def collect(socks, timeout):
    """Read datagrams from all sockets until `timeout` seconds have passed."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(socks, [], [], left)
        for s in ready:
            try:
                data, src = s.recvfrom(65535)
            except OSError:
                continue
            out.append((s.getsockname()[1], src, data))
    return out


def make_options(bind_ip, port, to):
    tag = "%08x" % random.getrandbits(32)
    branch = "z9hG4bK-lab-%08x" % random.getrandbits(32)
    callid = "%08x-lab-options" % random.getrandbits(32)
    host, tport = to
    msg = (
        f"OPTIONS sip:{host}:{tport} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {bind_ip}:{port};branch={branch};rport\r\n"
        f"From: <sip:lab@{bind_ip}>;tag={tag}\r\n"
        f"To: <sip:{host}:{tport}>\r\n"
        f"Call-ID: {callid}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:lab@{bind_ip}:{port}>\r\n"
        "Max-Forwards: 70\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return msg.encode()


def udp_socket(bind):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(bind)
    return s


def print_replies(replies):
    for _port, src, data in replies:
        print(f"REPLY {src[0]}:{src[1]} {first_line(data)}")
    sys.stdout.flush()


def cmd_options(a):
    ip, port = hostport(a.bind, 0)
    s = udp_socket((ip, port))
    to = hostport(a.to, 5060)
    s.sendto(make_options(ip, s.getsockname()[1], to), to)
    print_replies(collect([s], a.timeout))


def cmd_send(a):
    ip, port = hostport(a.bind, 0)
    s = udp_socket((ip, port))
    with open(a.file, "rb") as f:
        data = f.read()
    s.sendto(data, hostport(a.to, 5060))
    print_replies(collect([s], a.timeout))


def cmd_batch(a):
    to = hostport(a.to, 5060)
    # Listeners where a reply following the Via port (no rport) would arrive.
    extra = []
    for p in (5060, 5050, 5070):
        try:
            extra.append(udp_socket((a.bind, p)))
        except OSError as e:
            print(json.dumps({"warning": f"cannot listen on {a.bind}:{p}: {e}"}), flush=True)
    for name in a.files:
        path = os.path.join(a.dir, name)
        with open(path, "rb") as f:
            data = f.read()
        s = udp_socket((a.bind, 0))
        err = None
        try:
            s.sendto(data, to)
        except OSError as e:
            err = str(e)
        replies = collect([s] + extra, a.timeout)
        ephemeral = s.getsockname()[1]
        s.close()
        sent_callid = header(data, "call-id", "i")
        rows = []
        for port, src, rdata in replies:
            rcid = header(rdata, "call-id", "i")
            rows.append({
                "src": f"{src[0]}:{src[1]}",
                "to_port": port,
                "symmetric": port == ephemeral,
                "status": status_of(rdata),
                "first_line": first_line(rdata),
                "callid_match": rcid is None or sent_callid is None or rcid == sent_callid,
            })
        print(json.dumps({"file": name, "bytes": len(data), "send_error": err, "replies": rows}),
              flush=True)


def cmd_rtp(a):
    import struct
    ip, port = hostport(a.bind)
    s = udp_socket((ip, port))
    to = hostport(a.to)
    seqs, sources, ssrcs = set(), set(), set()
    sent = 0
    next_send = time.monotonic()
    end = next_send + a.count * a.interval + a.linger
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if sent < a.count and now >= next_send:
            pkt = struct.pack("!BBHII", 0x80, 8, sent, sent * 160, a.ssrc) + bytes([0xD5]) * 160
            try:
                s.sendto(pkt, to)
            except OSError:
                pass
            sent += 1
            next_send += a.interval
        wait = max(0.0, min(end, next_send if sent < a.count else end) - time.monotonic())
        r, _, _ = select.select([s], [], [], wait)
        if r:
            try:
                data, src = s.recvfrom(2048)
            except OSError:
                continue
            if len(data) >= 12 and data[0] >> 6 == 2:
                seq, = struct.unpack("!H", data[2:4])
                ssrc, = struct.unpack("!I", data[8:12])
                seqs.add((ssrc, seq))
                sources.add(f"{src[0]}:{src[1]}")
                ssrcs.add(ssrc)
    print(json.dumps({"sent": sent, "received": len(seqs), "sources": sorted(sources),
                      "ssrcs": sorted(ssrcs)}), flush=True)


def cmd_sink(a):
    ip, port = hostport(a.bind)
    s = udp_socket((ip, port))
    deadline = time.monotonic() + a.duration
    swallowed = 0
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
        if not r:
            continue
        data, src = s.recvfrom(65535)
        if data.startswith(b"OPTIONS "):
            hdrs = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            keep = [h for h in hdrs[1:] if h.split(b":", 1)[0].strip().lower() in
                    (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")]
            resp = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"
            s.sendto(resp, src)
        else:
            swallowed += 1
    print(f"SWALLOWED {swallowed}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("options")
    p.add_argument("--bind", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--timeout", type=float, default=1.0)
    p = sub.add_parser("send")
    p.add_argument("--bind", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--timeout", type=float, default=0.5)
    p = sub.add_parser("batch")
    p.add_argument("--bind", required=True, help="IP only; each file gets a fresh ephemeral port")
    p.add_argument("--to", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--timeout", type=float, default=0.5)
    p.add_argument("files", nargs="+")
    p = sub.add_parser("rtp")
    p.add_argument("--bind", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--ssrc", type=lambda x: int(x, 0), default=0x1ab5e77)
    p.add_argument("--linger", type=float, default=0.5)
    p = sub.add_parser("sink")
    p.add_argument("--bind", required=True)
    p.add_argument("--duration", type=float, default=60.0)
    a = ap.parse_args()
    {"options": cmd_options, "send": cmd_send, "batch": cmd_batch, "rtp": cmd_rtp, "sink": cmd_sink}[a.cmd](a)


if __name__ == "__main__":
    main()
