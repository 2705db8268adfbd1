"""The LiveKit shield (issue 12): calls through a gateway whose `profile` is "livekit" (set over
the API, `POST /api/v1/gateways {"profile": "livekit"}`, for each test's duration) and what the SBC
does at the carrier's edge for them, asserted from what the peers received and from captures on
both SBC interfaces:

  lk_session_refresh           session timers (RFC 4028) kept at the carrier's edge: refreshes that
                               change nothing are answered by the SBC, never reach the gateway; a
                               call nobody refreshes is ended by the SBC's BYEs
  lk_session_too_short         Session-Expires below 90: 422 with Min-SE: 90, the gateway sees nothing
  lk_transparent_passes_timers the same INVITE through a "transparent" gateway passes untouched
  lk_hold_answered_sendrecv    a hold answered a=sendrecv (as LiveKit does) is a=recvonly toward the
                               carrier, and nothing is relayed toward the holding carrier
  lk_refer_to_sbc              a REFER from the gateway naming the SBC itself is answered 403

The gateway stand-in is sipp lab/sipp/lk_uas.xml, which answers as LiveKit does (re-INVITEs 200
a=sendrecv, UPDATE 405, INFO 501); the carriers are lab/sipp/lk_uac_*.xml."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from kit.addresses import CARRIER_IP, GW1_IP, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP, SIPP_MEDIA_PORT
from kit.calls import tail_if, wait_calls_down
from kit.ctx import Ctx, check
from kit.media import (CARRIER_LEG, GW_LEG, PCAP_PACKETS, RtpRun, check_anchored, check_crossing,
                       crossing, rtp_call, wait_media_idle)
from kit.pcap import Capture, rtp_flow, rtp_packets
from kit.provisioning import Provisioned, gw
from kit.registry import lab_test
from kit.sip import SipMsg, received_invites, sipp_messages
from kit.sipp import Uas, run_uac

LIVEKIT = [gw(GW1_IP, 1, 1, 1, "gw1-livekit", profile="livekit")]
TRANSPARENT = [gw(GW1_IP, 1, 1, 1, "gw1-transparent", profile="transparent")]
EXPIRED_REASON = 'SIP;cause=408;text="session expired"'
SE = "90;refresher=uac"
MIN_SE = 90
# lk_uac_expire.xml: Session-Expires 90 and no refresh: BYE at 90 - min(32, 90 / 3) = 60 s.
EXPIRE_AFTER = 90 - min(32, 90 // 3)
EXPIRE_MEDIA_PORT = SIPP_MEDIA_PORT + 100   # the second carrier UAC's RTP port


# --- reading the sipp traces --------------------------------------------------------------------

def method_of(m: SipMsg) -> str:
    return "" if m.first_line.startswith("SIP/2.0") else m.first_line.split()[0]


def code_of(m: SipMsg) -> int:
    return int(m.first_line.split()[1]) if m.first_line.startswith("SIP/2.0 ") else 0


def tag_of(value: str | None) -> str | None:
    m = re.search(r";\s*tag=([^;>\s]+)", value or "")
    return m.group(1) if m else None


def requests(msgs: list, direction: str, call_id: str | None = None) -> list:
    """The requests sent or received (first transmission per CSeq and method), in order."""
    seen, out = set(), []
    for m in msgs:
        if m.direction != direction or not method_of(m) or (call_id and m.call_id != call_id):
            continue
        key = (m.call_id, m.header("CSeq"), method_of(m))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def final_to(msgs: list, req: SipMsg) -> SipMsg | None:
    """The first final response received to request `req` (same Call-ID and CSeq)."""
    return next((m for m in msgs if m.direction == "received" and code_of(m) >= 200
                 and m.call_id == req.call_id and m.header("CSeq") == req.header("CSeq")), None)


def tokens(values: list) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def head_of(m: SipMsg | None, lines: int = 30) -> str:
    if m is None:
        return "    (none)"
    return "\n".join("    " + x for x in m.text.rstrip("\n").split("\n")[:lines])


def sdp_text(m: SipMsg | None) -> str:
    return (m.body if m else "").replace("\r\n", "\n").strip()


def gateway_profile(ctx: Ctx) -> object:
    """The profile GET /api/v1/gateways shows for the lab gateway .10."""
    for g in ctx.api.list("gateways"):
        if GW1_IP in str(g.get("destination")):
            return g.get("profile", "<no profile field>")
    return "<no gateway .10>"


def sip_counters(ctx: Ctx) -> dict:
    return ctx.api.status().get("sip") or {}


def captures(d: Path) -> dict:
    return {i: Capture("sbc", i, d / f"{i}.pcap", filter=None) for i in ("priv0", "pub0")}


def timer_headers(m: SipMsg) -> list[str]:
    """What of the session timer a message carries: Session-Expires/x, Min-SE, and the `timer`
    option tag in Supported/k or Require."""
    found = [f"{n}: {v}" for n in ("Session-Expires", "x", "Min-SE") for v in m.headers(n)]
    for n in ("Supported", "k", "Require"):
        if "timer" in tokens(m.headers(n)):
            found.append(f"{n}: {', '.join(m.headers(n))}")
    return found


# --- (a) session timers at the carrier's edge ---------------------------------------------------

@lab_test
def lk_session_refresh(ctx: Ctx):
    """Gateway .10 with profile livekit. Two inbound calls at once, each INVITE with Supported:
    replaces, timer, Session-Expires: 90;refresher=uac, Min-SE: 90; the gateway stand-in answers as
    LiveKit (UPDATE 405, INFO 501) and echoes the RTP.

    Call 1 (lk_uac_refresh, ~98 s, longer than one 90 s interval): the carrier plays audio after the
    ACK and after each refresh, refreshing every 22 s with a bodiless UPDATE, a re-INVITE with the
    same SDP (o= version bumped), an UPDATE with the same SDP, a bodiless re-INVITE (its answer in
    the ACK), then BYE. Required: the gateway's INVITE has no Session-Expires, no Min-SE, no `timer`
    tag (Supported keeps `replaces`); the carrier's 200 has Require: timer and Session-Expires:
    90;refresher=uac; each refresh gets a 200 from the SBC with Session-Expires: 90;refresher=uac
    (a re-INVITE's and an SDP UPDATE's with the very SDP of the first 200, a bodiless UPDATE's
    without a body); the gateway receives no UPDATE, no re-INVITE and one ACK only (the refreshes'
    ACKs stop at the SBC); only the carrier's own BYE ends the call; the last pcap played crosses
    both ways (>= 99 %); status sip.refreshes_answered +4.

    Call 2 (lk_uac_expire): the same INVITE, audio at 0, 20 and 40 s, no refresh: the SBC sends BYE
    with Reason: SIP;cause=408;text="session expired" to the carrier and to the gateway
    90 - min(32, 90/3) = 60 s after the 200; status sip.sessions_expired +1."""
    name = "lk_session_refresh"
    d = ctx.tdir(name)
    with Provisioned(ctx, gateways=LIVEKIT):
        prof = gateway_profile(ctx)
        check(prof == "livekit", f"GET /api/v1/gateways shows profile {prof!r} for {GW1_IP} after "
                                 f"POST with \"profile\": \"livekit\"")
        s0 = sip_counters(ctx)
        m0 = wait_media_idle(ctx)
        caps = captures(d)
        res: dict = {}
        try:
            with Uas("gw", "lk_uas", GW1_IP, 5060, d, "uas",
                     extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
                th = threading.Thread(target=lambda: res.setdefault("expire", run_uac(
                    "carrier", "lk_uac_expire", CARRIER_IP, 5062, SBC_PRIV, d, "expire_uac", calls=1,
                    rate=1, timeout_s=100, extra=["-mp", str(EXPIRE_MEDIA_PORT)])))
                t0 = time.monotonic()
                th.start()
                r = run_uac("carrier", "lk_uac_refresh", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=1,
                            rate=1, duration_ms=10000, timeout_s=130,
                            extra=["-mp", str(SIPP_MEDIA_PORT)])
                th.join(max(1.0, t0 + 120 - time.monotonic()))   # its sipp -timeout is 100 s
                ur = uas.stop()
        finally:
            for c in caps.values():
                c.stop()
        s1 = sip_counters(ctx)
        m1 = wait_media_idle(ctx, int(m0["streams"]))
    rx = res.get("expire")
    uac = sipp_messages(r.files.get("messages"))
    exp = sipp_messages(d / "expire_uac.messages.log")
    gwm = sipp_messages(ur.files.get("messages"))
    problems: list[str] = []
    if not r.ok(1):
        problems.append(f"call 1 (refreshed): carrier {r.summary()}\n{tail_if(r.files.get('errors'))}")
    if rx is None or not rx.ok(1):
        problems.append(f"call 2 (never refreshed): carrier "
                        f"{rx.summary() + chr(10) + tail_if(rx.files.get('errors')) if rx else 'no result'}")

    # The gateway's leg of each call: its INVITE carries the carrier's From tag.
    gw_invites = received_invites(ur.files.get("messages"))
    gw_cid = {}
    for who, msgs in (("refresh", uac), ("expire", exp)):
        inv = next((m for m in msgs if m.direction == "sent" and m.is_request("INVITE")), None)
        t = tag_of(inv.header("From")) if inv else None
        g = next((m for m in gw_invites if tag_of(m.header("From")) == t), None)
        gw_cid[who] = (inv, g)
    inv1, g1 = gw_cid["refresh"]
    inv2, g2 = gw_cid["expire"]
    check(inv1 is not None and g1 is not None and inv2 is not None and g2 is not None,
          "\n".join(problems) + f"\nthe gateway got {len(gw_invites)} initial INVITEs; the refreshed "
          f"call's reached it: {g1 is not None}, the other's: {g2 is not None} (traces in {d})")

    # Call 1: the gateway's INVITE carries no session timer.
    left = timer_headers(g1)
    if left:
        problems.append(f"call 1: the INVITE the gateway got still carries {left}:\n{head_of(g1)}")
    if "replaces" not in tokens(g1.headers("Supported") + g1.headers("k")):
        problems.append(f"call 1: the INVITE the gateway got lost Supported: replaces (only `timer` "
                        f"goes):\n{head_of(g1)}")
    # The carrier's 200 carries the SBC's session timer.
    ok1 = final_to(uac, inv1)
    if ok1 is None or code_of(ok1) != 200:
        problems.append(f"call 1: the carrier's INVITE got {ok1.first_line if ok1 else 'no final response'}")
    else:
        if "timer" not in tokens(ok1.headers("Require")) or ok1.headers("Session-Expires") != [SE]:
            problems.append(f"call 1: the carrier's 200 has Require {ok1.headers('Require')} and "
                            f"Session-Expires {ok1.headers('Session-Expires')} (want timer and "
                            f"{SE!r}):\n{head_of(ok1)}")
    # Each refresh answered 200 by the SBC, with the session timer and the carrier's last SDP.
    sent = requests(uac, "sent", inv1.call_id)
    refreshes = [m for m in sent if method_of(m) in ("UPDATE", "INVITE") and m is not inv1]
    kinds = [(method_of(m), bool(sdp_text(m))) for m in refreshes]
    if kinds != [("UPDATE", False), ("INVITE", True), ("UPDATE", True), ("INVITE", False)]:
        problems.append(f"call 1: the carrier sent refreshes {kinds} (want a bodiless UPDATE, an "
                        f"INVITE with SDP, an UPDATE with SDP, a bodiless INVITE)")
    our_sdp = sdp_text(ok1)
    last_ok = None
    for q in refreshes:
        what = f"call 1: refresh {method_of(q)} (CSeq {q.header('CSeq')}, {'with' if sdp_text(q) else 'no'} SDP)"
        a = final_to(uac, q)
        if a is None or code_of(a) != 200:
            problems.append(f"{what}: got {a.first_line if a else 'no final response'}")
            continue
        last_ok = a
        if a.headers("Session-Expires") != [SE]:
            problems.append(f"{what}: the 200 has Session-Expires {a.headers('Session-Expires')} "
                            f"(want {SE!r}):\n{head_of(a)}")
        want_body = method_of(q) == "INVITE" or bool(sdp_text(q))
        if want_body and sdp_text(a) != our_sdp:
            problems.append(f"{what}: the 200's SDP is not the one the carrier was given before:\n"
                            f"--- first 200:\n{our_sdp}\n--- this 200:\n{sdp_text(a) or '(no body)'}")
        if not want_body and (sdp_text(a) or (a.header("Content-Length") or "0").strip() != "0"):
            problems.append(f"{what}: the 200 to a bodiless UPDATE has a body:\n{head_of(a)}")
    # The gateway saw the call set up and the carrier's BYE, nothing else.
    got1 = requests(gwm, "received", g1.call_id)
    seen1 = [f"{method_of(m)} (CSeq {m.header('CSeq')}{', To tag' if tag_of(m.header('To')) else ''})"
             for m in got1]
    reinv = [m for m in got1 if m.is_request("INVITE") and tag_of(m.header("To"))]
    acks = [m for m in got1 if m.is_request("ACK")]
    others = [m for m in got1 if method_of(m) not in ("INVITE", "ACK", "BYE")]
    if reinv or others or len(acks) != 1:
        problems.append(f"call 1: the gateway received {seen1} (want only the INVITE, one ACK and the "
                        f"BYE: no UPDATE, no re-INVITE, no refresh's ACK)")
    bye_sent = next((m for m in sent if m.is_request("BYE")), None)
    gw_byes = [m for m in got1 if m.is_request("BYE")]
    carrier_byes = [m for m in uac if m.direction == "received" and m.is_request("BYE")]
    if carrier_byes or len(gw_byes) != 1 or bye_sent is None or gw_byes[0].ts < bye_sent.ts - 0.05:
        t_ok = ok1.ts if ok1 is not None else inv1.ts

        def byes(ms):
            return [f"{m.ts - t_ok:.1f} s, Reason {m.header('Reason')!r}" for m in ms]
        problems.append(f"call 1: the carrier got BYEs {byes(carrier_byes)}, the gateway "
                        f"{byes(gw_byes)}; the carrier sent its own "
                        f"{f'{bye_sent.ts - t_ok:.1f} s' if bye_sent else 'never'} after the 200 "
                        f"(want only the carrier's BYE, relayed to the gateway)")
    if ok1 is not None and bye_sent is not None and bye_sent.ts - ok1.ts < 90:
        problems.append(f"call 1 lasted {bye_sent.ts - ok1.ts:.1f} s: not longer than one 90 s interval")

    # Call 2: nobody refreshes; the SBC ends it both ways at 60 s.
    ok2 = final_to(exp, inv2) if inv2 else None
    bye_c = next((m for m in exp if m.direction == "received" and m.is_request("BYE")), None)
    bye_g = next((m for m in requests(gwm, "received", g2.call_id) if m.is_request("BYE")), None)
    if ok2 is None or code_of(ok2) != 200:
        problems.append(f"call 2: the carrier's INVITE got {ok2.first_line if ok2 else 'no final response'}")
    for who, bye in (("carrier", bye_c), ("gateway", bye_g)):
        if bye is None:
            problems.append(f"call 2 (never refreshed): the {who} got no BYE")
            continue
        after = bye.ts - ok2.ts if ok2 else float("nan")
        if bye.header("Reason") != EXPIRED_REASON or not (EXPIRE_AFTER - 1.5 <= after <= EXPIRE_AFTER + 2.5):
            problems.append(f"call 2 (never refreshed): the {who} got a BYE {after:.1f} s after the 200 "
                            f"with Reason {bye.header('Reason')!r} (want {EXPIRED_REASON!r} at "
                            f"{EXPIRE_AFTER} s):\n{head_of(bye)}")
    if any(m.direction == "sent" and m.is_request("BYE") for m in exp):
        problems.append("call 2: the carrier sent a BYE of its own (its scenario never does)")
    got2 = [method_of(m) for m in requests(gwm, "received", g2.call_id)]
    if sorted(got2) != ["ACK", "BYE", "INVITE"]:
        problems.append(f"call 2: the gateway received {got2} (want INVITE, ACK, the SBC's BYE)")

    for key, want in (("refreshes_answered", 4), ("sessions_expired", 1)):
        if key not in s1:
            problems.append(f"status sip has no {key}: {sorted(s1)}")
        elif int(s1[key]) - int(s0.get(key, 0)) != want:
            problems.append(f"status sip.{key} went up by {int(s1[key]) - int(s0.get(key, 0))} (want {want})")
    check(not problems, "\n".join(problems) + f"\n(traces and captures in {d})")

    # Audio still crosses at the end: the pcap played after the last refresh's 200.
    pkts = {i: rtp_packets(c.path) for i, c in caps.items()}
    run = RtpRun(d, CARRIER_LEG, GW_LEG, r, ur, uac, [m for m in gwm if m.call_id == g1.call_id],
                 {i: c.path for i, c in caps.items()}, pkts, m0, m1, {})
    check_anchored(run)
    c = crossing(run, since=last_ok.ts)
    check_crossing(run, c, int(0.95 * PCAP_PACKETS), "after the last refresh: ")
    print(f"  (4 refreshes answered by the SBC with Session-Expires {SE}, none at the gateway; the "
          f"call lasted {bye_sent.ts - ok1.ts:.0f} s and was ended by the carrier; audio after the last "
          f"refresh {c['fwd_ok']}/{c['sent']} and {c['back_ok']}/{c['back']}; the unrefreshed call got "
          f"the SBC's BYE {bye_c.ts - ok2.ts:.1f} s / {bye_g.ts - ok2.ts:.1f} s after its 200)", flush=True)


def timer_call(ctx: Ctx, d: Path, tag: str, se: int, uas_scen: str) -> tuple[list, list]:
    """One lk_uac_timer call (Session-Expires: se) against a sipp UAS `uas_scen` on gateway .10;
    returns the carrier's and the gateway's messages."""
    with Uas("gw", uas_scen, GW1_IP, 5060, d, f"{tag}_uas") as uas:
        r = run_uac("carrier", "lk_uac_timer", CARRIER_IP, 5060, SBC_PRIV, d, f"{tag}_uac", calls=1,
                    rate=1, duration_ms=300, timeout_s=20, extra=["-set", "se", str(se)])
        ur = uas.stop()
    check(r.ok(1), f"{tag}: carrier {r.diagnostics()}\n--- gateway: {ur.summary()}\n"
                   f"{tail_if(ur.files.get('errors'))}")
    return sipp_messages(r.files.get("messages")), sipp_messages(ur.files.get("messages"))


@lab_test
def lk_session_too_short(ctx: Ctx):
    """Gateway .10 with profile livekit: an INVITE with Session-Expires: 60;refresher=uac (Min-SE:
    60) gets 422 from the SBC with Min-SE: 90 (the carrier ACKs it), and the gateway receives
    nothing at all (no INVITE, no ACK)."""
    name = "lk_session_too_short"
    d = ctx.tdir(name)
    with Provisioned(ctx, gateways=LIVEKIT):
        uac, gwm = timer_call(ctx, d, "short", 60, "lk_uas")
    inv = next((m for m in uac if m.direction == "sent" and m.is_request("INVITE")), None)
    fin = final_to(uac, inv) if inv else None
    check(fin is not None and code_of(fin) == 422 and fin.headers("Min-SE") == [str(MIN_SE)],
          f"the carrier's INVITE with Session-Expires: 60 got:\n{head_of(fin)}\n(want 422 with "
          f"Min-SE: {MIN_SE})")
    got = [m.first_line for m in gwm if m.direction == "received"]
    check(not got, f"the gateway received {got} for a call refused with 422")
    wait_calls_down(ctx, strict=True)
    print(f"  ({fin.first_line}, Min-SE: {fin.header('Min-SE')}; nothing reached the gateway)", flush=True)


@lab_test
def lk_transparent_passes_timers(ctx: Ctx):
    """Without the shield the session timer is the endpoints' business. Gateway .10 with profile
    "transparent": the INVITE with Supported: replaces, timer, Session-Expires: 90;refresher=uac,
    Min-SE: 90 reaches the gateway with those headers as sent, and the carrier's 200 carries no
    Session-Expires and no Require: timer (the gateway added none). With the base provisioning
    (no profile: [routing] default_profile, transparent in the lab) an INVITE with Session-Expires:
    60 is not refused: it reaches the gateway with Session-Expires: 60;refresher=uac."""
    name = "lk_transparent_passes_timers"
    d = ctx.tdir(name)
    with Provisioned(ctx, gateways=TRANSPARENT):
        prof = gateway_profile(ctx)
        check(prof == "transparent", f"GET /api/v1/gateways shows profile {prof!r} for {GW1_IP}")
        uac, gwm = timer_call(ctx, d, "transparent", 90, "uas_call")
    sent = next(m for m in uac if m.direction == "sent" and m.is_request("INVITE"))
    got = received_invites_of(gwm)
    check(len(got) == 1, f"the gateway got {len(got)} INVITEs (want 1)")
    for n in ("Session-Expires", "Min-SE", "Supported"):
        check(got[0].headers(n) == sent.headers(n),
              f"{n}: the carrier sent {sent.headers(n)}, the gateway got {got[0].headers(n)}:\n"
              f"{head_of(got[0])}")
    ok = final_to(uac, sent)
    check(ok is not None and code_of(ok) == 200 and not ok.headers("Session-Expires")
          and "timer" not in tokens(ok.headers("Require")),
          f"the carrier's 200 through a transparent gateway:\n{head_of(ok)}\n(want no Session-Expires, "
          f"no Require: timer)")
    prof = gateway_profile(ctx)
    check(prof is None, f"the base provisioning's gateway shows profile {prof!r} (want null)")
    uac, gwm = timer_call(ctx, d, "default", 60, "uas_call")
    got = received_invites_of(gwm)
    check(len(got) == 1 and got[0].headers("Session-Expires") == ["60;refresher=uac"],
          f"Session-Expires: 60 through a gateway with the default profile: the gateway got "
          f"{len(got)} INVITEs, {[m.headers('Session-Expires') for m in got]} (want one, with "
          f"'60;refresher=uac')")
    print("  (transparent: Session-Expires/Min-SE/Supported passed as sent; default profile: "
          "Session-Expires: 60 not refused)", flush=True)


def received_invites_of(msgs: list) -> list:
    return [m for m in requests(msgs, "received") if m.is_request("INVITE")
            and not tag_of(m.header("To"))]


# --- (b) a hold answered sendrecv ----------------------------------------------------------------

@lab_test
def lk_hold_answered_sendrecv(ctx: Ctx):
    """Gateway .10 with profile livekit; the gateway stand-in answers every re-INVITE a=sendrecv
    (as LiveKit does) and echoes the RTP it gets. The carrier plays audio, 1.5 s later holds with a
    re-INVITE a=sendonly while its audio keeps playing (music on hold), resumes 3 s later
    (a=sendrecv) and plays the pcap again. Required: the gateway got sendrecv, sendonly, sendrecv;
    the carrier got sendrecv, recvonly (not the gateway's sendrecv), sendrecv; during the hold
    (from the hold's 200 at the carrier to the resume) the music on hold reaches the gateway
    (>= 95 %) and the gateway keeps sending (its echo arrives at the SBC), but NO RTP leaves the SBC
    toward the carrier (status media.dropped_no_destination counts it); before the hold the
    gateway's RTP reached the carrier; after the resume >= 99 % crosses each way."""
    name = "lk_hold_answered_sendrecv"
    with Provisioned(ctx, gateways=LIVEKIT):
        run = rtp_call(ctx, name, uac_scen="lk_uac_hold", uas_scen="lk_uas", duration_ms=8000)
    check_anchored(run)
    dirs_b = [s.direction for s in run.offers()]
    dirs_a = [s.direction for s in run.answers()]
    gw_dirs = [m.sdp.direction for m in run.uas_msgs
               if m.direction == "sent" and m.is_response(200, "INVITE") and m.sdp]
    check(set(gw_dirs) == {"sendrecv"}, f"the gateway stand-in answered {gw_dirs} (want sendrecv only)")
    check(dirs_b == ["sendrecv", "sendonly", "sendrecv"],
          f"directions in the INVITEs the gateway got: {dirs_b} (want sendrecv, sendonly, sendrecv)")
    check(dirs_a == ["sendrecv", "recvonly", "sendrecv"],
          f"directions in the 200s the carrier got: {dirs_a} (want sendrecv, recvonly, sendrecv: the "
          f"gateway answered the hold sendrecv)")
    oks = run.answer_msgs()
    invs = [m for m in run.uac_msgs if m.direction == "sent" and m.is_request("INVITE")]
    cseqs = []
    for m in invs:                              # first transmission of each INVITE
        if m.header("CSeq") not in cseqs:
            cseqs.append(m.header("CSeq"))
    firsts = [next(m for m in invs if m.header("CSeq") == c) for c in cseqs]
    check(len(oks) == 3 and len(firsts) == 3, f"the carrier sent {len(firsts)} INVITEs and got "
                                              f"{len(oks)} 200s with SDP (want 3 each)")
    t_hold, t_held, t_resume = firsts[1].ts, oks[1].ts, firsts[2].ts
    pa, pb = run.relay_ports()
    priv, pub = run.pkts["priv0"], run.pkts["pub0"]
    lo, hi = t_held + 0.1, t_resume

    def within(pkts):
        return [p for p in pkts if lo <= p.ts <= hi]

    moh = within(rtp_flow(priv, CARRIER_LEG.media, (SBC_PRIV_IP, pa)))
    moh_out = {p.key for p in within(rtp_flow(pub, (SBC_PUB_IP, pb), GW_LEG.media))}
    gw_sent = within(rtp_flow(pub, GW_LEG.media, (SBC_PUB_IP, pb)))
    to_carrier = within(rtp_flow(priv, (SBC_PRIV_IP, None), (CARRIER_IP, None)))
    before = [p for p in rtp_flow(priv, (SBC_PRIV_IP, pa), CARRIER_LEG.media) if p.ts < t_hold]
    reached = sum(1 for p in moh if p.key in moh_out)
    desc = (f"hold window {hi - lo:.2f} s: the carrier sent {len(moh)} packets to {SBC_PRIV_IP}:{pa}, "
            f"{reached} reached the gateway; the gateway sent {len(gw_sent)} to {SBC_PUB_IP}:{pb}; "
            f"{len(to_carrier)} left the SBC toward the carrier; before the hold {len(before)} reached "
            f"the carrier; captures in {run.d}")
    check(len(before) >= 30, f"too little of the gateway's RTP reached the carrier before the hold "
                             f"to judge the hold: {desc}")
    check(len(moh) >= 60 and reached >= 0.95 * len(moh),
          f"the carrier's music on hold did not reach the gateway (want >= 95 %): {desc}")
    check(len(gw_sent) >= 0.9 * len(moh), f"the gateway did not keep sending during the hold, so the "
                                          f"hold proves nothing: {desc}")
    check(not to_carrier, f"RTP was relayed toward the carrier while it held the call: {desc}; the "
                          f"first {to_carrier[0].ts - t_held:+.3f} s after the hold's 200"
          if to_carrier else "")
    dropped = run.delta("dropped_no_destination")
    check(dropped >= 0.9 * len(gw_sent), f"status media.dropped_no_destination went up by {dropped} "
                                         f"while the SBC held back {len(gw_sent)} packets: {desc}")
    after = crossing(run, since=oks[2].ts)
    check_crossing(run, after, int(0.95 * PCAP_PACKETS), "after the resume: ")
    print(f"  ({desc}; dropped_no_destination +{dropped}; after the resume {after['fwd_ok']}/"
          f"{after['sent']} and {after['back_ok']}/{after['back']})", flush=True)


# --- (c) a transfer to the SBC itself --------------------------------------------------------------

@lab_test
def lk_refer_to_sbc(ctx: Ctx):
    """Gateway .10 with profile livekit. After the call is up, the gateway sends an in-dialog REFER
    with Refer-To: <sip:+15550001@203.0.113.50:5080> (the SBC's own public address): it gets 403,
    and the carrier never sees it. Then a REFER to sip:+15550002@carrier.example (control): it
    reaches the carrier, whose 202 reaches the gateway. The carrier's BYE ends the call."""
    name = "lk_refer_to_sbc"
    d = ctx.tdir(name)
    with Provisioned(ctx, gateways=LIVEKIT):
        with Uas("gw", "lk_uas_refer", GW1_IP, 5060, d, "uas") as uas:
            r = run_uac("carrier", "lk_uac_refer", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=1,
                        rate=1, duration_ms=1000, timeout_s=20)
            ur = uas.stop()
    uac, gwm = sipp_messages(r.files.get("messages")), sipp_messages(ur.files.get("messages"))
    refers = [m for m in requests(gwm, "sent") if m.is_request("REFER")]
    answers = [(m.header("Refer-To"), (final_to(gwm, m).first_line if final_to(gwm, m) else "no answer"))
               for m in refers]
    at_carrier = [m.header("Refer-To") for m in requests(uac, "received") if m.is_request("REFER")]
    desc = (f"the gateway's REFERs got {answers}; the carrier received REFERs with Refer-To "
            f"{at_carrier} (traces in {d})")
    check(len(refers) >= 1 and answers[0][1].startswith("SIP/2.0 403"),
          f"the REFER naming the SBC was not answered 403: {desc}")
    check(not any("203.0.113.50" in (t or "") or SBC_PRIV_IP in (t or "") for t in at_carrier),
          f"the REFER naming the SBC reached the carrier: {desc}")
    check(len(refers) == 2 and answers[1][1].startswith("SIP/2.0 202")
          and at_carrier == ["<sip:+15550002@carrier.example>"],
          f"the REFER naming somewhere else did not go through (want it at the carrier and its 202 "
          f"back at the gateway): {desc}")
    check(r.ok(1) and ur.successful == 1 and ur.failed == 0,
          f"carrier {r.diagnostics()}\n--- gateway {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    print(f"  (REFER to {SBC_PUB_IP}: {answers[0][1]}; to carrier.example: {answers[1][1]}, "
          f"the only REFER the carrier saw)", flush=True)
