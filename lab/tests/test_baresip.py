"""Real user agents through the LiveKit shield (issue 12): baresip on both sides of the SBC, the
gateway .10 provisioned with profile "livekit" for each test's duration, "baresip on both sides
still talks and sends DTMF both ways through a `livekit` gateway". Asserted from what the UAs
themselves report and record (kit/baresip.py: ctrl_tcp events, the sndfile recordings of what each
encoded and decoded, the -s SIP trace), with both SBC interfaces captured for the evidence:

  baresip_inbound   the carrier's baresip (10.0.1.10, a 440 Hz tone) calls sip:NUMBER@10.0.0.100;
                    the gateway's (203.0.113.10, a 1000 Hz tone) answers at once; each side sends
                    four RFC 4733 digits (carrier 159#, gateway *260) during the ~5 s call, then
                    the carrier hangs up
  baresip_outbound  the same the other way: the gateway's baresip calls sip:NUMBER@203.0.113.50:5080,
                    the carrier's answers (an outbound call to 10.0.1.10:5060), the gateway hangs up

Required of each: the API shows the gateway with profile livekit; both UAs report the call
established (CALL_ESTABLISHED); each recorded the OTHER side's tone (>= 90 % of its 50 ms blocks
mostly at that frequency by a Goertzel filter, none at its own) for at least 90 % of what the other
encoded; each reported exactly the digits the other sent, in order (CALL_DTMF_START), and as many
ends (CALL_DTMF_END); the caller's BYE was answered 200, the callee answered the BYE it got 200,
and both UAs report the call closed; the SBC's calls_up is back to 0; the gateway's UA never saw a
10.x address in any SIP message, the carrier's never a 203.0.113.x one, and no SIP on pub0
carries a 10.x address. Each UA's config, log (SIP trace), recordings and the captures are in the
test's directory."""
from __future__ import annotations

import re
import time
from pathlib import Path

from kit.addresses import CARRIER_IP, GW1_IP, PRIVATE_RE, SBC_PRIV, SBC_PUB
from kit.baresip import BARESIP, Baresip, TracedMsg, tone_report
from kit.calls import wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.media import wait_media_idle
from kit.pcap import Capture, private_sip_leaks
from kit.proc import tail
from kit.provisioning import NUMBER, Provisioned, gw
from kit.registry import lab_test

LIVEKIT = [gw(GW1_IP, 1, 1, 1, "gw1-livekit", profile="livekit")]
CARRIER_TONE, GW_TONE = 440, 1000
CARRIER_DIGITS, GW_DIGITS = "159#", "*260"
PUBLIC_RE = re.compile(r"\b203\.0\.113\.\d{1,3}\b")
PRIVATE_RE_TEXT = re.compile(PRIVATE_RE.pattern.decode())     # the same on text
TALK_BEFORE, TALK_AFTER = 1.0, 1.0     # s of audio before the first digits and after the last


def requests_of(trace: list[TracedMsg], sent: bool, method: str) -> list[TracedMsg]:
    return [m for m in trace if m.sent == sent and m.first_line.startswith(method + " ")]


def answers_to(trace: list[TracedMsg], sent: bool, req: TracedMsg) -> list[TracedMsg]:
    """Responses sent (or received) with the request's Call-ID and CSeq."""
    return [m for m in trace if m.sent == sent and m.first_line.startswith("SIP/2.0 ")
            and m.header("Call-ID") == req.header("Call-ID") and m.header("CSeq") == req.header("CSeq")]


def leaks(trace: list[TracedMsg], pattern: re.Pattern) -> list[str]:
    out = []
    for m in trace:
        for line in m.text.split("\n"):
            if pattern.search(line):
                out.append(f"{'sent' if m.sent else 'received'} {m.first_line}: {line.strip()}")
    return out


def call_record(ctx: Ctx, call_id: str | None, timeout: float = 3.0) -> dict | None:
    """The SBC's record of the call whose caller leg has Call-ID call_id (GET /api/v1/calls)."""
    deadline = time.monotonic() + timeout
    while True:
        rec = next((c for c in ctx.api.calls(5) if c.get("caller_call_id") == call_id), None)
        if rec is not None or call_id is None or time.monotonic() > deadline:
            return rec
        time.sleep(0.2)


def ua_state(ua: Baresip) -> str:
    return f"{ua.tag}: events {ua.event_types()}\n    log tail:\n{tail(ua.log_path, 12)}"


