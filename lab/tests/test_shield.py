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
  lk_100rel                    a carrier requiring 100rel gets the gateway's provisionals as reliable
                               ones of the SBC's (RSeq 1, 2, resent until PRACKed, PRACKs answered
                               200 at the edge); the gateway sees neither 100rel nor PRACK
  lk_delayed_offer             an INVITE without SDP reaches the gateway with the SBC's offer (the
                               tenant's codecs); the
                               carrier's answer in its ACK stops at the SBC; audio both ways
  lk_info_dtmf                 INFO DTMF (dtmf-relay, dtmf) answered 200 at the edge and sent to the
                               gateway as RFC 4733 telephone events (decoded from the pub0 capture)
  lk_dtmf_payload_types        RFC 4733 events leave in the receiver's payload type (carrier 101,
                               gateway 96), both ways
  lk_update_to_reinvite        an UPDATE moving the carrier's media port reaches the gateway as a
                               re-INVITE; the audio follows the move
  lk_numbers_e164              a tenant's e164 number rules on the Request-URI, To and From users
  lk_carrier_everything        the issue's "done when": a carrier using session timers, UPDATE, INFO
                               DTMF, 100rel and delayed offer at once completes a long call
                               (SBC_LAB_LONG_CALL_S, default 100 s; 900 for 15 minutes) with audio
                               both ways and every digit, through the gateway that supports none

The gateway stand-in is sipp lab/sipp/lk_uas.xml, which answers as LiveKit does (re-INVITEs 200
a=sendrecv, UPDATE 405, INFO 501), or lk_uas_100rel.xml (rings 180 and 183 without 100rel) and
lk_uas_offer.xml (488 to an INVITE without SDP); the carriers are lab/sipp/lk_uac_*.xml, and
kit/uapeer.py (flows 100rel, delayed-offer, info-dtmf, port-move --update, everything) where sipp
cannot play the flow."""
from __future__ import annotations

import base64
import os
import re
import struct
import threading
import time
from pathlib import Path

from kit.addresses import (CARRIER_IP, GW1_IP, MEDIA_PORTS, SBC_PRIV, SBC_PRIV_IP, SBC_PUB_IP,
                           SIPP_MEDIA_PORT)
from kit.calls import tail_if, wait_calls_down
from kit.ctx import Ctx, check
from kit.media import (CARRIER_LEG, GW_LEG, PCAP_PACKETS, RtpRun, check_anchored, check_crossing,
                       crossing, rtp_call, wait_media_idle)
from kit.pcap import Capture, rtp_flow, rtp_packets
from kit.provisioning import Provisioned, gw, tenant
from kit.paths import SIPP_DIR, sipp_pcap
from kit.registry import lab_test
from kit.sip import SipMsg, received_invites, sipp_messages
from kit.sipp import Uas, run_uac
from kit.uapeer import Msg
from tests.test_carrier_flows import PeerRun

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


# --- (d) what LiveKit lacks, done at the carrier's edge: 100rel, delayed offer, INFO, UPDATE -------
#
# The carrier is kit/uapeer.py (flows 100rel, delayed-offer, info-dtmf, port-move --update), run in
# ns carrier; the gateway stand-in a sipp lk_uas*.xml on .10 echoing the RTP it gets.

CARRIER_SSRC, MOVED_SSRC = 0x00C0FFEE, 0x00C0FFEF      # uapeer's RTP sources (before/after a move)


def peer_msgs(res: dict) -> list[tuple[float, str, Msg]]:
    """The SIP messages a uapeer run sent and received: (time, "sent"|"received", Msg)."""
    return [(e["t"], e["dir"], Msg(base64.b64decode(e["b64"]))) for e in res.get("sip", [])]


def peer_text(m: Msg, lines: int = 30) -> str:
    return "\n".join("    " + x for x in m.raw.decode("utf-8", "replace").replace("\r\n", "\n")
                     .rstrip("\n").split("\n")[:lines])


def sdp_fields(body: str | bytes) -> dict:
    """c= (media over session), o= address, m=audio port and payload types, rtpmaps {pt: name}."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    out = {"c": None, "o": None, "port": None, "pts": [], "rtpmap": {}}
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("c=IN IP4 "):
            out["c"] = line.split()[-1]
        elif line.startswith("o=") and len(line.split()) >= 6:
            out["o"] = line.split()[5]
        elif line.startswith("m=audio "):
            f = line.split()
            out["port"] = int(f[1]) if f[1].isdigit() else None
            out["pts"] = f[3:]
        elif line.startswith("a=rtpmap:"):
            pt, _, enc = line[len("a=rtpmap:"):].partition(" ")
            out["rtpmap"][pt] = enc
    return out


def relay_port_ok(port) -> bool:
    lo, hi = MEDIA_PORTS
    return isinstance(port, int) and port % 2 == 0 and lo <= port <= hi


def user_of(value: str | None) -> str | None:
    """The user part of the (first) SIP URI in a header value or request line."""
    m = re.search(r"sips?:([^@;>\s]+)@", value or "")
    return m.group(1) if m else None


def peer_problem(res: dict, ur, problems: list) -> None:
    if res.get("error"):
        problems.append(f"the carrier's flow failed: {res['error']}")
    if ur.failed or ur.successful != 1:
        problems.append(f"gateway stand-in: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")


