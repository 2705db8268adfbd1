"""Tests of the media relay: RTP through the SBC both ways (inbound and outbound calls), through
hold and resume, with spoofed sources, from the very first packet, a call whose audio stops ended
by the media timeout (restarts the SBC), and no relay streams or sockets left after 1,000 calls.
Each call plays sip-tester's g711a.pcap and is captured on both SBC interfaces (kit/media.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from kit.addresses import CARRIER2_IP, CARRIER_IP, GW1_IP, GW2_IP, SBC_PRIV_IP, SBC_PUB_IP, SIPP_MEDIA_PORT
from kit.calls import invites_at, run_calls, tail_if, wait_calls_down, where
from kit.ctx import Ctx, check
from kit.media import (CARRIER_LEG, GW_LEG, PCAP_PACKETS, MediaSampler, check_anchored,
                       check_call_record, check_crossing, check_media_counters, check_no_leak,
                       crossing, media_counters, rtp_call, wait_media_idle)
from kit.paths import SIPSEND
from kit.pcap import pcap_addresses, rtp_flow
from kit.proc import nsexec, spawn, stop_process
from kit.provisioning import BASE_CARRIERS, LAB_ROUTING, Provisioned, gw
from kit.registry import lab_test


def rtp_relay_test(ctx: Ctx, name: str, inbound: bool) -> None:
    run = rtp_call(ctx, name, inbound=inbound)
    check_anchored(run)
    c = crossing(run)
    check_crossing(run, c, int(0.95 * PCAP_PACKETS))
    check_no_leak(run)
    check_media_counters(run, c)
    check_call_record(ctx, run, c, "answered")
    pa, pb = c["ports"]
    print(f"  ({run.a.ns} -> {run.b.ns}: {c['fwd_ok']}/{c['sent']} relayed via {run.a.sbc_ip}:{pa} -> "
          f"{run.b.sbc_ip}:{pb}, echo {c['back_ok']}/{c['back']}; media.relayed +{run.delta('relayed')}, "
          f"dropped_no_destination +{run.delta('dropped_no_destination')})", flush=True)


@lab_test
def rtp_relay(ctx: Ctx):
    """Inbound call (carrier -> SBC private -> gateway .10) with audio both ways: sipp plays
    g711a.pcap from the carrier, the gateway echoes it. The SDP each side gets names the SBC's
    address there and an even relay port; >= 99 % of the packets cross the SBC unchanged each
    way (seen on priv0 and pub0); nothing 10.x on pub0 (SIP text, IP headers, ARP)."""
    rtp_relay_test(ctx, "rtp_relay", inbound=True)


@lab_test
def rtp_relay_outbound(ctx: Ctx):
    """The same for an outbound call: gateway .10 -> SBC public -> carrier 10.0.1.10."""
    rtp_relay_test(ctx, "rtp_relay_outbound", inbound=False)


@lab_test
def rtp_hold_resume(ctx: Ctx):
    """Audio, hold (re-INVITE a=sendonly), resume (a=sendrecv), audio again (the pcap played
    anew): every SDP of the call names the same relay port on each side, the direction
    attributes pass unchanged, and after the resume >= 99 % of the RTP crosses each way."""
    run = rtp_call(ctx, "rtp_hold_resume", uac_scen="uac_rtp_hold")
    check_anchored(run)
    dirs_a = [s.direction for s in run.answers()]
    dirs_b = [s.direction for s in run.offers()]
    check(dirs_b == ["sendrecv", "sendonly", "sendrecv"],
          f"directions in the INVITEs the gateway got: {dirs_b} (want sendrecv, sendonly, sendrecv)")
    check(dirs_a == ["sendrecv", "recvonly", "sendrecv"],
          f"directions in the 200s the carrier got: {dirs_a} (want sendrecv, recvonly, sendrecv)")
    oks = [m.ts for m in run.answer_msgs()]
    check(len(oks) == 3, f"the caller got {len(oks)} 200s to INVITEs (want 3)")
    before = crossing(run)
    check(before["fwd_ok"] > 0 and before["back_ok"] > 0, f"no audio crossed before the hold: {before}")
    after = crossing(run, since=oks[2])
    check_crossing(run, after, int(0.95 * PCAP_PACKETS), "after the resume: ")
    check_media_counters(run, before)
    print(f"  (relay ports {after['ports']} kept through hold/resume; after the resume "
          f"{after['fwd_ok']}/{after['sent']} forward, {after['back_ok']}/{after['back']} back)", flush=True)


SPOOF_SSRC = (0x5B00F001, 0x5B00F002)
SPOOF_COUNT = 25


@lab_test
def rtp_spoof_dropped(ctx: Ctx):
    """During an inbound call with audio (the carrier's 10.0.1.10:6000 latched), RTP to the SBC's
    private relay port from 10.0.1.20:6000 and from 10.0.1.10:7004: none of it leaves on pub0,
    nothing is sent back to the spoofers, media.dropped_wrong_source counts every packet and the
    real call's audio keeps flowing both ways."""

    def spoof(d: Path, sdp) -> dict:
        time.sleep(1.5)  # the caller's audio has latched by now
        m0 = media_counters(ctx)
        procs = []
        for i, src in enumerate((f"{CARRIER2_IP}:{SIPP_MEDIA_PORT}", f"{CARRIER_IP}:7004")):
            procs.append(spawn(nsexec("carrier", [
                sys.executable, SIPSEND, "rtp", "--bind", src, "--to", f"{sdp.conn}:{sdp.port}",
                "--count", str(SPOOF_COUNT), "--interval", "0.02", "--ssrc", hex(SPOOF_SSRC[i]),
                "--linger", "0.5"]), stdout=subprocess.PIPE))
        outs = []
        for p in procs:
            o, _ = p.communicate(timeout=15)
            stop_process(p)
            outs.append(json.loads(o or "{}"))
        time.sleep(0.2)
        m1 = media_counters(ctx)
        return {"spoofers": outs, "wrong_source": int(m1["dropped_wrong_source"]) - int(m0["dropped_wrong_source"]),
                "relayed_during": int(m1["relayed"]) - int(m0["relayed"])}

    run = rtp_call(ctx, "rtp_spoof_dropped", during=spoof)
    check_anchored(run)
    pa, pb = run.relay_ports()
    sp = run.extra
    spoofed = {s: 0 for s in SPOOF_SSRC}
    for p in rtp_flow(run.pkts["priv0"], (CARRIER2_IP, None), (SBC_PRIV_IP, pa)) \
            + rtp_flow(run.pkts["priv0"], (CARRIER_IP, 7004), (SBC_PRIV_IP, pa)):
        if p.ssrc in spoofed:
            spoofed[p.ssrc] += 1
    check(all(v == SPOOF_COUNT for v in spoofed.values()),
          f"spoofed RTP seen arriving at {SBC_PRIV_IP}:{pa} on priv0: {spoofed} (want {SPOOF_COUNT} each)")
    leaked = [p for p in run.pkts["pub0"] if p.ssrc in SPOOF_SSRC]
    check(not leaked, f"{len(leaked)} spoofed packets relayed to pub0, e.g. "
                      + "; ".join(f"{p.src}:{p.sport} -> {p.dst}:{p.dport} ssrc {p.ssrc:#x}" for p in leaked[:5]))
    strays = [p for p in run.pkts["pub0"] if p.src == SBC_PUB_IP and (p.dst, p.dport) != GW_LEG.media]
    check(not strays, f"{len(strays)} RTP packets left pub0 for somewhere else than {GW_LEG.media}")
    got_back = [(o.get("received"), o.get("sources")) for o in sp["spoofers"]]
    check(all(o.get("received") == 0 for o in sp["spoofers"]),
          f"the spoofers got RTP back (received, sources): {got_back}: the SBC re-latched on them")
    home = [p for p in run.pkts["priv0"] if p.src == SBC_PRIV_IP and (p.dst, p.dport) != CARRIER_LEG.media]
    check(not home, f"{len(home)} RTP packets went out priv0 to somewhere else than {CARRIER_LEG.media}: "
                    + "; ".join(f"-> {p.dst}:{p.dport}" for p in home[:5]))
    check(sp["wrong_source"] >= 2 * SPOOF_COUNT,
          f"status media.dropped_wrong_source went up by {sp['wrong_source']} while "
          f"{2 * SPOOF_COUNT} spoofed packets arrived")
    c = crossing(run)
    check_crossing(run, c, int(0.95 * PCAP_PACKETS), "with the spoofing: ")
    check_media_counters(run, c, wrong_source=2 * SPOOF_COUNT)
    print(f"  ({2 * SPOOF_COUNT} spoofed packets to {SBC_PRIV_IP}:{pa} dropped, "
          f"dropped_wrong_source +{sp['wrong_source']}; call audio {c['fwd_ok']}/{c['sent']} and "
          f"{c['back_ok']}/{c['back']})", flush=True)


@lab_test(restarts_sbc=True)
def rtp_media_timeout(ctx: Ctx):
    """With [media] timeout_s = 3, a call whose audio stops (the carrier plays g711a.pcap for 7 s,
    the gateway echoes it, then both fall silent without hanging up) is ended by the SBC with a
    BYE to both sides about 3 s after the last packet; counted as media_timeout in
    /api/v1/stats/calls, recorded with its media in /api/v1/calls, ports and streams freed."""
    try:
        ctx.sbc.restart(LAB_ROUTING, media={"timeout_s": 3})
        before = ctx.api.call_stats()["totals"].get("media_timeout", 0)
        run = rtp_call(ctx, "rtp_media_timeout", uac_scen="uac_rtp_timeout")
        check(run.ur.successful == 1, f"the gateway did not get the SBC's BYE: {run.ur.summary()}\n"
                                      f"{tail_if(run.ur.files.get('errors'))}")
        c = crossing(run)
        check_crossing(run, c, int(0.95 * PCAP_PACKETS))
        check_media_counters(run, c)
        after = ctx.api.call_stats()["totals"].get("media_timeout", 0)
        check(after - before == 1, f"stats/calls media_timeout went up by {after - before}, want 1")
        rec = check_call_record(ctx, run, c, "media_timeout")
        # 7 s of audio, then 3 s of silence, found by a once-a-second scan.
        check(9_500 <= rec["duration_ms"] <= 13_000,
              f"the call lasted {rec['duration_ms']} ms after the answer: want the 7 s of audio "
              f"plus the 3 s timeout (+ up to 1 s scan): {rec}")
        byes = [m for m in run.uac_msgs if m.is_request("BYE") and m.direction == "received"]
        check(byes and "media timeout" in (byes[0].header("Reason") or ""),
              f"the carrier's BYE has no Reason naming the media timeout: "
              f"{byes[0].head if byes else 'no BYE received'}")
        print(f"  (ended {rec['duration_ms']} ms after the answer; relayed {c['fwd_ok']}/{c['sent']} "
              f"and {c['back_ok']}/{c['back']})", flush=True)
    finally:
        ctx.sbc.restart(LAB_ROUTING)


@lab_test(restarts_sbc=True)
def rtp_max_sessions(ctx: Ctx):
    """With [media] max_sessions = 3 (RTPEngine's max-sessions), five calls with SDP at once: three
    are anchored and answered, the other two get 503 "media ports exhausted" before routing (the
    gateway never sees them, sip.calls_no_media_ports +2), and once the three end a new call is
    anchored again."""
    name = "rtp_max_sessions"
    try:
        ctx.sbc.restart(LAB_ROUTING, media={"max_sessions": 3})
        s0 = ctx.api.status()["sip"]
        r, res = run_calls(ctx, name, uas={GW1_IP: "uas_simple"}, uac_scen="uac_simple", calls=5,
                           rate=50, limit=5, duration_ms=3000, timeout_s=30)
        refused = ctx.api.status()["sip"]["calls_no_media_ports"] - s0["calls_no_media_ports"]
        at_gw = len(invites_at(res)[GW1_IP])
        check(r.successful == 3 and r.failed == 2 and refused == 2 and at_gw == 3,
              f"want 3 calls up, 2 refused before routing: {r.summary()}, calls_no_media_ports "
              f"+{refused}, {at_gw} INVITEs at the gateway\n{r.diagnostics()}")
        wait_calls_down(ctx)
        r, _ = run_calls(ctx, name, tag="after", uas={GW1_IP: "uas_simple"}, calls=1)
        check(r.ok(1), f"a call after the three ended: {r.summary()}\n{r.diagnostics()}")
        print(f"  (3 answered, 2 refused with 503, then 1 more answered)", flush=True)
    finally:
        ctx.sbc.restart(LAB_ROUTING)


@lab_test
def rtp_no_leak_after_calls(ctx: Ctx):
    """1,000 calls with SDP at 100 cps (each with a hold and a resume re-INVITE), then calls
    that end in CANCEL, 486, the SBC's own 503 (gateway 503) and a failover (.10 503, then .11):
    relay streams and sockets exist while they run, and once they are over status shows
    media.streams 0, media.sockets 0 and calls_up 0."""
    name = "rtp_no_leak_after_calls"
    wait_calls_down(ctx)
    m0 = wait_media_idle(ctx)
    phases = []
    with MediaSampler(ctx) as s:
        r, res = run_calls(ctx, name, tag="calls", uas={GW1_IP: "uas_call"}, uac_scen="uac_call",
                           calls=1000, rate=100, limit=200, duration_ms=100, timeout_s=60, trace_msg=False)
        check(r.ok(1000), f"calls: {r.summary()}\n{r.diagnostics()}")
        phases.append(f"1000 calls, max streams {s.max['streams']} sockets {s.max['sockets']}")
        for tag, uas_scen, uac_scen, n in (("cancel", "uas_ring", "uac_cancel", 20),
                                           ("busy", "uas_486", "uac_486", 20),
                                           ("gw503", "uas_503", "uac_503", 20)):
            r, res = run_calls(ctx, name, tag=tag, uas={GW1_IP: uas_scen}, uac_scen=uac_scen,
                               calls=n, rate=20, limit=20, timeout_s=40)
            check(r.ok(n), f"{tag}: {r.summary()}\n{r.diagnostics()}")
            phases.append(f"{n} {tag}")
        with Provisioned(ctx, BASE_CARRIERS, [gw(GW1_IP, 1, 2), gw(GW2_IP, 1, 1)]):
            r, res = run_calls(ctx, name, tag="failover", calls=20, rate=20, limit=20,
                               uas={GW1_IP: "uas_503", GW2_IP: "uas_simple"})
            check(r.ok(20), f"failover: {r.summary()} ({where(res)})\n{r.diagnostics()}")
            phases.append("20 failover")
    peak = dict(s.max)
    deadline = time.monotonic() + 5
    while True:
        st = ctx.api.status()
        m = st.get("media") or {}
        if (st.get("calls_up") == 0 and m.get("streams") == 0 and m.get("sockets") == 0) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (ctx.tdir(name) / "media.json").write_text(json.dumps({"before": m0, "peak": peak, "after": m}, indent=1))
    # The DPDK backend relays from its ports: it has no relay sockets.
    check(peak["streams"] > 0 and (peak["sockets"] > 0 or ctx.sbc.backend == "dpdk"),
          f"status never showed relay streams/sockets during the calls ({s.samples} samples: {peak}): "
          f"no media was set up, so the test proves nothing")
    check(st.get("calls_up") == 0 and m.get("streams") == 0 and m.get("sockets") == 0,
          f"5 s after the last call: calls_up {st.get('calls_up')}, media.streams {m.get('streams')}, "
          f"media.sockets {m.get('sockets')} (want 0, 0, 0; before the test {m0['streams']}/"
          f"{m0['sockets']}; peak {peak})")
    for k in ("bind_errors", "tx_errors"):
        check(int(m.get(k, 0)) == int(m0.get(k, 0)), f"status media.{k}: {m0.get(k)} -> {m.get(k)}")
    idle = int(m.get("sockets_idle", -1))
    check(0 <= idle <= 4096, f"status media.sockets_idle {idle}: want the sockets kept bound for "
                             f"later calls, at most 4096")
    print(f"  ({'; '.join(phases)}; afterwards streams 0, sockets 0, {idle} kept bound idle)", flush=True)


@lab_test
def rtp_first_packet(ctx: Ctx):
    """RTP that starts the moment the answer is through (sipp plays from right after its ACK,
    1-2 ms after the 200) is relayed from the very first packet, inbound and outbound: no packet
    lost, no ICMP port unreachable from the SBC's media address, no dropped_no_destination. (The
    relay thread takes up stream changes only between its 20 ms epoll waits.)"""
    problems = []
    for name, inbound in (("rtp_first_packet_in", True), ("rtp_first_packet_out", False)):
        run = rtp_call(ctx, name, inbound=inbound)
        c = crossing(run)
        icmp = [(i, src, dst) for i, path in run.pcaps.items()
                for _, kind, src, dst in pcap_addresses(path)
                if kind == "ip/1" and src in (SBC_PRIV_IP, SBC_PUB_IP)]
        first = sorted(rtp_flow(run.pkts[run.a.iface], run.a.media, (run.a.sbc_ip, c["ports"][0])),
                       key=lambda p: p.ts)
        t_ok = run.answer_msgs()[0].ts if run.answer_msgs() else None
        lost = [p for p in first if p.payload not in {q.payload for q in rtp_flow(
            run.pkts[run.b.iface], (run.b.sbc_ip, c["ports"][1]), run.b.media)}]
        if c["fwd_ok"] < c["sent"] or icmp or run.delta("dropped_no_destination"):
            problems.append(
                f"{name}: {c['fwd_ok']}/{c['sent']} relayed; lost seq "
                f"{[p.seq for p in lost][:5]} sent {[round((p.ts - t_ok) * 1000, 1) for p in lost][:5]} ms "
                f"after the caller got the 200; ICMP from the SBC: {icmp[:3]}; "
                f"dropped_no_destination +{run.delta('dropped_no_destination')}")
    check(not problems, "\n".join(problems))