def baresip_call(ctx: Ctx, name: str, inbound: bool) -> None:
    d = ctx.tdir(name)
    check(Path(BARESIP).exists(), f"{BARESIP} not found (apt-get install baresip-core)")
    with Provisioned(ctx, gateways=LIVEKIT) as p:
        prof = [g.get("profile") for g in p["gateways"]]
        check(prof == ["livekit"], f"POST /api/v1/gateways answered profiles {prof} (want livekit): "
                                   f"{p['gateways']}")
        wait_media_idle(ctx)
        caps = {i: Capture("sbc", i, d / f"{i}.pcap", filter="udp") for i in ("priv0", "pub0")}
        uas: list[Baresip] = []
        marks: dict[str, float] = {}
        try:
            carrier = Baresip(d, "carrier", "carrier", CARRIER_IP, 5060, tone_hz=CARRIER_TONE,
                              user=NUMBER)
            uas.append(carrier)
            gwua = Baresip(d, "gw", "gw", GW1_IP, 5060, tone_hz=GW_TONE, user=NUMBER)
            uas.append(gwua)
            caller, callee = (carrier, gwua) if inbound else (gwua, carrier)
            target = f"sip:{NUMBER}@{SBC_PRIV if inbound else SBC_PUB}"
            marks["dial"] = time.monotonic()
            caller.dial(target)
            est = {ua.tag: ua.wait_event("CALL_ESTABLISHED", 10.0) for ua in (caller, callee)}
            check(all(est.values()), f"{caller.tag} dialled {target}: the call was not established on "
                  f"both sides ({', '.join(t for t, e in est.items() if not e)} missing):\n"
                  f"{ua_state(caller)}\n{ua_state(callee)}\n(logs in {d})")
            for ua in (caller, callee):
                ua.wait_event("CALL_RTPESTAB", 3.0)
            time.sleep(TALK_BEFORE)
            marks["carrier_digits"] = time.monotonic()
            carrier.send_digits(CARRIER_DIGITS)
            time.sleep(0.6)
            marks["gw_digits"] = time.monotonic()
            gwua.send_digits(GW_DIGITS)
            time.sleep(TALK_AFTER)
            marks["hangup"] = time.monotonic()
            caller.hangup()
            for ua in (caller, callee):
                ua.wait_event("CALL_CLOSED", 5.0)
            time.sleep(0.5)     # the 200 to the BYE
        finally:
            for ua in reversed(uas):
                ua.stop()
            # tcpdump hands packets over in blocks (1 s timeout) and drops a partial one on SIGINT:
            # a quiet second first keeps the tail of the call (BYE, 200) in the captures.
            time.sleep(1.0)
            for c in caps.values():
                c.stop()
        problems: list[str] = []
        try:
            wait_calls_down(ctx, timeout=5.0, strict=True)
        except TestFailure as e:
            problems.append(f"the SBC: {e}")

    # Both ends closed, and the caller's BYE answered 200 (from their own SIP traces).
    for ua in (caller, callee):
        if ua.wait_event("CALL_CLOSED", 0) is None:
            problems.append(f"{ua.tag} never reported the call closed: events {ua.event_types()}")
    ct, et = caller.sip_trace(), callee.sip_trace()
    byes = requests_of(ct, True, "BYE")
    bye_ok = [a for b in byes[:1] for a in answers_to(ct, False, b) if a.first_line.startswith("SIP/2.0 200")]
    if len(byes) != 1 or not bye_ok:
        problems.append(f"{caller.tag} sent {len(byes)} BYE(s) ({[b.first_line for b in byes]}) and got "
                        f"{'a 200' if bye_ok else 'no 200'} for the first")
    c_byes = requests_of(et, False, "BYE")
    if len(c_byes) != 1 or not any(a.first_line.startswith("SIP/2.0 200")
                                   for a in answers_to(et, True, c_byes[0])):
        problems.append(f"{callee.tag} received {len(c_byes)} BYE(s) and did not answer one 200")
    # Audio: each recorded the other's tone, never its own.
    audio = {}
    for ua, other in ((carrier, gwua), (gwua, carrier)):
        closed = ua.event_times("CALL_CLOSED")
        est_t = ua.event_times("CALL_ESTABLISHED")
        talk = (closed[0] if closed else marks["hangup"]) - (est_t[0] if est_t else marks["dial"])
        r = tone_report(ua.recording("dec"), other.tone_hz, ua.tone_hz)
        sent = tone_report(other.recording("enc"), other.tone_hz, ua.tone_hz)["seconds"]
        audio[ua.tag] = r
        heard = r["blocks"] - r["silent"]
        desc = (f"{ua.tag} decoded {r['seconds']:.2f} s of the {sent:.2f} s {other.tag} encoded "
                f"({talk:.2f} s of call): {r['blocks']} blocks, {r['want']} at {other.tone_hz} Hz "
                f"({other.tag}'s tone), {r['other']} at its own {ua.tone_hz} Hz, {r['silent']} silent, "
                f"mean share {r['mean_share']:.2f} ({r['path']})")
        r["desc"] = desc
        r["short"] = (f"{ua.tag} decoded {r['seconds']:.2f}/{sent:.2f} s, {r['want']}/{r['blocks']} "
                      f"blocks at {other.tone_hz} Hz")
        if sent < 0.7 * talk or r["seconds"] < 0.9 * sent:
            problems.append(f"audio {other.tag} -> {ua.tag}: too little: {desc}")
        if heard == 0 or r["want"] < 0.9 * r["blocks"] or r["other"]:
            problems.append(f"audio {other.tag} -> {ua.tag}: not {other.tag}'s tone: {desc}")
    # DTMF both ways, exactly and in order.
    for ua, want in ((gwua, CARRIER_DIGITS), (carrier, GW_DIGITS)):
        got, ends = ua.digits_received(), ua.dtmf_ends()
        if got != want or ends != len(want):
            problems.append(f"DTMF to {ua.tag}: it reported digits {got!r} ({ends} ends), want {want!r} "
                            f"({len(want)} ends)")
    # The SBC's own record of the call agrees: answered, the digits counted each way, nothing lost.
    inv = requests_of(ct, True, "INVITE")
    call_id = inv[0].header("Call-ID") if inv else None
    rec = call_record(ctx, call_id)
    want_dir = "inbound" if inbound else "outbound"
    digits = {"from_caller": CARRIER_DIGITS if inbound else GW_DIGITS,
              "from_callee": GW_DIGITS if inbound else CARRIER_DIGITS}
    if rec is None:
        problems.append(f"GET /api/v1/calls has no record with caller_call_id {call_id}")
    else:
        media = rec.get("media") or [{}]
        seen = {k: (media[0].get(k) or {}) for k in digits}
        bad = [f"{k}: dtmf_events {v.get('dtmf_events')} (want {len(digits[k])}), lost {v.get('lost')}, "
               f"packets {v.get('packets')}" for k, v in seen.items()
               if v.get("dtmf_events") != len(digits[k]) or v.get("lost") != 0 or not v.get("packets")]
        if rec.get("result") != "answered" or rec.get("direction") != want_dir or len(media) != 1 or bad:
            problems.append(f"the SBC's call record (want answered, {want_dir}, one media line, "
                            f"{digits} as telephone events, nothing lost): {'; '.join(bad)}\n    {rec}")
    # Topology hiding as the UAs saw it, and on the wire at pub0.
    gw_leaks = leaks(gwua.sip_trace(), PRIVATE_RE_TEXT)
    if gw_leaks:
        problems.append("the gateway's UA saw private addresses:\n    " + "\n    ".join(gw_leaks[:8]))
    c_leaks = leaks(carrier.sip_trace(), PUBLIC_RE)
    if c_leaks:
        problems.append("the carrier's UA saw public addresses:\n    " + "\n    ".join(c_leaks[:8]))
    n_sip, wire = private_sip_leaks(caps["pub0"].path)
    wire = [x for x in wire if x[5] != "<non-SIP payload>"]
    if n_sip == 0 or wire:
        problems.append(f"pub0: {n_sip} SIP messages, {len(wire)} private addresses in them: "
                        + "; ".join(f"{x[5]}: {x[6]}" for x in wire[:5]))
    if not gwua.sip_trace() or not carrier.sip_trace():
        problems.append(f"no SIP trace read from the UAs' logs ({gwua.log_path}, {carrier.log_path})")
    check(not problems, "\n".join(problems) + f"\n(UA logs, configs, recordings and captures in {d})")
    print(f"  ({caller.tag} called {callee.tag}: {audio['carrier']['short']}, {audio['gw']['short']}; "
          f"digits {CARRIER_DIGITS} -> gw, {GW_DIGITS} -> carrier; BYE 200; calls_up 0)", flush=True)


@lab_test
def baresip_inbound(ctx: Ctx):
    """Gateway .10 with profile livekit; the carrier's baresip (440 Hz) calls sip:NUMBER@10.0.0.100,
    the gateway's baresip (1000 Hz, auto answer) answers; digits 159# carrier -> gateway and *260
    gateway -> carrier during the call; the carrier hangs up. See the file's docstring for what is
    required."""
    baresip_call(ctx, "baresip_inbound", inbound=True)


@lab_test
def baresip_outbound(ctx: Ctx):
    """The same with the gateway's baresip calling sip:NUMBER@203.0.113.50:5080 (an outbound call,
    to the carrier at 10.0.1.10:5060, which answers at once); the gateway hangs up."""
    baresip_call(ctx, "baresip_outbound", inbound=False)