@lab_test
def lk_100rel(ctx: Ctx):
    """Gateway .10 with profile livekit; its stand-in (lk_uas_100rel) rings as LiveKit does,
    without 100rel: 180, 183 with SDP at once, 200 2.5 s later. The carrier (uapeer 100rel) sends
    an INVITE with Require: 100rel and Supported: 100rel, PRACKs the first reliable provisional
    1 s late and the next at once. Required: the carrier gets the 180 with Require: 100rel and
    RSeq: 1, resent until its PRACK (>= 2 copies, none once the PRACK is answered); the 183 with
    RSeq: 2 (and SDP on 10.0.0.100 and a relay port) only after that PRACK; each PRACK (RAck
    1 and 2) answered 200 with CSeq n PRACK; then the 200, ACK, BYE. The gateway gets an INVITE
    with no 100rel in Require/Supported, no PRACK, the ACK and the BYE; the carrier's RTP reaches
    the gateway and its echo comes back (>= 90 %)."""
    name = "lk_100rel"
    d = ctx.tdir(name)
    with Provisioned(ctx, gateways=LIVEKIT):
        wait_media_idle(ctx)
        with Uas("gw", "lk_uas_100rel", GW1_IP, 5060, d, "uas",
                 extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
            peer = PeerRun(ctx, d, "carrier", "carrier", "100rel",
                           ["--ip", CARRIER_IP, "--port", str(SIPP_MEDIA_PORT), "--to", SBC_PRIV,
                            "--prack-delay", "1.0", "--after", "2.0"])
            res = peer.result(30)
            ur = uas.stop()
    problems: list[str] = []
    peer_problem(res, ur, problems)
    msgs, marks = peer_msgs(res), res.get("marks", {})
    inv = next((m for _, w, m in msgs if w == "sent" and m.method == "INVITE"), None)
    check(inv is not None, f"the carrier sent no INVITE: {res.get('error')} (output {peer.out})")
    inv_cseq = inv.cseq[0]
    to_inv = [(t, m) for t, w, m in msgs if w == "received" and m.is_response and m.cseq == (inv_cseq, "INVITE")]
    r180 = [(t, m) for t, m in to_inv if m.code == 180]
    r183 = [(t, m) for t, m in to_inv if m.code == 183]
    pracks = [(t, m) for t, w, m in msgs if w == "sent" and m.method == "PRACK"]
    prack_ok = {m.cseq[0]: (t, m) for t, w, m in msgs
                if w == "received" and m.is_response and m.cseq[1] == "PRACK"}

    def rel(m: Msg) -> str:
        return f"{m.first} Require {m.all('Require')} RSeq {m.all('RSeq')}"
    seen = [f"{t - inv_t:+.2f} s {rel(m)}" for t, m in to_inv] if (inv_t := marks.get("invite")) else []
    for t, m in r180:
        if "100rel" not in tokens(m.all("Require")) or m.all("RSeq") != ["1"]:
            problems.append(f"a 180 the carrier got is not reliable with RSeq 1: {rel(m)}")
            break
    for t, m in r183:
        if "100rel" not in tokens(m.all("Require")) or m.all("RSeq") != ["2"]:
            problems.append(f"a 183 the carrier got is not reliable with RSeq 2: {rel(m)}")
            break
    if len(r180) < 2:
        problems.append(f"the carrier got {len(r180)} copies of the 180 while it held its PRACK back "
                        f"1 s (want >= 2: resent after T1)")
    if not r183:
        problems.append("the carrier never got the 183")
    rseq_prack = [m.header("RAck") for _, m in pracks]
    if rseq_prack[:2] != [f"1 {inv_cseq} INVITE", f"2 {inv_cseq} INVITE"]:
        problems.append(f"the carrier sent PRACKs with RAck {rseq_prack} (want 1 then 2: the flow saw "
                        f"no second reliable provisional)")
    for t, p in pracks:
        got = prack_ok.get(p.cseq[0])
        if got is None or got[1].code != 200:
            problems.append(f"PRACK CSeq {p.header('CSeq')} (RAck {p.header('RAck')}) got "
                            f"{got[1].first if got else 'no answer'} (want 200 from the SBC)")
    if pracks and r183:
        t_prack1 = pracks[0][0]
        if r183[0][0] < t_prack1:
            problems.append(f"the 183 (RSeq 2) reached the carrier {t_prack1 - r183[0][0]:.2f} s "
                            f"BEFORE its PRACK for the 180 (RSeq 1)")
        p1_ok = prack_ok.get(pracks[0][1].cseq[0])
        late = [t for t, _ in r180 if p1_ok and t > p1_ok[0] + 0.2]
        if late:
            problems.append(f"{len(late)} copies of the 180 came after its PRACK was answered")
        if len(pracks) > 1 and (p2_ok := prack_ok.get(pracks[1][1].cseq[0])):
            late = [t for t, _ in r183 if t > p2_ok[0] + 0.2]
            if late:
                problems.append(f"{len(late)} copies of the 183 came after its PRACK was answered")
        s183 = sdp_fields(r183[0][1].sdp())
        if s183["c"] != SBC_PRIV_IP or not relay_port_ok(s183["port"]):
            problems.append(f"the 183's SDP names {s183['c']}:{s183['port']} (want {SBC_PRIV_IP} and an "
                            f"even relay port):\n{peer_text(r183[0][1])}")
    ok = next((m for _, m in to_inv if m.code >= 200), None)
    if ok is None or ok.code != 200:
        problems.append(f"the carrier's INVITE ended with {ok.first if ok else 'no final response'}")
    acks = [m for _, w, m in msgs if w == "sent" and m.method == "ACK"]
    bye_ok = [m for _, w, m in msgs if w == "received" and m.is_response and m.cseq[1] == "BYE" and m.code == 200]
    if not acks or not bye_ok:
        problems.append(f"the carrier sent {len(acks)} ACKs and got {len(bye_ok)} 200s to its BYE")
    # The gateway: nothing of 100rel.
    gwm = sipp_messages(ur.files.get("messages"))
    g_inv = received_invites_of(gwm)
    got = [method_of(m) for m in requests(gwm, "received")]
    if len(g_inv) != 1:
        problems.append(f"the gateway got {len(g_inv)} initial INVITEs")
    else:
        left = [f"{n}: {', '.join(g_inv[0].headers(n))}" for n in ("Require", "Supported")
                if "100rel" in tokens(g_inv[0].headers(n))]
        if left or g_inv[0].headers("RSeq"):
            problems.append(f"the gateway's INVITE carries {left}:\n{head_of(g_inv[0])}")
    if "PRACK" in got or sorted(got) != ["ACK", "BYE", "INVITE"]:
        problems.append(f"the gateway received {got} (want INVITE, ACK, BYE: never a PRACK)")
    # Audio: the carrier's RTP echoed by the gateway comes back.
    tx = [x for x in res.get("rtp_tx", []) if x[3] == CARRIER_SSRC]
    rx = {x[4] for x in res.get("rtp_rx", []) if x[3] == CARRIER_SSRC}
    if len(tx) < 80 or len(rx) < 0.9 * len(tx):
        problems.append(f"audio: the carrier sent {len(tx)} RTP packets after the 200, {len(rx)} came "
                        f"back through the gateway's echo (want >= 90 %)")
    check(not problems, "\n".join(problems) + "\n--- the carrier got, after its INVITE:\n  "
          + "\n  ".join(seen) + f"\n(peer output and traces in {d})")
    print(f"  ({len(r180)} copies of the 180 (RSeq 1) before the PRACK sent "
          f"{pracks[0][0] - r180[0][0]:.2f} s after it; the 183 (RSeq 2) "
          f"{r183[0][0] - pracks[0][0]:+.3f} s after that PRACK; PRACKs answered "
          f"{[prack_ok[p.cseq[0]][1].code for _, p in pracks]}; gateway saw {got}; audio "
          f"{len(rx)}/{len(tx)} back)", flush=True)


@lab_test
def lk_delayed_offer(ctx: Ctx):
    """Gateway .10 with profile livekit; its stand-in (lk_uas_offer) answers an INVITE without SDP
    with 488, as LiveKit wants an offer. The carrier (uapeer delayed-offer) sends an INVITE without
    a body; its tenant (by source) has offer_codecs "pcma,PCMU,telephone-event". Required: the
    gateway gets an INVITE with the SBC's offer (c= and o= 203.0.113.50, an even relay port,
    m=audio ... 8 0 101 with PCMA, PCMU and telephone-event/8000: the tenant's codecs), sends
    no 488 and answers 200; the carrier's 200 carries an offer (c=10.0.0.100, an even relay port)
    which it answers in its ACK; the ACK the gateway gets has no body; 2 s of the carrier's RTP
    cross to the gateway and its echo back to the carrier (captures on both interfaces, >= 95 %)."""
    name = "lk_delayed_offer"
    d = ctx.tdir(name)
    codecs = tenant("lk-codecs", CARRIER_IP, 1, offer_codecs="pcma,PCMU,telephone-event")
    with Provisioned(ctx, gateways=LIVEKIT, tenants=[codecs]):
        wait_media_idle(ctx)
        caps = captures(d)
        try:
            with Uas("gw", "lk_uas_offer", GW1_IP, 5060, d, "uas",
                     extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
                peer = PeerRun(ctx, d, "carrier", "carrier", "delayed-offer",
                               ["--ip", CARRIER_IP, "--port", str(SIPP_MEDIA_PORT), "--to", SBC_PRIV,
                                "--after", "2.0"])
                res = peer.result(30)
                ur = uas.stop()
        finally:
            for c in caps.values():
                c.stop()
    problems: list[str] = []
    peer_problem(res, ur, problems)
    gwm = sipp_messages(ur.files.get("messages"))
    msgs = peer_msgs(res)
    g_inv = received_invites_of(gwm)
    refused = [m.first_line for m in gwm if m.direction == "sent" and m.is_response(488)]
    if refused:
        problems.append(f"the gateway stand-in answered {refused}: it got an INVITE without an offer")
    pb = None
    if not g_inv:
        problems.append("the gateway got no INVITE")
    else:
        g = g_inv[0]
        s = sdp_fields(g.body)
        pb = s["port"]
        want_map = {"8": "PCMA/8000", "0": "PCMU/8000", "101": "telephone-event/8000"}
        if (g.header("Content-Type") or "").lower() != "application/sdp" or s["c"] != SBC_PUB_IP \
                or s["o"] != SBC_PUB_IP or not relay_port_ok(s["port"]) or s["pts"] != ["8", "0", "101"] \
                or s["rtpmap"] != want_map:
            problems.append(f"the INVITE the gateway got does not carry the SBC's offer of the tenant's "
                            f"codecs (c=/o= {SBC_PUB_IP}, an even relay port, 8 0 101 with {want_map}):\n"
                            f"{head_of(g, 60)}")
    ok = next((m for _, w, m in msgs if w == "received" and m.is_response and m.code == 200
               and m.cseq[1] == "INVITE"), None)
    pa = None
    if ok is None:
        problems.append("the carrier got no 200 to its INVITE")
    else:
        s = sdp_fields(ok.sdp())
        pa = s["port"]
        if s["c"] != SBC_PRIV_IP or not relay_port_ok(pa) or "8" not in s["pts"]:
            problems.append(f"the carrier's 200 carries no offer on {SBC_PRIV_IP} and an even relay port "
                            f"with PCMA (the gateway's answer, anchored):\n{peer_text(ok)}")
    c_ack = next((m for _, w, m in msgs if w == "sent" and m.method == "ACK"), None)
    if c_ack is None or not c_ack.sdp():
        problems.append("the carrier's ACK carried no answer (the flow saw no offer)")
    g_ack = [m for m in requests(gwm, "received") if m.is_request("ACK")]
    if len(g_ack) != 1:
        problems.append(f"the gateway got {len(g_ack)} ACKs (want 1)")
    elif g_ack[0].body.strip() or (g_ack[0].header("Content-Length") or "0").strip() != "0" \
            or g_ack[0].header("Content-Type"):
        problems.append(f"the ACK the gateway got has a body (the carrier's answer stops at the SBC):\n"
                        f"{head_of(g_ack[0])}")
    check(not problems, "\n".join(problems) + f"\n(peer output, traces and captures in {d})")
    # Audio both ways through the ports both SDPs name.
    priv, pub = rtp_packets(caps["priv0"].path), rtp_packets(caps["pub0"].path)
    sent = [p for p in rtp_flow(priv, (CARRIER_IP, SIPP_MEDIA_PORT), (SBC_PRIV_IP, pa)) if p.ssrc == CARRIER_SSRC]
    out = {p.key for p in rtp_flow(pub, (SBC_PUB_IP, pb), (GW1_IP, SIPP_MEDIA_PORT))}
    back = [p for p in rtp_flow(pub, (GW1_IP, SIPP_MEDIA_PORT), (SBC_PUB_IP, pb)) if p.ssrc == CARRIER_SSRC]
    home = {p.key for p in rtp_flow(priv, (SBC_PRIV_IP, pa), (CARRIER_IP, SIPP_MEDIA_PORT))}
    fwd = sum(1 for p in sent if p.key in out)
    bwd = sum(1 for p in back if p.key in home)
    desc = (f"carrier -> {SBC_PRIV_IP}:{pa} {len(sent)} packets, {fwd} left {SBC_PUB_IP}:{pb} for the "
            f"gateway; the gateway echoed {len(back)} to {SBC_PUB_IP}:{pb}, {bwd} reached the carrier; "
            f"captures in {d}")
    check(len(sent) >= 80 and fwd >= 0.95 * len(sent), f"the carrier's audio did not cross: {desc}")
    check(len(back) >= 0.9 * fwd and bwd >= 0.95 * len(back), f"the gateway's audio did not cross: {desc}")
    print(f"  (the gateway got the SBC's offer of the tenant's codecs, 8 0 101, on {SBC_PUB_IP}:{pb}, the carrier the "
          f"anchored answer as an offer on {SBC_PRIV_IP}:{pa}, ACK without body at the gateway; {desc})",
          flush=True)


DTMF_INFOS = "relay:1:160,relay:2:160,relay:#:160,dtmf:5"
# (event code, duration in timestamp units) each INFO must become: Duration=160 ms is 1280;
# application/dtmf names no duration, which the SBC takes for 250 ms (shield.rs answer_info): 2000.
DTMF_WANT = [(1, 1280), (2, 1280), (11, 1280), (5, 2000)]


def telephone_event_pt(sdp: str) -> int | None:
    m = re.search(r"^a=rtpmap:(\d+) telephone-event/8000", sdp.replace("\r\n", "\n"), re.M | re.I)
    return int(m.group(1)) if m else None


@lab_test
def lk_info_dtmf(ctx: Ctx):
    """Gateway .10 with profile livekit (stand-in lk_uas: INFO would be answered 501). In an
    answered call the carrier (uapeer info-dtmf) sends INFO application/dtmf-relay Signal=1, 2 and
    # (Duration=160) and application/dtmf 5, 0.3 s apart. Required: each INFO is answered 200 by
    the SBC and the gateway gets none; the pub0 capture shows, from the SBC's relay port to the
    gateway's media address, in the telephone-event payload type of the gateway's SDP, one event
    per INFO in order: 4 packets each, one RTP timestamp per event (increasing), event codes 1, 2,
    11, 5, the marker bit on the first packet only, the end bit on the three last, duration 1280
    (160 ms) - 2000 for the bodiless-duration application/dtmf (250 ms) - the same SSRC (not the
    carrier's) and sequence numbers one after another throughout; status sip.info_dtmf +4 and
    media.dtmf_injected +16."""
    name = "lk_info_dtmf"
    d = ctx.tdir(name)
    with Provisioned(ctx, gateways=LIVEKIT):
        wait_media_idle(ctx)
        s0, m0 = sip_counters(ctx), ctx.api.media()
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter=None)
        try:
            with Uas("gw", "lk_uas", GW1_IP, 5060, d, "uas",
                     extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
                peer = PeerRun(ctx, d, "carrier", "carrier", "info-dtmf",
                               ["--ip", CARRIER_IP, "--port", str(SIPP_MEDIA_PORT), "--to", SBC_PRIV,
                                "--info", DTMF_INFOS, "--before", "0.5", "--gap", "0.3",
                                "--after", "1.0"])
                res = peer.result(30)
                ur = uas.stop()
        finally:
            cap.stop()
        s1, m1 = sip_counters(ctx), ctx.api.media()
    problems: list[str] = []
    peer_problem(res, ur, problems)
    msgs, marks = peer_msgs(res), res.get("marks", {})
    infos = [m for _, w, m in msgs if w == "sent" and m.method == "INFO"]
    answers = {m.cseq[0]: m for _, w, m in msgs if w == "received" and m.is_response
               and m.cseq[1] == "INFO" and m.code >= 200}
    codes = [answers[i.cseq[0]].first if i.cseq[0] in answers else "no answer" for i in infos]
    if len(infos) != 4 or any(not c.startswith("SIP/2.0 200") for c in codes):
        problems.append(f"the carrier's {len(infos)} INFOs got {codes} (want 4 x 200)")
    gwm = sipp_messages(ur.files.get("messages"))
    got = [method_of(m) for m in requests(gwm, "received")]
    if "INFO" in got:
        problems.append(f"the gateway received INFO: {got}")
    gw_ok = next((m for m in gwm if m.direction == "sent" and m.is_response(200, "INVITE") and m.sdp), None)
    g_inv = received_invites_of(gwm)
    pt = telephone_event_pt(gw_ok.body) if gw_ok else None
    pb = sdp_fields(g_inv[0].body)["port"] if g_inv else None
    check(pt is not None and pb is not None, "\n".join(problems) + f"\nno telephone-event in the "
          f"gateway's 200 or no INVITE at the gateway (traces in {d})")
    pkts = [p for p in rtp_flow(rtp_packets(cap.path), (SBC_PUB_IP, None), (GW1_IP, None)) if p.pt == pt]
    events: list[list] = []
    for p in pkts:
        ts = struct.unpack("!I", p.payload[4:8])[0]
        if not events or events[-1][0] != ts:
            events.append([ts, []])
        events[-1][1].append(p)

    def show(p) -> str:
        e = p.payload[12:16]
        return (f"{p.src}:{p.sport}->{p.dst}:{p.dport} pt {p.pt} M{p.payload[1] >> 7} seq {p.seq} "
                f"ts {struct.unpack('!I', p.payload[4:8])[0]} ssrc {p.ssrc:#x} event {e[0] if e else '-'} "
                f"E{(e[1] >> 7) if len(e) > 1 else '-'} dur {struct.unpack('!H', e[2:4])[0] if len(e) == 4 else '-'}")
    listing = "\n    ".join(show(p) for p in pkts) or "(none)"
    if len(events) != len(DTMF_WANT):
        problems.append(f"{len(events)} telephone events (by RTP timestamp) reached the gateway in pt {pt} "
                        f"(want {len(DTMF_WANT)})")
    for i, ((ts, ps), (code, dur)) in enumerate(zip(events, DTMF_WANT)):
        what = f"event {i + 1} (want code {code}, duration {dur})"
        bad = []
        if len(ps) != 4:
            bad.append(f"{len(ps)} packets (want 4)")
        for j, p in enumerate(ps):
            e = p.payload[12:16]
            if len(e) != 4:
                bad.append(f"packet {j + 1}: payload {e.hex()} is not a telephone event")
                continue
            marker, end = p.payload[1] >> 7, e[1] >> 7
            if e[0] != code or struct.unpack("!H", e[2:4])[0] != dur:
                bad.append(f"packet {j + 1}: event {e[0]} duration {struct.unpack('!H', e[2:4])[0]}")
            if marker != (j == 0) or end != (j > 0):
                bad.append(f"packet {j + 1}: marker {marker} end {end} (want the marker on the first "
                           f"only, the end bit on the others)")
            if (p.sport, p.dport) != (pb, SIPP_MEDIA_PORT):
                bad.append(f"packet {j + 1}: {p.src}:{p.sport} -> {p.dst}:{p.dport} (want from our "
                           f"relay port {pb} to the gateway's {SIPP_MEDIA_PORT})")
        if i and ts <= events[i - 1][0]:
            bad.append(f"timestamp {ts} not after the previous event's {events[i - 1][0]}")
        if bad:
            problems.append(f"{what}: " + "; ".join(bad))
    ssrcs = {p.ssrc for p in pkts}
    seqs = [p.seq for p in pkts]
    if len(ssrcs) != 1 or CARRIER_SSRC in ssrcs:
        problems.append(f"telephone events from SSRCs {[hex(s) for s in ssrcs]} (want one of the SBC's own)")
    if any((b - a) % 65536 != 1 for a, b in zip(seqs, seqs[1:])):
        problems.append(f"sequence numbers {seqs} do not follow one another")
    # Each event leaves after its INFO was sent, so they come in the INFOs' order.
    for i, (ts, ps) in enumerate(events[:4]):
        sent_at = marks.get(f"info{i}")
        if sent_at and ps and ps[0].ts < sent_at - 0.05:
            problems.append(f"event {i + 1} left the SBC {sent_at - ps[0].ts:.2f} s before INFO {i + 1} was sent")
    di = int(s1.get("info_dtmf", 0)) - int(s0.get("info_dtmf", 0))
    dm = int(m1.get("dtmf_injected", 0)) - int(m0.get("dtmf_injected", 0))
    if "info_dtmf" not in s1 or di != 4:
        problems.append(f"status sip.info_dtmf went up by {di} (want 4; present: {'info_dtmf' in s1})")
    if "dtmf_injected" not in m1 or dm != 16:
        problems.append(f"status media.dtmf_injected went up by {dm} (want 16; present: {'dtmf_injected' in m1})")
    check(not problems, "\n".join(problems) + f"\n--- telephone events (pt {pt}) leaving pub0 toward the "
          f"gateway:\n    {listing}\n(peer output, traces and capture in {d})")
    print(f"  (INFOs answered {[c.split(' ', 2)[1] for c in codes]}, none at the gateway; events "
          f"{[(ps[0].payload[12], len(ps)) for _, ps in events]} in pt {pt} from {SBC_PUB_IP}:{pb}, "
          f"seq {seqs[0]}..{seqs[-1]}; info_dtmf +{di}, dtmf_injected +{dm})", flush=True)



@lab_test
def lk_dtmf_payload_types(ctx: Ctx):
    """Gateway .10 with profile livekit; its stand-in (lk_uas with telephone-event as payload
    type 96 in its SDP, -rtp_echo) and a carrier (sipp cf_uac_rtp) whose SDP has telephone-event
    as 101, playing sip-tester's dtmf_2833_1.pcap (one RFC 4733 event, digit 1: 10 packets in pt
    101, the marker on the first). Required (captures on both interfaces): the 10 packets reach
    the gateway in pt 96, the marker on the first only, event code 1, the rest of each packet
    byte-exact; the gateway's echo (in its 96) reaches the carrier in pt 101; nothing in the other
    side's number crosses."""
    name = "lk_dtmf_payload_types"
    d = ctx.tdir(name)
    pcap = sipp_pcap("dtmf_2833_1.pcap")
    check(pcap.exists(), f"{pcap} not found (sip-tester ships it)")
    (d / "cf_audio.pcap").write_bytes(pcap.read_bytes())
    uas_scen = d / "lk_uas_te96.xml"
    uas_scen.write_text((SIPP_DIR / "lk_uas.xml").read_text()
                        .replace("RTP/AVP 8 101", "RTP/AVP 8 96")
                        .replace("a=rtpmap:101 ", "a=rtpmap:96 ").replace("a=fmtp:101 ", "a=fmtp:96 "))
    with Provisioned(ctx, gateways=LIVEKIT):
        wait_media_idle(ctx)
        caps = captures(d)
        try:
            with Uas("gw", str(uas_scen), GW1_IP, 5060, d, "uas",
                     extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
                r = run_uac("carrier", "cf_uac_rtp", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=1,
                            rate=1, duration_ms=1500, timeout_s=20, extra=["-mp", str(SIPP_MEDIA_PORT)])
                ur = uas.stop()
        finally:
            for c in caps.values():
                c.stop()
    problems: list[str] = []
    if not r.ok(1):
        problems.append(f"carrier: {r.summary()}\n{tail_if(r.files.get('errors'))}")
    if not ur.ok(1):
        problems.append(f"gateway stand-in: {ur.summary()}")
    sent = [p for p in rtp_packets(caps["priv0"].path) if (p.src, p.sport) == (CARRIER_IP, SIPP_MEDIA_PORT)]
    pub = rtp_packets(caps["pub0"].path)
    at_gw = [p for p in pub if p.src == SBC_PUB_IP and (p.dst, p.dport) == (GW1_IP, SIPP_MEDIA_PORT)]
    echo = [p for p in pub if (p.src, p.sport) == (GW1_IP, SIPP_MEDIA_PORT) and p.dst == SBC_PUB_IP]
    home = [p for p in rtp_packets(caps["priv0"].path)
            if p.src == SBC_PRIV_IP and (p.dst, p.dport) == (CARRIER_IP, SIPP_MEDIA_PORT)]

    def show(ps) -> str:
        return " ".join(f"{p.pt}{'M' if p.payload[1] >> 7 else ''}" for p in ps) or "(none)"
    if len(sent) != 10 or any(p.pt != 101 for p in sent):
        problems.append(f"the carrier sent {len(sent)} packets, pts {show(sent)} (want 10 in 101)")
    by_key = {p.key: p for p in at_gw}
    crossed = [(p, by_key[p.key]) for p in sent if p.key in by_key]
    if len(crossed) != len(sent) or any(q.pt != 96 for _, q in crossed):
        problems.append(f"at the gateway: {len(crossed)} of the carrier's {len(sent)} packets, pts "
                        f"{show([q for _, q in crossed])} (want all, in 96)")
    markers = [q.payload[1] >> 7 for _, q in crossed]
    if markers and markers != [1] + [0] * (len(markers) - 1):
        problems.append(f"markers at the gateway {markers} (want the first only)")
    changed = [q.seq for p, q in crossed if q.payload[12:] != p.payload[12:] or q.payload[2:12] != p.payload[2:12]]
    if changed:
        problems.append(f"packets {changed} changed beyond the payload type")
    if any(p.pt != 96 for p in echo):
        problems.append(f"the gateway's echo left it in pts {show(echo)} (want 96)")
    echo_keys = {p.key for p in echo}
    back = [p for p in home if p.key in echo_keys]
    if not echo or len(back) < len(echo) or any(p.pt != 101 for p in back):
        problems.append(f"the gateway's echo ({len(echo)} packets) reached the carrier as {len(back)} "
                        f"packets, pts {show(back)} (want all, in 101)")
    check(not problems, "\n".join(problems) + f"\n(traces and captures in {d})")
    print(f"  (carrier 101 -> gateway {show([q for _, q in crossed])}; echo 96 -> carrier "
          f"{show(back)})", flush=True)

@lab_test
def lk_update_to_reinvite(ctx: Ctx):
    """Gateway .10 with profile livekit; its stand-in (lk_uas) answers UPDATE 405 as LiveKit does
    and echoes RTP. In an answered call the carrier (uapeer port-move --update) sends RTP from 6000
    for 1 s, then an UPDATE whose SDP moves it to 6002 (same address), then RTP from 6002 (new SSRC)
    for 2 s. Required: the gateway receives no UPDATE but a re-INVITE (in the dialog, CSeq method
    INVITE) with the anchored SDP (c=203.0.113.50, the call's relay port), answers 200 and gets the
    SBC's ACK for it; the carrier gets 200 to its UPDATE (CSeq method UPDATE) with SDP on
    10.0.0.100 and its relay port; >= 90 % of the carrier's RTP from 6002 reaches the gateway and
    >= 90 % of it comes back (the gateway's echo) to the carrier's new port 6002."""
    name = "lk_update_to_reinvite"
    d = ctx.tdir(name)
    p, q = SIPP_MEDIA_PORT, SIPP_MEDIA_PORT + 2
    with Provisioned(ctx, gateways=LIVEKIT):
        wait_media_idle(ctx)
        cap = Capture("sbc", "pub0", d / "pub0.pcap", filter=None)
        try:
            with Uas("gw", "lk_uas", GW1_IP, 5060, d, "uas",
                     extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
                peer = PeerRun(ctx, d, "carrier", "carrier", "port-move",
                               ["--ip", CARRIER_IP, "--port", str(p), "--to", SBC_PRIV, "--update",
                                "--before", "1.0", "--after", "2.0"])
                res = peer.result(30)
                ur = uas.stop()
        finally:
            cap.stop()
    problems: list[str] = []
    peer_problem(res, ur, problems)
    msgs, marks = peer_msgs(res), res.get("marks", {})
    gwm = sipp_messages(ur.files.get("messages"))
    g_reqs = requests(gwm, "received")
    g_inv = [m for m in g_reqs if m.is_request("INVITE")]
    got = [f"{method_of(m)} (CSeq {m.header('CSeq')})" for m in g_reqs]
    pb = sdp_fields(g_inv[0].body)["port"] if g_inv else None
    if any(m.is_request("UPDATE") for m in g_reqs):
        problems.append(f"the gateway received an UPDATE: {got}")
    if len(g_inv) != 2:
        problems.append(f"the gateway received {got} (want the INVITE, its ACK, a re-INVITE, its ACK, BYE)")
    else:
        re_inv = g_inv[1]
        s = sdp_fields(re_inv.body)
        if not tag_of(re_inv.header("To")) or re_inv.cseq_method != "INVITE" or s["c"] != SBC_PUB_IP \
                or s["port"] != pb:
            problems.append(f"the gateway's second INVITE is not a re-INVITE in the dialog with the "
                            f"anchored SDP ({SBC_PUB_IP}, relay port {pb}):\n{head_of(re_inv, 40)}")
        ok = next((m for m in gwm if m.direction == "sent" and m.is_response(200, "INVITE")
                   and m.header("CSeq") == re_inv.header("CSeq")), None)
        want_ack = (re_inv.header("CSeq") or "").replace("INVITE", "ACK")
        acked = [m for m in g_reqs if m.is_request("ACK") and m.header("CSeq") == want_ack]
        if ok is None or not acked:
            problems.append(f"re-INVITE {re_inv.header('CSeq')}: the gateway sent "
                            f"{'a 200' if ok else 'no 200'} and got {len(acked)} ACKs with CSeq {want_ack}: {got}")
    upd = next((m for _, w, m in msgs if w == "sent" and m.method == "UPDATE"), None)
    c_ok = next((m for _, w, m in msgs if w == "received" and m.is_response and upd is not None
                 and m.cseq == upd.cseq and m.code >= 200), None)
    c_inv_ok = next((m for _, w, m in msgs if w == "received" and m.is_response and m.code == 200
                     and m.cseq[1] == "INVITE"), None)
    pa = sdp_fields(c_inv_ok.sdp())["port"] if c_inv_ok else None
    if upd is None or c_ok is None:
        problems.append(f"the carrier sent {'an' if upd else 'no'} UPDATE and got no final answer to it")
    else:
        s = sdp_fields(c_ok.sdp())
        if c_ok.code != 200 or c_ok.cseq[1] != "UPDATE" or s["c"] != SBC_PRIV_IP or s["port"] != pa:
            problems.append(f"the carrier's UPDATE got (want 200, CSeq {upd.cseq[0]} UPDATE, SDP on "
                            f"{SBC_PRIV_IP}:{pa}):\n{peer_text(c_ok)}")
    check(not problems, "\n".join(problems) + f"\n(peer output, traces and capture in {d})")
    # Audio after the move.
    t200 = marks["reinvite_answered"]
    tx_q = [x for x in res["rtp_tx"] if x[1] == q]
    at_gw = {x.seq for x in rtp_packets(cap.path) if x.dst == GW1_IP and x.ssrc == MOVED_SSRC
             and (x.src, x.sport) == (SBC_PUB_IP, pb)}
    rx_q = {x[4] for x in res["rtp_rx"] if x[1] == q and x[3] == MOVED_SSRC and x[0] >= t200}
    desc = (f"the UPDATE was answered {(t200 - marks['reinvite']) * 1000:.0f} ms after it was sent; "
            f"the carrier then sent {len(tx_q)} packets from :{q}, {len(at_gw)} reached the gateway from "
            f"{SBC_PUB_IP}:{pb}, {len(rx_q)} came back to :{q}; capture in {d}")
    check(len(tx_q) >= 80 and len(at_gw) >= 0.9 * len(tx_q),
          f"the carrier's RTP from its new port did not reach the gateway (want >= 90 %): {desc}")
    check(len(rx_q) >= 0.9 * len(tx_q),
          f"the gateway's RTP did not reach the carrier's new port {q} (want >= 90 %): {desc}")
    print(f"  (UPDATE -> re-INVITE {g_inv[1].header('CSeq')} at the gateway, 200 + ACK; {desc})", flush=True)


# --- (e) numbers in the tenant's format --------------------------------------------------------------

E164_TENANT = "e164ten"


@lab_test
def lk_numbers_e164(ctx: Ctx):
    """Tenant e164ten (source 10.0.9.7, group 1 = gateway .10 with profile livekit) with
    number_format e164 and country_code 1. POST /api/v1/route for sip:4155550123@10.0.0.100 from
    the carrier with X-Tenant-ID: e164ten (and for sip:e164ten_4155550123@..., the prefix) and
    from sip:4155550000@10.0.1.10 answers user +14155550123 and caller_user +14155550000. A call
    from the carrier (lk_uac_e164: INVITE sip:4155550123@SBC, From user 4155550000, X-Tenant-ID:
    e164ten) reaches the gateway as INVITE sip:+14155550123@..., To user +14155550123, From user
    +14155550000."""
    name = "lk_numbers_e164"
    d = ctx.tdir(name)
    called, caller = "4155550123", "4155550000"
    want_called, want_caller = "+1" + called, "+1" + caller
    with Provisioned(ctx, gateways=LIVEKIT,
                     tenants=[tenant(E164_TENANT, "10.0.9.7", 1, number_format="e164", country_code="1")]) as p:
        t = (p["tenants"] or [{}])[0]
        check(t.get("number_format") == "e164" and t.get("country_code") == "1",
              f"POST /api/v1/tenants answered {t} (want number_format e164, country_code 1)")
        decisions = {
            "header": ctx.api.route(CARRIER_IP, f"sip:{called}@{SBC_PRIV}", {"X-Tenant-ID": E164_TENANT},
                                    from_uri=f"sip:{caller}@{CARRIER_IP}"),
            "prefix": ctx.api.route(CARRIER_IP, f"sip:{E164_TENANT}_{called}@{SBC_PRIV}",
                                    from_uri=f"sip:{caller}@{CARRIER_IP}"),
        }
        with Uas("gw", "lk_uas", GW1_IP, 5060, d, "uas") as uas:
            r = run_uac("carrier", "lk_uac_e164", CARRIER_IP, 5060, SBC_PRIV, d, "uac", calls=1, rate=1,
                        duration_ms=300, timeout_s=15, service=called,
                        extra=["-key", "tenant", E164_TENANT, "-key", "caller", caller])
            ur = uas.stop()
    problems: list[str] = []
    for how, dec in decisions.items():
        if (dec.get("action"), dec.get("tenant_id"), dec.get("user"), dec.get("caller_user")) != \
                ("route", E164_TENANT, want_called, want_caller):
            problems.append(f"POST /api/v1/route (tenant by {how}) answered {dec} (want tenant "
                            f"{E164_TENANT}, user {want_called}, caller_user {want_caller})")
    if not r.ok(1):
        problems.append(f"carrier: {r.diagnostics()}\n--- gateway: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    inv = received_invites(ur.files.get("messages"))
    if len(inv) != 1:
        problems.append(f"the gateway got {len(inv)} INVITEs")
    else:
        g = inv[0]
        seen = {"Request-URI": g.ruri_user, "To": user_of(g.header("To")), "From": user_of(g.header("From"))}
        want = {"Request-URI": want_called, "To": want_called, "From": want_caller}
        if seen != want:
            problems.append(f"the gateway's INVITE has users {seen} (want {want}):\n{head_of(g)}")
    check(not problems, "\n".join(problems) + f"\n(traces in {d})")
    print(f"  (route API: user {want_called}, caller_user {want_caller}; the gateway got "
          f"{inv[0].first_line}, To {inv[0].header('To')}, From {inv[0].header('From')})", flush=True)


# --- (f) all of it in one long call ---------------------------------------------------------------

LONG_CALL_S = 100.0       # default call length (SBC_LAB_LONG_CALL_S): longer than one 90 s interval
EVERYTHING_REFRESH_S, EVERYTHING_DTMF_S = 30.0, 20.0
# The gateway's 180: lk_uas rings (without 100rel, as LiveKit does) 1 s before its 200.
RING = """  <send>
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
  <pause milliseconds="1000"/>
"""
ANSWER_AT = '  <send retrans="500">'          # lk_uas.xml: the first one is the call's 200


def max_gap(times: list[float], start: float, end: float) -> tuple[float, float]:
    """The longest stretch of [start, end] with none of `times` in it: (length, where it began)."""
    edges = [start] + sorted(t for t in times if start <= t <= end) + [end]
    return max(((b - a, a) for a, b in zip(edges, edges[1:])), default=(0.0, start))


@lab_test
def lk_carrier_everything(ctx: Ctx):
    """The issue's "done when": a carrier using session timers, UPDATE, INFO DTMF, 100rel and
    delayed offer completes a long call with audio and digits through a gateway that supports none
    of them. Gateway .10 with profile livekit; its stand-in is lk_uas (UPDATE 405, INFO 501, no
    100rel, no PRACK; -rtp_echo) made to ring: 180 without 100rel 1 s before its 200. The carrier
    (uapeer everything) sends an INVITE without SDP with Supported: timer, 100rel, Require: 100rel,
    Session-Expires: 90;refresher=uac, Min-SE: 90, Allow: ... UPDATE, INFO, PRACK; PRACKs each
    reliable provisional; answers the 200's offer in its ACK; then, for SBC_LAB_LONG_CALL_S s
    (default 100, longer than the 90 s interval; 900 for the real 15-minute call), sends RTP every
    20 ms, a bodiless UPDATE (Session-Expires: 90;refresher=uac) every 30 s and an INFO
    application/dtmf-relay (Signal=1..9, 0, ...; Duration=160) every 20 s; then BYE.

    Required: the flow went through; the carrier's 180 reliable (RSeq 1) and each PRACK answered
    200; its 200 with Session-Expires: 90;refresher=uac; every UPDATE and INFO answered 200 by the
    SBC (the UPDATEs' with Session-Expires: 90;refresher=uac); the carrier got no request (no BYE)
    from the SBC; the gateway got an INVITE with an SDP offer and no timer/100rel/Session-Expires/
    Min-SE, a bodiless ACK, no UPDATE/INFO/PRACK (only INVITE, ACK, BYE) and its BYE only after the
    carrier's; >= 95 % of the carrier's RTP came back (the gateway's echo) with no gap over 2 s from
    the first packet sent to the last; each INFO's digit reached the gateway, in order, as an RFC
    4733 event in the gateway's telephone-event payload type from the call's relay port (pub0
    captured with a filter: only short datagrams from the SBC to the gateway); status
    sip.refreshes_answered + the UPDATEs, sip.info_dtmf + the INFOs, sip.sessions_expired + 0,
    media.dtmf_injected + the event packets captured."""
    name = "lk_carrier_everything"
    d = ctx.tdir(name)
    hold = float(os.environ.get("SBC_LAB_LONG_CALL_S") or LONG_CALL_S)
    n_upd = len([k for k in range(1, int(hold / EVERYTHING_REFRESH_S) + 1) if k * EVERYTHING_REFRESH_S < hold])
    n_info = len([k for k in range(1, int(hold / EVERYTHING_DTMF_S) + 1) if k * EVERYTHING_DTMF_S < hold])
    text = (SIPP_DIR / "lk_uas.xml").read_text()
    check(ANSWER_AT in text, f"lab/sipp/lk_uas.xml has no {ANSWER_AT.strip()!r} to ring before")
    uas_scen = d / "lk_uas_ring.xml"
    uas_scen.write_text(text.replace(ANSWER_AT, RING + ANSWER_AT, 1))
    # Only the telephone events (16-byte RTP: UDP length 24) and whatever else is that short.
    dtmf_filter = f"udp and src host {SBC_PUB_IP} and dst host {GW1_IP} and udp[4:2] < 64"
    t_begin = time.monotonic()
    with Provisioned(ctx, gateways=LIVEKIT):
        wait_media_idle(ctx)
        s0, m0 = sip_counters(ctx), ctx.api.media()
        cap = Capture("sbc", "pub0", d / "pub0_short.pcap", filter=dtmf_filter)
        try:
            with Uas("gw", str(uas_scen), GW1_IP, 5060, d, "uas",
                     extra=["-rtp_echo", "-mp", str(SIPP_MEDIA_PORT)]) as uas:
                peer = PeerRun(ctx, d, "carrier", "carrier", "everything",
                               ["--ip", CARRIER_IP, "--port", str(SIPP_MEDIA_PORT), "--to", SBC_PRIV,
                                "--hold", str(hold), "--refresh", str(EVERYTHING_REFRESH_S),
                                "--dtmf-every", str(EVERYTHING_DTMF_S)])
                res = peer.result(hold + 60)
                ur = uas.stop()
        finally:
            cap.stop()
        m1 = wait_media_idle(ctx, int(m0["streams"]))
        s1 = sip_counters(ctx)
    problems: list[str] = []
    if res.get("error"):
        problems.append(f"the carrier's flow failed: {res['error']}")
    if ur.failed or ur.successful < 1:
        problems.append(f"gateway stand-in: {ur.summary()}\n{tail_if(ur.files.get('errors'))}")
    msgs, marks, notes = peer_msgs(res), res.get("marks", {}), res.get("notes", {})
    t_ack = marks.get("ack") or marks.get("answered") or marks.get("invite") or 0.0

    def at(t: float) -> str:
        return f"{t - t_ack:+.1f} s"

    def firsts(direction: str, method: str) -> list[tuple[float, Msg]]:
        seen, out = set(), []
        for t, w, m in msgs:
            if w == direction and m.method == method and m.cseq not in seen:
                seen.add(m.cseq)
                out.append((t, m))
        return out

    def answer(req: Msg) -> tuple[float, Msg] | None:
        return next(((t, m) for t, w, m in msgs if w == "received" and m.is_response and m.code >= 200
                     and m.cseq == req.cseq), None)

    # --- the carrier's side: 100rel, the session timer, UPDATE and INFO answered at the edge.
    invs = firsts("sent", "INVITE")
    check(bool(invs), f"the carrier sent no INVITE: {res.get('error')} (output {peer.out})")
    inv = invs[0][1]
    if inv.body:
        problems.append(f"the carrier's INVITE has a body (want none: delayed offer):\n{peer_text(inv)}")
    provs = [(t, m) for t, w, m in msgs if w == "received" and m.is_response and m.cseq == inv.cseq
             and 100 < m.code < 200]
    reliable = [(t, m) for t, m in provs if "100rel" in tokens(m.all("Require"))]
    pracks = firsts("sent", "PRACK")
    prack_answers = [(p, answer(p)) for _, p in pracks]
    if not reliable or reliable[0][1].all("RSeq") != ["1"]:
        got = [f"{m.first} Require {m.all('Require')} RSeq {m.all('RSeq')}" for _, m in provs]
        problems.append(f"the carrier got provisionals {got} (want the gateway's 180 as a reliable one, "
                        f"Require: 100rel, RSeq: 1)")
    if not pracks or any(a is None or a[1].code != 200 for _, a in prack_answers):
        problems.append(f"the carrier's PRACKs (RAck {[p.header('RAck') for _, p in pracks]}) got "
                        f"{[a[1].first if a else 'no answer' for _, a in prack_answers]} (want one per "
                        f"reliable provisional, each 200)")
    ok = answer(inv)
    if ok is None or ok[1].code != 200:
        problems.append(f"the carrier's INVITE got {ok[1].first if ok else 'no final response'}")
    elif ok[1].all("Session-Expires", "x") != [SE] or "timer" not in tokens(ok[1].all("Require")):
        problems.append(f"the carrier's 200 has Session-Expires {ok[1].all('Session-Expires', 'x')}, "
                        f"Require {ok[1].all('Require')} (want {SE!r} and timer):\n{peer_text(ok[1])}")
    updates = [(t, m, answer(m)) for t, m in firsts("sent", "UPDATE")]
    infos = [(t, m, answer(m)) for t, m in firsts("sent", "INFO")]

    def listing(items) -> str:
        return ", ".join(f"{at(t)} CSeq {m.cseq[0]}: {a[1].first.split(' ', 1)[1] if a else 'no answer'}"
                         + (f" (+{(a[0] - t) * 1000:.0f} ms, Session-Expires {a[1].header('Session-Expires', 'x')})"
                            if a and m.method == "UPDATE" else "")
                         for t, m, a in items) or "(none)"
    upd_desc = f"UPDATEs after the ACK: {listing(updates)}"
    info_desc = f"INFOs after the ACK: {listing(infos)}"
    if len(updates) != n_upd or any(a is None or a[1].code != 200 or a[1].all("Session-Expires", "x") != [SE]
                                    for _, _, a in updates):
        problems.append(f"{upd_desc} (want {n_upd}, each 200 with Session-Expires {SE!r})")
    digits = notes.get("digits", [])
    if len(infos) != n_info or any(a is None or a[1].code != 200 for _, _, a in infos):
        problems.append(f"{info_desc} (want {n_info}, each 200)")
    got_reqs = [(t, m) for t, w, m in msgs if w == "received" and not m.is_response]
    if got_reqs:
        problems.append("the carrier received requests from the SBC: "
                        + "; ".join(f"{at(t)} {m.first} (Reason: {m.header('Reason')})" for t, m in got_reqs))
    byes = firsts("sent", "BYE")
    bye_ok = answer(byes[0][1]) if byes else None
    if not byes or bye_ok is None or bye_ok[1].code != 200:
        got = bye_ok[1].first if bye_ok else "no answer"
        problems.append(f"the carrier's BYE {f'got {got}' if byes else 'was never sent'}")
    elif byes[0][0] - t_ack < hold - 1:
        problems.append(f"the carrier's BYE left {byes[0][0] - t_ack:.1f} s after its ACK (want {hold:.0f})")

    # --- the gateway's side: an offer, nothing of timer/100rel, no UPDATE/INFO/PRACK, not cut.
    gwm = sipp_messages(ur.files.get("messages"))
    g_inv = received_invites_of(gwm)
    check(len(g_inv) == 1, "\n".join(problems) + f"\nthe gateway got {len(g_inv)} initial INVITEs "
          f"(want 1; traces in {d})")
    g = g_inv[0]
    s = sdp_fields(g.body)
    pb = s["port"]
    if (g.header("Content-Type") or "").lower() != "application/sdp" or s["c"] != SBC_PUB_IP \
            or not relay_port_ok(pb) or not s["pts"]:
        problems.append(f"the gateway's INVITE carries no SDP offer of the SBC's ({SBC_PUB_IP}, an even "
                        f"relay port):\n{head_of(g, 60)}")
    left = timer_headers(g) + [f"{n}: {', '.join(g.headers(n))}" for n in ("Require", "Supported")
                               if "100rel" in tokens(g.headers(n))] + [f"RSeq: {v}" for v in g.headers("RSeq")]
    if left:
        problems.append(f"the gateway's INVITE carries {left}:\n{head_of(g)}")
    g_reqs = requests(gwm, "received", g.call_id)
    g_got = [f"{method_of(m)} {at(m.ts)}" for m in g_reqs]
    if any(method_of(m) in ("UPDATE", "INFO", "PRACK") for m in g_reqs) \
            or sorted(method_of(m) for m in g_reqs) != ["ACK", "BYE", "INVITE"]:
        problems.append(f"the gateway received {g_got} (want only the INVITE, its ACK and the BYE: no "
                        f"UPDATE, INFO, PRACK)")
    g_ack = [m for m in g_reqs if m.is_request("ACK")]
    if g_ack and (g_ack[0].body.strip() or g_ack[0].header("Content-Type")):
        problems.append(f"the ACK the gateway got has a body (the carrier's answer stops at the SBC):\n"
                        f"{head_of(g_ack[0])}")
    g_byes = [m for m in g_reqs if m.is_request("BYE")]
    if byes and g_byes and g_byes[0].ts < byes[0][0] - 0.05:
        problems.append(f"the gateway got a BYE {at(g_byes[0].ts)} after the carrier's ACK, before the "
                        f"carrier's own ({at(byes[0][0])}), Reason {g_byes[0].header('Reason')!r}: the "
                        f"SBC cut the call:\n{head_of(g_byes[0])}")
    gw_ok = next((m for m in gwm if m.direction == "sent" and m.is_response(200, "INVITE") and m.sdp), None)
    pt = telephone_event_pt(gw_ok.body) if gw_ok else None

    # --- audio: the carrier's RTP came back through the gateway's echo, all along.
    tx = [x for x in res.get("rtp_tx", []) if x[3] == CARRIER_SSRC]
    rx = [x for x in res.get("rtp_rx", []) if x[3] == CARRIER_SSRC]
    back = {x[4] for x in rx} & {x[4] for x in tx}
    gap, gap_at = max_gap([x[0] for x in rx], tx[0][0], tx[-1][0]) if tx else (float("inf"), t_ack)
    share = len(back) / len(tx) if tx else 0.0
    audio = (f"the carrier sent {len(tx)} RTP packets ({tx[-1][0] - tx[0][0]:.1f} s), {len(back)} came back "
             f"({share:.1%}), longest stretch with none coming back {gap:.2f} s from {at(gap_at)}"
             if tx else "the carrier sent no RTP")
    if len(tx) < 40 * hold or share < 0.95:
        problems.append(f"audio: {audio} (want >= 95 % back)")
    if gap > 2.0:
        problems.append(f"audio: {audio} (want no gap over 2 s)")

    # --- the digits at the gateway, as RFC 4733 events (pub0, short datagrams only).
    short = rtp_flow(rtp_packets(cap.path), (SBC_PUB_IP, None), (GW1_IP, None))
    events: list[list] = []
    for p in (p for p in short if p.pt == pt):
        ts = struct.unpack("!I", p.payload[4:8])[0]
        if not events or events[-1][0] != ts:
            events.append([ts, []])
        events[-1][1].append(p)
    codes = [ps[0].payload[12] if len(ps[0].payload) >= 16 else None for _, ps in events]
    want_codes = [int(x) for x in digits]
    others = sorted({p.pt for p in short if p.pt != pt})
    ev_desc = (f"digits sent {''.join(digits) or '(none)'}; events at the gateway in pt {pt}: "
               f"{''.join('?' if c is None else str(c) if c < 10 else f'<{c}>' for c in codes) or '(none)'} "
               f"({len(events)} events, {sum(len(ps) for _, ps in events)} packets"
               f"{f'; short packets in other pts {others}' if others else ''})")
    if pt is None:
        problems.append(f"the gateway's 200 names no telephone-event payload type:\n{head_of(gw_ok)}")
    elif codes != want_codes:
        problems.append(f"DTMF: {ev_desc} (want one event per INFO, in order)")
    bad_ev = []
    info_sent = [t for t, _, _ in infos]
    for i, (ts, ps) in enumerate(events):
        if any(len(p.payload) < 16 or p.payload[12] != ps[0].payload[12] for p in ps):
            bad_ev.append(f"event {i + 1}: packets with different event codes")
        if any((p.sport, p.dport) != (pb, SIPP_MEDIA_PORT) for p in ps):
            bad_ev.append(f"event {i + 1}: from {ps[0].sport} to {ps[0].dport} (want from the relay port "
                          f"{pb} to the gateway's {SIPP_MEDIA_PORT})")
        if i < len(info_sent) and ps[0].ts < info_sent[i] - 0.05:
            bad_ev.append(f"event {i + 1} left {info_sent[i] - ps[0].ts:.2f} s before its INFO was sent")
    if bad_ev:
        problems.append("DTMF: " + "; ".join(bad_ev[:10]))

    # --- the status counters.
    counted = {}
    n_pkts = sum(len(ps) for _, ps in events)
    for group, before, after, key, want in (("sip", s0, s1, "refreshes_answered", len(updates)),
                                            ("sip", s0, s1, "info_dtmf", len(infos)),
                                            ("sip", s0, s1, "sessions_expired", 0),
                                            ("media", m0, m1, "dtmf_injected", n_pkts)):
        if key not in after:
            problems.append(f"status {group} has no {key}: {sorted(after)}")
            continue
        counted[key] = int(after[key]) - int(before.get(key, 0))
        if counted[key] != want:
            problems.append(f"status {group}.{key} went up by {counted[key]} (want {want})")
    check(not problems, "\n".join(problems) + f"\n--- {upd_desc}\n--- {info_desc}\n--- audio: {audio}\n"
          f"--- DTMF: {ev_desc}\n--- the gateway received {g_got}\n(peer output, traces and the "
          f"capture in {d}; SBC log in {ctx.out})")
    print(f"  ({hold:.0f} s call, {time.monotonic() - t_begin:.0f} s in all: reliable 180 PRACKed "
          f"({[a[1].code for _, a in prack_answers]}); {len(updates)} UPDATE refreshes answered 200 by "
          f"the SBC (Session-Expires {sorted({a[1].header('Session-Expires', 'x') for _, _, a in updates})}); "
          f"{len(infos)} INFO digits {''.join(digits)} -> {len(events)} RFC 4733 events in pt {pt} "
          f"({n_pkts} packets) in order; audio: {audio}; the gateway received {[method_of(m) for m in g_reqs]}; "
          f"counters {counted})", flush=True)
