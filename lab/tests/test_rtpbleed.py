"""RTP bleed and injection (issue 15, item 6), on either backend: an attacker sprays the SBC's media
port range during live calls, as sippts' `rtpbleed` / `rtpbleedinject` do. Required: not one packet
of a call reaches the attacker, not one injected packet reaches either party, the calls' own audio
keeps crossing both ways and no call drops. The relay (dataplane/src/media/relay.rs, End::accepts)
latches an end's peer only from the SDP's IP (the SDP's exact address always wins; any port on the
SDP's IP while nothing is latched), then accepts only that exact source; everything else is dropped
and counted: media.dropped_wrong_source (a live port, the wrong source) or
media.dropped_unknown_port (no stream on that port).

  rtpbleed_latched_calls
        Three inbound calls (the carrier 10.0.1.10, SIP from 5062/5064/5066, RTP from 6000/6002/
        6004, one SSRC each, PCMA every 20 ms; the gateway .10 is sipp uas_call with -rtp_echo on
        6000) run with audio both ways; once every call's echo came back (both ends latched), two
        attackers - 10.0.1.77 added to ns carrier (c0) and 203.0.113.77 added to ns gw (g0) - spray
        the SBC's media address of their side (10.0.0.100 / 203.0.113.50) from port 40000 with
        RTP-looking packets (RTP v2, PT 8, SSRC 0xB1EED001 / 0xB1EED002, payload "BLEED-ATTACK" +
        the port + padding, 172 bytes), every even and odd port: 4 rounds of the first 4,096 ports
        of the configured range (where the relay's LIFO port pool puts live calls), then one sweep
        of the whole range (10000-60000), at 9,000 packets/s each (18,000/s in all). The attackers
        never use the ports the SDPs name (the test learns them only to count afterwards).
  rtpbleed_before_first_packet
        The early case: the attackers start first (8 rounds of the first 4,096 ports, 3.6 s), then
        the three calls are set up and stay silent for 2 s after the ACK (no RTP from either side:
        the relay has the SDP addresses, nothing latched; the gateway's end has no SDP before the
        200), then audio flows for 2.5 s. Every live port is hit at least twice before its call's
        first packet; the relay must not latch the attacker (its IP is not the SDP's).

Asserted by both: the attackers got 0 UDP datagrams back (ICMP errors, which the socket backend's
kernel sends for closed ports, are counted apart and not asserted), captures in ns carrier (c0) and
ns gw (g0) of everything UDP the SBC sent there show nothing to the attackers' addresses, no packet
with the attackers' SSRC or the BLEED-ATTACK marker, and RTP only to the parties' SDP addresses;
what the callers' RTP sockets received is their own SSRC from the SBC's answer address only;
>= 99 % of each call's packets reach the gateway and >= 99 % of those come back to the caller; each
call ends with the caller's BYE answered 200 (the SBC sent no BYE), the gateway completed 3 calls,
status showed calls_up 3 during the spray, the call records say answered with from_caller /
from_callee packet counts equal (within 2 %) to what the parties sent (no injected packet counted);
media.dropped_wrong_source went up by between 90 % of the packets sprayed at the calls' RTP and RTCP
ports while they existed and those sprayed at them from the INVITE to 0.5 s after the BYE (the hit
times estimated from each round's start and end); on DPDK, dropped_wrong_source +
dropped_unknown_port account for >= 95 % of all that was sprayed (on sockets, a port with no relay
socket is refused by the kernel and never reaches the relay: dropped_unknown_port only counts what
hit relay sockets kept bound idle between calls, and is printed); no bind or send errors; relayed
>= what the parties' captures show.

The attackers are a small stdlib sender (ATTACKER below, written to the test's directory as
attacker.py and run in ns carrier / ns gw): paced sends in rounds, every datagram that comes back
(and every ICMP message to its address) recorded, one JSON summary at the end. The callers are
CALLER below (caller.py), which drives kit/uapeer.py's Peer and Dialog with a silence after the ACK.
The test directory keeps c0.pcap, g0.pcap, attacker_*.json, caller_*.json and the sipp UAS traces.

Measured (2 cores; `--files rtpbleed`, three runs per backend, the same figures each time; a
"hit" is one packet to one port):
  socket  latched 14.1-14.3 s (the calls talk 10.4 s): 66,385 packets per attacker (132,770 in
          all) in 7.4 s at 9,000/s each; 0 datagrams back; nothing to the attackers or with their
          marker in c0/g0; each call 519 sent, 519 at the gateway, 519 echoed back; calls on relay
          ports 10000/10002/10004 on both sides; dropped_wrong_source +60 (3 calls x 4 ports x 5
          hits: 60 expected), dropped_unknown_port +0 (no idle relay socket yet), the other 132,710
          refused by the kernel: 13 ICMP port unreachable reached each attacker (rate-limited).
          early 9.1 s: 32,768 per attacker (65,536) in 3.6 s; 0 back; every live port hit 4-5
          times between the 200 and its call's first packet; each call 126/126/126;
          dropped_wrong_source +72 (bounds 72..76), dropped_unknown_port +24 (the 12 relay sockets
          of the first test, kept bound idle, hit twice before these calls took them again);
          9 ICMP per attacker.
  dpdk    latched 14.1-14.4 s: the same 132,770 packets, 0 back, nothing seen, 519/519/519 per
          call; dropped_wrong_source +60, dropped_unknown_port +132,712 (the rest, plus each
          attacker's ARP-priming datagram); no ICMP; io rx_missed +0.
          early 8.9-9.2 s: 65,536 sprayed, 0 back, 4-5 hits per live port before the first
          packet, 126/126/126 per call; dropped_wrong_source +72, dropped_unknown_port +65,466;
          rx_missed +0.
Before the spray each attacker sends one datagram to the SBC's port 9 (so that its kernel has the
SBC's MAC: packets waiting for ARP beyond a few are dropped); it is not counted as sprayed."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from kit.addresses import (CARRIER_IP, GW1_IP, MEDIA_PORTS, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP,
                           SIPP_MEDIA_PORT)
from kit.calls import tail_if, wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.media import wait_media_idle
from kit.netns import wait_udp_listen
from kit.paths import LAB
from kit.pcap import Capture, read_pcap_udp, rtp_packets
from kit.proc import JsonScript, tail
from kit.provisioning import NUMBER
from kit.registry import lab_test
from kit.sipp import Uas

MARKER = b"BLEED-ATTACK"
ATTACK_SPORT = 40000            # the attackers' source port (where a bleeding relay would send)
RATE = 9000                     # packets/s per attacker (two attackers: 18,000/s)
WINDOW = 4096                   # ports at the bottom of the range, sprayed round after round
LATCHED_ROUNDS = 4              # rounds of the window before the full sweep (latched case)
CALLS = 3
CALL_SIP_PORT0, CALL_RTP_PORT0 = 5062, SIPP_MEDIA_PORT
CALL_SSRC0 = 0x00C0FF00
LEAD_S = 1.5                    # latched case: audio before the spray
TAIL_S = 1.5                    # ... and after it
QUIET_S = 2.0                   # early case: silence after the ACK
EARLY_TALK_S = 2.5              # ... then audio
EARLY_LEAD_S = 0.4              # ... the spray starts this long before the calls
CROSS_MIN = 0.99


@dataclass(frozen=True)
class AttackSide:
    side: str           # "private" | "public"
    ns: str
    dev: str
    prefix: int
    ip: str             # the attacker's address, added for the test
    sbc_ip: str         # the SBC's media address it sprays
    ssrc: int


SIDES = (AttackSide("private", "carrier", "c0", 16, "10.0.1.77", SBC_PRIV_IP, 0xB1EED001),
         AttackSide("public", "gw", "g0", 24, "203.0.113.77", SBC_PUB_IP, 0xB1EED002))
ATTACK_SSRCS = {s.ssrc for s in SIDES}
ATTACK_IPS = {s.ip for s in SIDES}

ATTACKER = r'''
import json, select, socket, struct, sys, time

bind_ip, to_ip, rate, ssrc, plan, start_at, linger, sport, marker = sys.argv[1:10]
rate, start_at, linger = float(rate), float(start_at), float(linger)
ssrc, sport, plan, marker = int(ssrc, 0), int(sport), json.loads(plan), marker.encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((bind_ip, sport))
s.setblocking(False)
try:                                    # ICMP to us (port unreachable from a kernel): counted apart
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.setblocking(False)
except OSError:
    icmp = None
received, samples, by_src, icmp_seen = 0, [], {}, {}
pad = bytes(160 - len(marker) - 2)

def drain():
    global received
    while True:
        try:
            data, src = s.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            continue
        received += 1
        k = f"{src[0]}:{src[1]}"
        by_src[k] = by_src.get(k, 0) + 1
        if len(samples) < 200:
            samples.append({"t": time.time(), "src": k, "len": len(data),
                            "ssrc": struct.unpack("!I", data[8:12])[0] if len(data) >= 12 else None,
                            "head": data[:48].hex()})
    while icmp is not None:
        try:
            data = icmp.recv(65535)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        ihl = (data[0] & 15) * 4
        if len(data) < ihl + 2 or socket.inet_ntoa(data[16:20]) != bind_ip:
            continue
        k = f"{socket.inet_ntoa(data[12:16])} type {data[ihl]} code {data[ihl + 1]}"
        icmp_seen[k] = icmp_seen.get(k, 0) + 1

# One datagram to the discard port first, so that the kernel has the SBC's MAC before the spray
# (packets waiting for ARP beyond a few are dropped); not part of the plan, not counted in sent.
try:
    s.sendto(b"ARP-PRIME", (to_ip, 9))
except OSError:
    pass
while time.time() < start_at:
    time.sleep(0.005)
    drain()
first_ts = time.time()
t0 = time.monotonic()
sent, blocked, errors, seq, rounds = 0, 0, [], 0, []
for seg, (lo, hi, count) in enumerate(plan):
    for r in range(count):
        rs, n0, port = time.time(), sent, lo
        while port <= hi:
            allowed = int((time.monotonic() - t0) * rate) - sent
            if allowed <= 0:
                drain()
                time.sleep(0.0005)
                continue
            for _ in range(min(allowed, hi - port + 1, 64)):
                pkt = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) \
                    + marker + struct.pack("!H", port) + pad
                try:
                    s.sendto(pkt, (to_ip, port))
                except (BlockingIOError, InterruptedError):
                    blocked += 1
                    select.select([], [s], [], 0.01)
                    break                       # the same port again on the next pass
                except OSError as e:
                    errors.append(f"{port}: {e}")
                    if len(errors) > 100:
                        raise
                seq += 1
                sent += 1
                port += 1
        rounds.append([seg, lo, hi, rs, time.time(), sent - n0])
last_ts = time.time()
end = time.monotonic() + linger           # anything still on its way
while time.monotonic() < end:
    select.select([s] + ([icmp] if icmp is not None else []), [], [], 0.05)
    drain()
print(json.dumps({"ip": bind_ip, "to": to_ip, "sent": sent, "blocked": blocked, "errors": errors[:10],
                  "first_ts": first_ts, "last_ts": last_ts,
                  "rate": sent / max(1e-6, last_ts - first_ts), "rounds": rounds,
                  "received": received, "by_src": by_src, "samples": samples,
                  "icmp": icmp_seen}), flush=True)
'''

CALLER = r'''
import json, sys, time

kit, ip, sip_port, rtp_port, to, number, ssrc, quiet, talk = sys.argv[1:10]
sys.path.insert(0, kit)
import uapeer as u

sip_port, rtp_port, ssrc = int(sip_port), int(rtp_port), int(ssrc, 0)
quiet, talk = float(quiet), float(talk)
peer = u.Peer(ip, sip_port, [rtp_port])
print(json.dumps({"ready": True}), flush=True)
err = None
try:
    dlg = u.Dialog(peer, u.hostport(to), number)
    peer.notes["call_id"] = dlg.call_id
    peer.mark("invite")
    ok = dlg.invite(u.make_sdp(ip, rtp_port).encode(), "application/sdp")
    if ok is None or ok.code != 200:
        raise u.Failure(f"INVITE: final response {ok.first if ok else 'none'}")
    peer.mark("answered")
    media = u.sdp_addr(ok.sdp())
    if media is None:
        raise u.Failure("the 200 to the INVITE has no usable SDP")
    peer.notes["answer"] = [media[0], media[1]]
    for phase, span in (("quiet", quiet), ("talk", talk)):
        if phase == "talk":
            peer.mark("rtp")
            peer.sending = u.Rtp(rtp_port, media, ssrc)
        end = time.monotonic() + span
        while time.monotonic() < end:
            peer.poll(min(end, time.monotonic() + 0.25))
            u.ended_by_them(peer, dlg)
    u.end_call(peer, dlg)
except u.Failure as e:
    err = str(e)
print(json.dumps({"error": err, "marks": peer.marks, "notes": peer.notes, "ssrc": ssrc,
                  "port": rtp_port, "sip_port": sip_port, "rtp_tx": peer.rtp_tx,
                  "rtp_rx": peer.rtp_rx}), flush=True)
'''


# --- helpers --------------------------------------------------------------------------------------

def media_range(ctx: Ctx) -> tuple[int, int]:
    """The relay's configured port range ([media] port_min, port_max; the lab's defaults)."""
    try:
        m = tomllib.loads(ctx.sbc.config.read_text()).get("media", {})
    except (OSError, tomllib.TOMLDecodeError):
        m = {}
    return int(m.get("port_min", MEDIA_PORTS[0])), int(m.get("port_max", MEDIA_PORTS[1]))


def ns_addr(s: AttackSide, op: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "-n", s.ns, "addr", op, f"{s.ip}/{s.prefix}", "dev", s.dev],
                          capture_output=True, text=True)


def io_missed(ctx: Ctx) -> int | None:
    """rx_missed summed over the DPDK ports (None on the socket backend)."""
    ports = (ctx.api.status().get("io") or {}).get("ports") or []
    vals = [int(p.get("rx_missed", 0) or 0) for p in ports if isinstance(p, dict)]
    return sum(vals) if vals else None


def hit_times(rounds: list, port: int) -> list[float]:
    """When an attacker's packet to `port` left, estimated from each round's start and end (the
    rounds are paced evenly over their ports)."""
    out = []
    for _seg, lo, hi, rs, re_, _n in rounds:
        if lo <= port <= hi:
            out.append(rs + (port - lo + 0.5) / (hi - lo + 1) * (re_ - rs))
    return out


def hits(rounds: list, port: int, t0: float, t1: float) -> int:
    return sum(1 for t in hit_times(rounds, port) if t0 <= t <= t1)


# --- the run --------------------------------------------------------------------------------------

def bleed(ctx: Ctx, name: str, early: bool) -> None:
    d = ctx.tdir(name)
    attacker_py, caller_py = d / "attacker.py", d / "caller.py"
    attacker_py.write_text(ATTACKER)
    caller_py.write_text(CALLER)
    lo, hi = media_range(ctx)
    window = (lo, min(hi, lo + WINDOW - 1))
    win_s = (window[1] - window[0] + 1) / RATE
    if early:
        rounds = math.ceil((EARLY_LEAD_S + 0.2 + QUIET_S + 1.0) / win_s)
        plan = [[window[0], window[1], rounds]]
    else:
        plan = [[window[0], window[1], LATCHED_ROUNDS], [lo, hi, 1]]
    planned = sum((h - l + 1) * n for l, h, n in plan)
    attack_s = planned / RATE
    quiet, talk = (QUIET_S, EARLY_TALK_S) if early else (0.0, LEAD_S + attack_s + TAIL_S)

    wait_calls_down(ctx)
    m0 = wait_media_idle(ctx)
    missed0 = io_missed(ctx)
    added, attackers, callers, caps = [], {}, [], {}
    t_start = time.monotonic()
    mid_calls_up = []
    try:
        for s in SIDES:
            r = ns_addr(s, "add")
            check(r.returncode == 0, f"ip -n {s.ns} addr add {s.ip}/{s.prefix} dev {s.dev}: "
                                     f"{r.stderr.strip()}")
            added.append(s)
        # Everything UDP the SBC sends into each party's namespace (to the parties and to the
        # attackers alike); the spray itself (attacker -> SBC) stays out of the files.
        caps = {"carrier": Capture("carrier", "c0", d / "c0.pcap", filter=f"udp and src host {SBC_PRIV_IP}"),
                "gw": Capture("gw", "g0", d / "g0.pcap", filter=f"udp and src host {SBC_PUB_IP}")}

        def start_attackers(at: float) -> None:
            for s in SIDES:
                attackers[s.side] = JsonScript(d, f"attacker_{s.side}", s.ns, [
                    attacker_py, s.ip, s.sbc_ip, RATE, hex(s.ssrc), json.dumps(plan), f"{at:.6f}",
                    1.0, ATTACK_SPORT, MARKER.decode()])

        def start_callers() -> None:
            for i in range(CALLS):
                sip_port, rtp_port = CALL_SIP_PORT0 + 2 * i, CALL_RTP_PORT0 + 2 * i
                callers.append(JsonScript(d, f"caller_{i}", "carrier", [
                    caller_py, LAB / "kit", CARRIER_IP, sip_port, rtp_port, SBC_PRIV, NUMBER,
                    hex(CALL_SSRC0 + i), quiet, f"{talk:.3f}"]))
                if not wait_udp_listen("carrier", CARRIER_IP, sip_port, 5.0):
                    raise TestFailure(f"caller {i} did not bind {CARRIER_IP}:{sip_port}:\n"
                                      + tail(callers[-1].err, 20))

        with Uas("gw", "uas_call", GW1_IP, 5060, d, "uas",
                 extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
            if early:
                start_attackers(time.time() + 0.3)
                time.sleep(0.3 + EARLY_LEAD_S)
                start_callers()
                time.sleep(QUIET_S / 2)
            else:
                start_callers()
                time.sleep(LEAD_S)
                start_attackers(time.time() + 0.2)
                time.sleep(0.2 + attack_s / 2)
            mid_calls_up.append(ctx.api.status().get("calls_up"))
            res = {side: a.result(attack_s + 15) for side, a in attackers.items()}
            calls = [c.result(quiet + talk + 20) for c in callers]
            time.sleep(0.3)
            ur = uas.stop()
    finally:
        for p in list(attackers.values()) + callers:
            p.stop()
        for c in caps.values():
            c.stop()
        problems = []
        for s in added:
            rr = ns_addr(s, "del")
            if rr.returncode != 0:
                problems.append(f"ip -n {s.ns} addr del {s.ip}/{s.prefix} dev {s.dev}: {rr.stderr.strip()}")
        if problems:
            print(f"  cleanup: {'; '.join(problems)}", flush=True)
    elapsed = time.monotonic() - t_start
    time.sleep(0.3)                     # the relay publishes its counters after busy rounds
    m1 = wait_media_idle(ctx, int(m0["streams"]))
    missed1 = io_missed(ctx)
    delta = {k: int(m1.get(k, 0)) - int(m0.get(k, 0))
             for k in ("relayed", "dropped_unknown_port", "dropped_wrong_source",
                       "dropped_no_destination", "bind_errors", "tx_errors")}
    dpdk = ctx.sbc.backend == "dpdk"
    (d / "media.json").write_text(json.dumps({"before": m0, "after": m1, "delta": delta}, indent=1))

    # --- the attackers ran their plan --------------------------------------------------------
    sent = {side: r["sent"] for side, r in res.items()}
    total = sum(sent.values())
    for side, r in res.items():
        check(r["sent"] == planned and len(r["rounds"]) == sum(n for _, _, n in plan),
              f"the {side} attacker sent {r['sent']} of {planned} packets in {len(r['rounds'])} rounds "
              f"(errors {r['errors']}, blocked {r['blocked']})")

    # --- no call dropped ---------------------------------------------------------------------
    errs = [f"call {i}: {c['error']}" for i, c in enumerate(calls) if c.get("error")]
    check(not errs, "calls failed during the spray (an SBC BYE, or the caller's BYE not answered "
                    "200):\n" + "\n".join(errs) + f"\n--- UAS: {ur.summary()}")
    check(ur.successful == CALLS and ur.failed == 0,
          f"the gateway: {ur.summary()} (want {CALLS} calls)\n{tail_if(ur.files.get('errors'))}")
    check(mid_calls_up == [CALLS], f"status calls_up during the spray: {mid_calls_up} (want {CALLS})")

    # --- nothing bled to the attackers ---------------------------------------------------------
    for side, r in res.items():
        check(r["received"] == 0,
              f"RTP BLEED: the {side} attacker ({r['ip']}:{ATTACK_SPORT}) received {r['received']} "
              f"datagrams while spraying {r['to']}: by source {r['by_src']}; first: {r['samples'][:5]}")
    pcaps = {k: c.path for k, c in caps.items()}
    udp = {k: list(read_pcap_udp(p)) for k, p in pcaps.items()}
    to_attacker = [(k, ts, f"{s_}:{sp} -> {d_}:{dp}", pl[:32].hex())
                   for k, rows in udp.items() for ts, s_, sp, d_, dp, pl in rows if d_ in ATTACK_IPS]
    check(not to_attacker, f"RTP BLEED: the SBC sent {len(to_attacker)} datagrams to the attackers' "
                           f"addresses (captures {pcaps}), e.g. {to_attacker[:5]}")

    # --- nothing injected reached a party -----------------------------------------------------
    marked = [(k, ts, f"{s_}:{sp} -> {d_}:{dp}", pl[:40].hex()) for k, rows in udp.items()
              for ts, s_, sp, d_, dp, pl in rows
              if MARKER in pl or (len(pl) >= 12 and int.from_bytes(pl[8:12], "big") in ATTACK_SSRCS)]
    check(not marked, f"RTP INJECTION: {len(marked)} attacker packets (marker {MARKER!r} or SSRC "
                      f"{[hex(x) for x in ATTACK_SSRCS]}) left the SBC toward a party (captures {pcaps}), "
                      f"e.g. {marked[:5]}")
    ssrcs = {CALL_SSRC0 + i for i in range(CALLS)}
    answers = [tuple(c["notes"].get("answer") or ("?", 0)) for c in calls]
    check(all(a[0] == SBC_PRIV_IP for a in answers), f"the callers' answers name {answers}, want "
                                                     f"{SBC_PRIV_IP}")
    priv_ports = {a[1] for a in answers}
    g0 = rtp_packets(pcaps["gw"])
    c0 = rtp_packets(pcaps["carrier"])
    stray_gw = [p for p in g0 if (p.dst, p.dport) != (GW1_IP, SIPP_MEDIA_PORT) or p.ssrc not in ssrcs]
    check(not stray_gw, f"{len(stray_gw)} RTP packets from the SBC on g0 are not the calls' to "
                        f"{GW1_IP}:{SIPP_MEDIA_PORT}: " + "; ".join(
                            f"{p.src}:{p.sport} -> {p.dst}:{p.dport} ssrc {p.ssrc:#x}" for p in stray_gw[:5]))
    caller_media = {(CARRIER_IP, CALL_RTP_PORT0 + 2 * i) for i in range(CALLS)}
    stray_c = [p for p in c0 if (p.dst, p.dport) not in caller_media or p.ssrc not in ssrcs
               or p.sport not in priv_ports]
    check(not stray_c, f"{len(stray_c)} RTP packets from the SBC on c0 are not the calls' echo: " + "; ".join(
        f"{p.src}:{p.sport} -> {p.dst}:{p.dport} ssrc {p.ssrc:#x}" for p in stray_c[:5]))

    # --- the calls' own audio crossed both ways ----------------------------------------------
    per_call, live = [], []      # live: (attacker side, port, invite, answered, first packet, bye)
    for i, c in enumerate(calls):
        ssrc, (_, pa) = CALL_SSRC0 + i, answers[i]
        tx = [x for x in c["rtp_tx"] if x[3] == ssrc]
        rx = c["rtp_rx"]
        foreign = [x for x in rx if x[3] != ssrc or x[2] != f"{SBC_PRIV_IP}:{pa}"]
        check(not foreign, f"RTP INJECTION: caller {i} (SSRC {ssrc:#x}, answer {SBC_PRIV_IP}:{pa}) "
                           f"received {len(foreign)} foreign packets, e.g. {foreign[:5]}")
        at_gw = [p for p in g0 if p.ssrc == ssrc]
        pbs = sorted({p.sport for p in at_gw})
        check(len(pbs) == 1, f"call {i}: its RTP reached the gateway from SBC ports {pbs} (want one)")
        pb = pbs[0]
        fwd = len({p.seq for p in at_gw})
        back = len({x[4] for x in rx})
        desc = (f"call {i}: caller sent {len(tx)} from {CARRIER_IP}:{c['port']} to {SBC_PRIV_IP}:{pa}, "
                f"the gateway got {fwd} from {SBC_PUB_IP}:{pb}, the caller got {back} of the echo")
        check(len(tx) >= 40, f"too little audio to judge: {desc}")
        check(fwd >= CROSS_MIN * len(tx), f"caller -> gateway: {desc} (want >= {CROSS_MIN:.0%})")
        check(back >= CROSS_MIN * fwd, f"gateway -> caller: {desc} (want >= {CROSS_MIN:.0%})")
        marks = c["marks"]
        first = tx[0][0]
        latched = min(x[0] for x in rx)
        per_call.append(dict(i=i, pa=pa, pb=pb, tx=len(tx), fwd=fwd, back=back, first=first,
                             latched=latched, call_id=c["notes"].get("call_id"), marks=marks))
        for side, port in (("private", pa), ("private", pa + 1), ("public", pb), ("public", pb + 1)):
            live.append((side, port, marks["invite"], marks["answered"], first, marks["bye"]))

    # --- the attack met live, latched (or not yet latched) ports -------------------------------
    rounds = {side: r["rounds"] for side, r in res.items()}
    first_ts = min(r["first_ts"] for r in res.values())
    lower = sum(hits(rounds[s], p, ans + 0.05, bye - 0.05) for s, p, _inv, ans, _f, bye in live)
    upper = sum(hits(rounds[s], p, inv - 0.05, bye + 0.5) for s, p, inv, _a, _f, bye in live)
    per_port = [hits(rounds[s], p, ans + 0.05, bye - 0.05) for s, p, _inv, ans, _f, bye in live]
    check(min(per_port) >= 1, f"the spray missed a live port while its call was up ({per_port} hits "
                              f"per live port {[(s, p) for s, p, *_ in live]}): the test proves nothing")
    pre = []
    if early:
        check(all(first_ts < pc["marks"]["invite"] for pc in per_call),
              f"the spray (from {first_ts:.3f}) did not start before the INVITEs "
              f"{[pc['marks']['invite'] for pc in per_call]}")
        pre = [hits(rounds[s], p, ans, f) for s, p, _inv, ans, f, _bye in live]
        check(min(pre) >= 2, f"live ports hit {pre} times between the 200 and their call's first "
                             f"packet (want >= 2 each): the early case proves little")
    else:
        late = [pc["i"] for pc in per_call if pc["latched"] >= first_ts]
        check(not late, f"calls {late} had no echo back before the spray began: not latched yet")

    # --- the counters ------------------------------------------------------------------------
    ws, unk = delta["dropped_wrong_source"], delta["dropped_unknown_port"]
    icmp = {side: sum(r["icmp"].values()) for side, r in res.items()}
    missed = (missed1 - missed0) if missed0 is not None and missed1 is not None else None
    print(f"  ({'early' if early else 'latched'}: {CALLS} calls, ports priv "
          f"{sorted(pc['pa'] for pc in per_call)} pub {sorted(pc['pb'] for pc in per_call)}; sprayed "
          f"{sent} ({total} in all) over {plan} at {[round(r['rate']) for r in res.values()]}/s "
          f"in {max(r['last_ts'] for r in res.values()) - first_ts:.1f} s; back to the attackers "
          f"{[r['received'] for r in res.values()]} UDP, ICMP {icmp}; hits on live ports "
          f"{lower}..{upper}{f', before the first packet {pre}' if early else ''}; media "
          f"dropped_wrong_source +{ws}, dropped_unknown_port +{unk}, relayed +{delta['relayed']}, "
          f"no_destination +{delta['dropped_no_destination']}; rx_missed +{missed}; audio "
          f"{[(pc['tx'], pc['fwd'], pc['back']) for pc in per_call]} (sent, at gw, back); "
          f"{elapsed:.1f} s)", flush=True)
    check(ws >= 0.9 * lower and ws <= upper + 10,
          f"media.dropped_wrong_source went up by {ws}; the attackers sent {lower} packets to the "
          f"calls' ports while they were up and at most {upper} from INVITE to BYE")
    if dpdk:
        check(ws + unk >= 0.95 * total and ws + unk <= total + 50,
              f"dpdk: dropped_wrong_source +{ws} and dropped_unknown_port +{unk} for {total} packets "
              f"sprayed (rx_missed +{missed})")
    else:
        check(unk <= total - lower, f"dropped_unknown_port +{unk} for {total} sprayed")
    for k in ("bind_errors", "tx_errors"):
        check(delta[k] == 0, f"status media.{k} went up by {delta[k]}")
    seen = sum(pc["fwd"] + pc["back"] for pc in per_call)
    check(delta["relayed"] >= seen, f"media.relayed went up by {delta['relayed']}; the parties' "
                                    f"captures show {seen} relayed packets")

    # --- the SBC's records: answered, and no injected packet counted --------------------------
    deadline = time.monotonic() + 3
    want = {pc["call_id"] for pc in per_call}
    while True:
        recs = {r.get("caller_call_id"): r for r in ctx.api.calls(CALLS + 2)}
        if want <= set(recs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pc in per_call:
        rec = recs.get(pc["call_id"])
        check(rec is not None, f"GET /api/v1/calls has no record of call {pc['i']} ({pc['call_id']})")
        check(rec["result"] == "answered" and len(rec["media"]) == 1,
              f"call {pc['i']} recorded as {rec['result']} with {len(rec['media'])} media lines: {rec}")
        m = rec["media"][0]
        for key, want_n in (("from_caller", pc["tx"]), ("from_callee", pc["fwd"])):
            got = m[key]["packets"]
            check(abs(got - want_n) <= max(2, want_n // 50),
                  f"call {pc['i']} record {key}: {got} packets, the parties sent {want_n} (an injected "
                  f"packet counted, or audio lost): {m}")
    wait_calls_down(ctx)


# --- the tests ------------------------------------------------------------------------------------

@lab_test
def rtpbleed_latched_calls(ctx: Ctx):
    bleed(ctx, "rtpbleed_latched_calls", early=False)


@lab_test
def rtpbleed_before_first_packet(ctx: Ctx):
    bleed(ctx, "rtpbleed_before_first_packet", early=True)
