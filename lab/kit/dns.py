"""DNS for the lab: a small authoritative server (dnslib) run inside a namespace, whose zone a test
rewrites while it runs, and the resolver files `ip netns exec` shows a namespace's processes.

    with netns_etc("sbc", {"resolv.conf": "nameserver 127.0.0.1\\n"}), \\
         DnsServer(out_dir, ZONE) as dns:
        ...                                   # (re)start the SBC here: it reads them at start
        dns.set_zone(OTHER_ZONE)              # the next query is answered from OTHER_ZONE
        dns.queries()                         # what was asked, what was answered

`ip netns exec NS` bind-mounts each file of /etc/netns/NS/ over /etc/ (resolv.conf, hosts), so
a process started there after netns_etc() wrote them sees them; netns_etc() removes them (and the
directories it created) afterwards.

The server (this file run as a script: `python3 lab/kit/dns.py --zone FILE --log FILE`; only it
needs dnslib) answers every query from the zone file, read again for each query: master-file
lines (`NAME TTL IN TYPE RDATA`, `$TTL`), owner names absolute. A name with records, or with
names below it, gets those of the asked type (none: NOERROR without answers); any other name
NXDOMAIN. Negative answers
carry the zone's SOA (the one whose owner is the longest suffix of the name; a default `test.`
SOA with minimum 1 s when the zone has none), so resolvers keep them for a second at most. Each
query is logged as one JSON line: {"t", "name", "type", "rcode", "answers"}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

DEFAULT_SOA = "test. 1 IN SOA ns.test. hostmaster.test. 1 1 1 1 1"


# --- the tests' side (no dnslib here) ------------------------------------------------------------

@contextmanager
def netns_etc(ns: str, files: dict[str, str]):
    """Write /etc/netns/<ns>/<name> for each of `files` ({"resolv.conf": text, "hosts": text});
    afterwards put back what was there before (nothing, normally) and remove the directories
    this created."""
    base = Path("/etc/netns")
    d = base / ns
    made = [p for p in (base, d) if not p.exists()]
    d.mkdir(parents=True, exist_ok=True)
    before: dict[Path, bytes | None] = {}
    try:
        for name, text in files.items():
            p = d / name
            before[p] = p.read_bytes() if p.exists() else None
            p.write_text(text)
        yield d
    finally:
        for p, old in before.items():
            if old is None:
                p.unlink(missing_ok=True)
            else:
                p.write_bytes(old)
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError:
                pass


class DnsServer:
    """This file as a DNS server on ip:port inside `ns`, answering from `zone` (master-file text)
    until stop(); set_zone() replaces the zone for the next query."""

    def __init__(self, out_dir: Path, zone: str, ns: str = "sbc", ip: str = "127.0.0.1",
                 port: int = 53, name: str = "dns"):
        from .netns import wait_udp_listen
        from .proc import nsexec, spawn
        self.ns, self.ip, self.port = ns, ip, port
        self.zone_path = out_dir / f"{name}.zone"
        self.log_path = out_dir / f"{name}.queries.jsonl"
        self.out_path = out_dir / f"{name}.out"
        self.zones: list[tuple[float, str]] = []      # (time set, zone): what was served when
        self.set_zone(zone)
        self.log_path.write_text("")
        self._out = open(self.out_path, "wb")
        self.proc = spawn(nsexec(ns, [sys.executable, Path(__file__).resolve(), "--listen", ip,
                                      "--port", port, "--zone", self.zone_path,
                                      "--log", self.log_path]),
                          stdout=self._out, stderr=subprocess.STDOUT)
        if not wait_udp_listen(ns, ip, port, 5.0):
            self.stop()
            raise RuntimeError(f"the lab DNS server did not bind {ip}:{port} in ns {ns}:\n"
                               + self.out_path.read_text(errors="replace")[-2000:])

    def set_zone(self, zone: str) -> float:
        """Serve `zone` from now on (written whole, then renamed over the old one). Returns the
        wall-clock time it took effect."""
        tmp = self.zone_path.with_suffix(".tmp")
        tmp.write_text(zone)
        os.replace(tmp, self.zone_path)
        t = time.time()
        self.zones.append((t, zone))
        return t

    def queries(self, since: float = 0.0) -> list[dict]:
        """The queries answered since `since` (wall clock), oldest first."""
        out = []
        try:
            for line in self.log_path.read_text().splitlines():
                try:
                    q = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if q.get("t", 0) >= since:
                    out.append(q)
        except OSError:
            pass
        return out

    def stop(self) -> None:
        from .proc import stop_process
        if self.proc is not None:
            stop_process(self.proc, grace=2.0)
        if not self._out.closed:
            self._out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def brief_queries(qs: list[dict], limit: int = 30) -> str:
    """Queries as lines `HH:MM:SS.mmm TYPE name -> RCODE answers`."""
    def one(q):
        t = q.get("t", 0.0)
        stamp = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"
        return f"{stamp} {q.get('type')} {q.get('name')} -> {q.get('rcode')} {q.get('answers')}"
    lines = [one(q) for q in qs]
    if len(lines) > limit:
        lines = [f"... {len(lines) - limit} earlier"] + lines[-limit:]
    return "\n".join("    " + x for x in lines)


# --- the server (run inside the namespace) --------------------------------------------------------

def _serve(argv: list[str]) -> int:
    import argparse
    import signal
    import socket

    from dnslib import QTYPE, RCODE, RR, DNSRecord

    ap = argparse.ArgumentParser(description="the lab's authoritative DNS server")
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.listen, a.port))
    log = open(a.log, "a", buffering=1)
    default_soa = RR.fromZone(DEFAULT_SOA)[0]

    def load() -> list:
        try:
            return RR.fromZone(Path(a.zone).read_text())
        except Exception as e:  # noqa: BLE001 - a broken zone answers SERVFAIL, logged
            print(f"zone {a.zone}: {e}", flush=True)
            return None

    def soa_for(name: str, rrs: list):
        best = None
        for rr in rrs:
            if rr.rtype != QTYPE.SOA:
                continue
            owner = str(rr.rname).lower()
            if (name == owner or name.endswith("." + owner)) and (best is None or len(owner) > len(str(best.rname))):
                best = rr
        return best or default_soa

    while True:
        data, peer = sock.recvfrom(4096)
        try:
            req = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - not DNS: ignore
            continue
        reply = req.reply()
        q = req.q
        name = str(q.qname).lower()
        rrs = load()
        if rrs is None:
            reply.header.rcode = RCODE.SERVFAIL
        else:
            owned = [rr for rr in rrs if str(rr.rname).lower() == name]
            # A name that only has names below it exists too (an empty non-terminal: NOERROR).
            if not owned and not any(str(rr.rname).lower().endswith("." + name) for rr in rrs):
                reply.header.rcode = RCODE.NXDOMAIN
            for rr in owned:
                if q.qtype in (rr.rtype, QTYPE.ANY):
                    reply.add_answer(rr)
            if not reply.rr:
                reply.add_auth(soa_for(name, rrs))
        sock.sendto(reply.pack(), peer)
        log.write(json.dumps({"t": time.time(), "name": name, "type": QTYPE.get(q.qtype, str(q.qtype)),
                              "rcode": RCODE.get(reply.header.rcode, str(reply.header.rcode)),
                              "answers": [str(rr.rdata) for rr in reply.rr]}) + "\n")


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
