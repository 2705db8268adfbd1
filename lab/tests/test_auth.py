"""Digest authentication toward gateways that challenge (issue 14, item 4): a gateway provisioned
with credentials (sbcctl add-gateway ... --auth-username U --auth-password P [--auth-realm R], or
POST /api/v1/gateways with auth_username / auth_password / auth_realm) has its 401/407 to the
SBC's INVITE answered by the SBC itself (RFC 3261 22.2, qop=auth, SHA-256 before MD5 as RFC 8760
says): the INVITE goes again to the same gateway with Authorization / Proxy-Authorization, CSeq
one higher, same Call-ID and From tag, a new Via branch; the carrier sees none of it and its
dialog's later requests (ACK, BYE either way) keep their CSeq one apart from the gateway's. A
second challenge (a wrong password), or a realm the credentials are not for, fails that gateway
over like any failure. The password is write-only: neither the API nor sbcctl nor the SBC's log
ever shows it.

The gateways are sipp UASes (lab/sipp/auth_uas_401.xml: MD5 + qop, checked by sipp's verifyauth;
auth_uas_407.xml: MD5 and SHA-256 offered, the gateway hangs up); every digest is checked again
here from the gateway's trace with hashlib (HA1 = H(user:realm:pass), HA2 = H(INVITE:uri),
response = H(HA1:nonce:nc:cnonce:qop:HA2)).

  auth_gateway_401_md5                 3 calls to a gateway provisioned by sbcctl (password from
                                       SBC_GATEWAY_AUTH_PASSWORD) that answers 401: all answered,
                                       the carrier never sees the 401; per call the gateway gets
                                       INVITE n, ACK n (same branch), INVITE n+1 with a verifying
                                       MD5 Authorization, ACK n+1, BYE carrier+1; list-gateways
                                       (table and --json), GET /api/v1/gateways and the SBC log
                                       never show the password; auth_answered +3.
  auth_gateway_407_sha256              2 calls to a gateway provisioned over the API (with
                                       auth_realm) that answers 407 offering MD5 then SHA-256:
                                       Proxy-Authorization answers the SHA-256 challenge; the
                                       gateway hangs up and its BYE reaches the carrier, the 200
                                       comes back with the gateway's CSeq; auth_answered +2.
  auth_cancel_after_challenge          the carrier cancels while the credentialed INVITE rings:
                                       the CANCEL has its branch and CSeq n+1, the 487 comes back
                                       with the carrier's CSeq.
  auth_wrong_password_fails_over       a wrong password: challenged again, the SBC fails over to
                                       the next gateway (no auth) and every call is answered
                                       there; credentials for another realm: no answer at all,
                                       failover; with nothing left, the carrier gets 503;
                                       auth_answered / auth_refused / failovers count each.
  auth_gateway_without_credentials     a gateway without credentials: its 401 reaches the carrier
                                       unchanged (WWW-Authenticate byte for byte), counters still.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import OrderedDict
from pathlib import Path

from kit.addresses import API_BASE, CARRIER_IP, GW1_IP, GW2_IP, SBC_PRIV, gw_uri
from kit.calls import sip_counter, tail_if, wait_calls_down
from kit.ctx import Ctx, TestFailure, check
from kit.proc import nsexec
from kit.provisioning import BASE_CARRIERS, Provisioned, gw
from kit.registry import lab_test
from kit.sip import SipMsg, sipp_messages
from kit.sipp import SippResult, Uas, run_uac

REALM = "lk.example"
USER = "sbc-lab-user"
PASSWORD = "Lab-Pw-7Qx9s2Kd"        # distinctive: looked for wherever it must never appear
WRONG_PASSWORD = "Lab-Wrong-4Hn8"


# --- provisioning with credentials ----------------------------------------------------------------

def sbcctl(ctx: Ctx, *args: str, env: dict | None = None) -> str:
    p = ctx.sbc.binary.with_name("sbcctl")
    check(p.exists(), f"no sbcctl next to the sbc under test ({p})")
    r = subprocess.run(nsexec("sbc", [p, "--api", API_BASE] + list(args)), capture_output=True,
                       text=True, timeout=15, env={**os.environ, **(env or {})})
    check(r.returncode == 0, f"sbcctl {' '.join(args)} -> exit {r.returncode}: {r.stderr.strip()}\n"
                             f"{r.stdout}")
    return r.stdout + r.stderr


def sbcctl_add_gateway(ctx: Ctx, ip: str, group: int, priority: int, desc: str, *,
                       user: str | None = None, password: str | None = None,
                       realm: str | None = None, password_from_env: bool = False) -> dict:
    """`sbcctl add-gateway GROUP URI DESC PRIORITY 1 [--auth-...] --json`; returns the API's row.
    The password goes in SBC_GATEWAY_AUTH_PASSWORD when password_from_env."""
    args = ["add-gateway", str(group), gw_uri(ip), desc, str(priority), "1", "--json"]
    env = None
    if user is not None:
        args += ["--auth-username", user]
    if password is not None:
        if password_from_env:
            env = {"SBC_GATEWAY_AUTH_PASSWORD": password}
        else:
            args += ["--auth-password", password]
    if realm is not None:
        args += ["--auth-realm", realm]
    before = ctx.api.snapshot_version()
    out = sbcctl(ctx, *args, env=env)
    ctx.api.wait_applied(before)
    if password is not None:
        check(password not in out, f"sbcctl add-gateway printed the password:\n{out}")
    try:
        row = json.loads(out)
    except json.JSONDecodeError:
        raise TestFailure(f"sbcctl add-gateway --json printed no JSON:\n{out}") from None
    if isinstance(row, list) and row:
        row = row[0]
    check(isinstance(row, dict) and "id" in row, f"sbcctl add-gateway --json: no gateway row:\n{out}")
    return row


def api_add_gateway(ctx: Ctx, ip: str, group: int, priority: int, desc: str, **auth) -> dict:
    """POST /api/v1/gateways with auth_username / auth_password / auth_realm; returns the row."""
    body = {"destination": gw_uri(ip), "group": group, "priority": priority, "weight": 1,
            "description": desc, **auth}
    before = ctx.api.snapshot_version()
    r = ctx.api.request("POST", "/api/v1/gateways", body)
    check(r.code in (200, 201) and isinstance(r.json(), dict),
          f"POST /api/v1/gateways {json.dumps({**body, 'auth_password': '***'})} -> {r.code} {r.body[:300]}")
    ctx.api.wait_applied(before)
    pw = auth.get("auth_password")
    check(not pw or pw not in r.body, f"POST /api/v1/gateways answered with the password: {r.body}")
    return r.json()


def check_credentials_listed(ctx: Ctx, gid, password: str, realm: str | None, d: Path) -> str:
    """The gateway's credentials as the API, `sbcctl list-gateways` and its --json show them:
    the username, the realm and auth_password_set true, never the password."""
    r = ctx.api.request("GET", "/api/v1/gateways")
    (d / "gateways.json").write_text(r.body)
    check(r.code == 200, f"GET /api/v1/gateways -> {r.code} {r.body[:300]}")
    check(password not in r.body, f"GET /api/v1/gateways shows the password: {r.body}")
    rows = [g for g in ctx.api.list("gateways") if g.get("id") == gid]
    check(len(rows) == 1, f"GET /api/v1/gateways has no gateway {gid}: {r.body}")
    g = rows[0]
    check(g.get("auth_username") == USER and g.get("auth_password_set") is True
          and g.get("auth_realm") == realm and "auth_password" not in g,
          f"GET /api/v1/gateways row: {g} (want auth_username {USER!r}, auth_password_set true, "
          f"auth_realm {realm!r}, no auth_password)")
    table = sbcctl(ctx, "list-gateways")
    js = sbcctl(ctx, "list-gateways", "--json")
    (d / "list-gateways.txt").write_text(table + "\n---\n" + js)
    for what, text in (("list-gateways", table), ("list-gateways --json", js)):
        check(password not in text, f"sbcctl {what} shows the password:\n{text}")
    lines = [x for x in table.splitlines() if x.strip()]
    cols = lines[0].split() if lines else []
    check("auth" in cols, f"sbcctl list-gateways has no auth column:\n{table}")
    mine = [x.split() for x in lines[1:] if x.split() and x.split()[0] == str(gid)]
    check(len(mine) == 1 and len(mine[0]) >= len(cols) and mine[0][cols.index("auth")] == USER,
          f"sbcctl list-gateways: gateway {gid} should show auth {USER}:\n{table}")
    try:
        jrows = json.loads(js)
    except json.JSONDecodeError:
        raise TestFailure(f"sbcctl list-gateways --json printed no JSON:\n{js}") from None
    if isinstance(jrows, dict):
        jrows = next((v for v in jrows.values() if isinstance(v, list)), [])
    jmine = [x for x in jrows if isinstance(x, dict) and x.get("id") == gid]
    check(len(jmine) == 1 and jmine[0].get("auth_username") == USER
          and jmine[0].get("auth_password_set") is True and "auth_password" not in jmine[0],
          f"sbcctl list-gateways --json: gateway {gid} should have auth_username {USER} and "
          f"auth_password_set true, no auth_password:\n{js}")
    return f"auth {USER} listed, password hidden"




# --- calls -----------------------------------------------------------------------------------------

def run(ctx: Ctx, name: str, tag: str, uas: dict, uac_scen: str, calls: int,
        duration_ms: int = 200) -> tuple[SippResult, dict]:
    """One sipp UAS per gateway ({ip: (scenario, extra args)}) in ns gw, `calls` calls one at a
    time (-l 1, so the i-th call of every trace is the same call) from the carrier."""
    d = ctx.tdir(name)
    running: dict[str, Uas] = {}
    results: dict[str, SippResult] = {}
    try:
        for ip, (scen, extra) in uas.items():
            running[ip] = Uas("gw", scen, ip, 5060, d, f"{tag}_uas_{ip.rsplit('.', 1)[1]}", extra=extra)
        r = run_uac("carrier", uac_scen, CARRIER_IP, 5060, SBC_PRIV, d, f"{tag}_uac", calls=calls,
                    rate=10, limit=1, duration_ms=duration_ms, timeout_s=20)
    finally:
        for i, (ip, u) in enumerate(running.items()):
            results[ip] = u.stop(linger=0.5 if i == 0 else 0.0)
    return r, results


def challenger(realm: str = REALM, password: str = PASSWORD) -> list[str]:
    """sipp -key arguments of auth_uas_401.xml / auth_uas_407.xml."""
    return ["-key", "realm", realm, "-key", "user", USER, "-key", "pass", password]


def by_call(path) -> list[list[SipMsg]]:
    """The messages of a sipp trace grouped by Call-ID, calls in the order they started."""
    calls: OrderedDict[str, list[SipMsg]] = OrderedDict()
    for m in sipp_messages(path):
        calls.setdefault(m.call_id or "?", []).append(m)
    return list(calls.values())


def cseq(m: SipMsg) -> int:
    try:
        return int((m.header("CSeq") or "").split()[0])
    except (IndexError, ValueError):
        return -1


def branch(m: SipMsg) -> str | None:
    v = re.search(r";\s*branch=([^;,\s]+)", m.header("Via") or "")
    return v.group(1) if v else None


def tag_of(value: str | None) -> str | None:
    v = re.search(r";\s*tag=([^;>\s]+)", value or "")
    return v.group(1) if v else None


def requests(msgs: list[SipMsg], method: str, direction: str) -> list[SipMsg]:
    """Requests without their retransmissions (same CSeq and branch)."""
    seen, out = set(), []
    for m in msgs:
        if m.direction == direction and m.is_request(method):
            key = (m.header("CSeq"), branch(m))
            if key not in seen:
                seen.add(key)
                out.append(m)
    return out


def responses(msgs: list[SipMsg], direction: str, method: str, code: int | None = None) -> list[SipMsg]:
    return [m for m in msgs if m.direction == direction and m.is_response(code, method)]


def auth_params(value: str | None) -> dict:
    return {k.lower(): (v1 if v1 is not None and v1 != "" else v2) for k, v1, v2 in
            re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value or "")}


def digest_response(algorithm: str, user: str, password: str, method: str, p: dict) -> str:
    """RFC 2617 / RFC 8760 digest response (qop=auth or none) for the parameters `p` of an
    Authorization value."""
    h = hashlib.sha256 if algorithm.upper() == "SHA-256" else hashlib.md5

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()
    ha1 = hx(f"{user}:{p.get('realm')}:{password}")
    ha2 = hx(f"{method}:{p.get('uri')}")
    if p.get("qop"):
        return hx(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}")
    return hx(f"{ha1}:{p.get('nonce')}:{ha2}")


def show(msgs: list[SipMsg], lines: int = 12) -> str:
    """A call's trace, first lines of each message."""
    return "\n".join(f"  [{m.direction}] " + "\n      ".join(m.head.split("\n")[:lines]) for m in msgs)


def check_carrier_calls(r: SippResult, calls: int, bye_from_carrier: bool = True) -> list[list[SipMsg]]:
    """The carrier's side of answered calls: no 401/407 ever, the 200 to its INVITE with its own
    CSeq; returns its calls (messages grouped by Call-ID)."""
    check(r.ok(calls), f"carrier: {r.diagnostics()}")
    legs = by_call(r.files.get("messages"))
    check(len(legs) == calls, f"the carrier's trace has {len(legs)} calls (want {calls})")
    for i, leg in enumerate(legs):
        chal = [m.first_line for m in leg if m.direction == "received"
                and (m.is_response(401) or m.is_response(407))]
        check(not chal, f"carrier call {i + 1} received {chal}: the SBC should have answered the "
                        f"gateway's challenge itself\n{show(leg)}")
        inv = requests(leg, "INVITE", "sent")
        oks = responses(leg, "received", "INVITE", 200)
        check(len(inv) == 1 and oks and all(cseq(m) == cseq(inv[0]) for m in oks),
              f"carrier call {i + 1}: its INVITE has CSeq {[cseq(m) for m in inv]}, the 200s "
              f"{[cseq(m) for m in oks]} (want the caller's own CSeq back)\n{show(leg)}")
        if not bye_from_carrier:
            continue
        bye = requests(leg, "BYE", "sent")
        ok = responses(leg, "received", "BYE", 200)
        check(len(bye) == 1 and ok and cseq(ok[0]) == cseq(bye[0]),
              f"carrier call {i + 1}: BYE CSeq {[cseq(m) for m in bye]}, its 200 {[cseq(m) for m in ok]}")
    return legs


def check_challenged(gw_leg: list[SipMsg], code: int, *, password: str, algorithm: str,
                     what: str) -> dict:
    """One call at a gateway that challenged: INVITE n (no credentials) -> code, ACK n on the
    same branch; INVITE n+1 with the same Call-ID (here: same call), From tag, To without tag, a
    new branch, and Authorization (401) / Proxy-Authorization (407) answering the challenge of
    `algorithm` the gateway sent: realm, nonce, opaque echoed, uri = its Request-URI, qop=auth,
    nc=00000001, a cnonce, response the one `password` gives. Returns the facts: invites,
    params, whether the digest verified."""
    invs = requests(gw_leg, "INVITE", "received")
    check(len(invs) >= 2, f"{what}: the gateway got {len(invs)} INVITE(s) in the call (want the "
                          f"challenged one and one with credentials)\n{show(gw_leg)}")
    i1, i2 = invs[0], invs[1]
    n = cseq(i1)
    chal_hdr = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    cred_hdr = "Authorization" if code == 401 else "Proxy-Authorization"
    other_hdr = "Proxy-Authorization" if code == 401 else "Authorization"
    problems = []
    if i1.header("Authorization") or i1.header("Proxy-Authorization"):
        problems.append("the first INVITE already carried credentials")
    chals = [m for m in responses(gw_leg, "sent", "INVITE", code) if cseq(m) == n]
    acks = [m for m in requests(gw_leg, "ACK", "received") if cseq(m) == n]
    if not chals:
        problems.append(f"the gateway sent no {code} to CSeq {n}")
    if not acks or branch(acks[0]) != branch(i1):
        problems.append(f"the {code} was not ACKed with CSeq {n} ACK on the INVITE's branch "
                        f"{branch(i1)} (ACKs: {[(m.header('CSeq'), branch(m)) for m in acks]})")
    if cseq(i2) != n + 1:
        problems.append(f"CSeq {n} then {cseq(i2)} (want {n + 1})")
    if tag_of(i1.header("From")) != tag_of(i2.header("From")):
        problems.append(f"From tag {tag_of(i1.header('From'))} then {tag_of(i2.header('From'))}")
    if tag_of(i2.header("To")):
        problems.append(f"the INVITE sent again has a To tag ({i2.header('To')}): the {code}'s tag "
                        f"must not be used")
    if branch(i2) == branch(i1):
        problems.append(f"the INVITE sent again reuses the Via branch {branch(i1)}")
    if i2.header(other_hdr):
        problems.append(f"the INVITE sent again carries {other_hdr} (a {code} asks for {cred_hdr})")
    cred = i2.header(cred_hdr)
    p = auth_params(cred)
    offered = [auth_params(v) for m in chals[:1] for v in m.headers(chal_hdr)]
    ch = next((c for c in offered if (c.get("algorithm") or "MD5").upper() == algorithm.upper()), {})
    verified = False
    if not cred:
        problems.append(f"the INVITE sent again has no {cred_hdr}")
    else:
        if not cred.startswith("Digest "):
            problems.append(f"{cred_hdr} is not a Digest answer")
        want = {"username": USER, "realm": REALM, "nonce": ch.get("nonce"),
                "uri": i2.first_line.split()[1], "qop": "auth", "nc": "00000001"}
        if ch.get("opaque"):
            want["opaque"] = ch["opaque"]
        bad = {k: (p.get(k), v) for k, v in want.items() if p.get(k) != v}
        if bad:
            problems.append(f"{cred_hdr} parameters (got, want): {bad}")
        if (p.get("algorithm") or "MD5").upper() != algorithm.upper():
            problems.append(f"algorithm={p.get('algorithm')} (want {algorithm})")
        if not p.get("cnonce"):
            problems.append("no cnonce with qop=auth")
        expect = digest_response(algorithm, USER, password, "INVITE", p)
        verified = p.get("response") == expect
    if problems:
        raise TestFailure(f"{what}: " + "; ".join(problems) + f"\n{cred_hdr}: {cred}\n"
                          f"challenges offered: {[m.headers(chal_hdr) for m in chals[:1]]}\n{show(gw_leg)}")
    return {"invites": invs, "n": n, "params": p, "verified": verified, "response": p.get("response")}


def check_dialog_cseq(gw_leg: list[SipMsg], carrier_leg: list[SipMsg], what: str,
                      bye_from_carrier: bool = True) -> int:
    """After the answer: the gateway's ACK has the CSeq of the INVITE it answered, the carrier's
    ACK and BYE reach it with CSeq + (that INVITE's CSeq - the carrier's); returns the offset."""
    ok = responses(gw_leg, "sent", "INVITE", 200)
    check(ok, f"{what}: the gateway answered no INVITE with 200\n{show(gw_leg)}")
    answered = cseq(ok[0])
    c_inv = requests(carrier_leg, "INVITE", "sent")[0]
    shift = answered - cseq(c_inv)
    all_acks = requests(gw_leg, "ACK", "received")
    g_acks = [m for m in all_acks if cseq(m) == answered]
    c_ack = requests(carrier_leg, "ACK", "sent")
    check(len(g_acks) == 1 and c_ack and cseq(c_ack[0]) + shift == answered,
          f"{what}: the 200 to CSeq {answered} got ACKs {[m.header('CSeq') for m in all_acks]} at the "
          f"gateway (the carrier's ACK had {[m.header('CSeq') for m in c_ack]})\n{show(gw_leg)}")
    if bye_from_carrier:
        c_bye = requests(carrier_leg, "BYE", "sent")
        g_bye = requests(gw_leg, "BYE", "received")
        g_ok = responses(gw_leg, "sent", "BYE", 200)
        check(len(c_bye) == 1 and len(g_bye) == 1 and cseq(g_bye[0]) == cseq(c_bye[0]) + shift
              and g_ok and cseq(g_ok[0]) == cseq(g_bye[0]),
              f"{what}: the carrier's BYE {[m.header('CSeq') for m in c_bye]} reached the gateway as "
              f"{[m.header('CSeq') for m in g_bye]} (want + {shift}, like the INVITE)\n{show(gw_leg)}")
    return shift


# --- 1. 401, MD5, qop=auth; provisioned with sbcctl ---------------------------------------------------

@lab_test
def auth_gateway_401_md5(ctx: Ctx):
    """Gateway .10 added with `sbcctl add-gateway 1 sip:203.0.113.10:5060 ... --auth-username U`
    (the password from SBC_GATEWAY_AUTH_PASSWORD); it answers each first INVITE with 401
    (WWW-Authenticate Digest, realm lk.example, a nonce per call, opaque, qop="auth", MD5) and the
    INVITE sent again only if sipp's verifyauth accepts its Authorization. 3 calls from the
    carrier: all answered, the carrier never sees a 401 and gets its own CSeq back; per call the
    gateway gets INVITE n, ACK n (same branch), INVITE n+1 (same Call-ID and From tag, no To tag,
    new branch) whose Authorization answers the challenge (realm, nonce, opaque, uri = its
    Request-URI, qop=auth, nc, cnonce; the MD5 response verified here too), ACK n+1 and the
    carrier's BYE one CSeq higher than the carrier sent it. sip.auth_answered +3,
    sip.auth_refused +0. sbcctl add-gateway / list-gateways (table: auth column = username;
    --json: auth_password_set true), GET /api/v1/gateways and the SBC's log never show the
    password; sbcctl remove-gateway removes the gateway."""
    name = "auth_gateway_401_md5"
    d = ctx.tdir(name)
    calls = 3
    log0 = ctx.sbc.log_size()
    with Provisioned(ctx, BASE_CARRIERS, []):
        row = sbcctl_add_gateway(ctx, GW1_IP, 1, 1, "gw-auth-md5", user=USER, password=PASSWORD,
                                 password_from_env=True)
        gid = row["id"]
        check(row.get("auth_username") == USER and row.get("auth_password_set") is True,
              f"sbcctl add-gateway answered {row} (want auth_username {USER}, auth_password_set true)")
        listed = check_credentials_listed(ctx, gid, PASSWORD, None, d)
        a0, f0 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
        r, res = run(ctx, name, "md5", {GW1_IP: ("auth_uas_401", challenger())}, "uac_simple", calls)
        a1, f1 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
        ur = res[GW1_IP]
        carrier = check_carrier_calls(r, calls)
        check(ur.successful == calls and ur.failed == 0,
              f"gateway: {ur.summary()} (a call that did not reach its 200 means verifyauth refused the "
              f"Authorization)\n{tail_if(ur.files.get('errors'))}")
        at_gw = by_call(ur.files.get("messages"))
        check(len(at_gw) == calls, f"the gateway's trace has {len(at_gw)} calls (want {calls})")
        shifts = []
        for i, (g, c) in enumerate(zip(at_gw, carrier)):
            f = check_challenged(g, 401, password=PASSWORD, algorithm="MD5", what=f"call {i + 1}")
            check(f["verified"], f"call {i + 1}: the Authorization's MD5 response {f['response']} is not "
                                 f"the one {USER}/<password> gives for {f['params']}")
            check(len(f["invites"]) == 2, f"call {i + 1}: the gateway got {len(f['invites'])} INVITEs")
            check(cseq(f["invites"][0]) == cseq(requests(c, "INVITE", "sent")[0]),
                  f"call {i + 1}: the first INVITE at the gateway has CSeq {f['n']}, the carrier sent "
                  f"{cseq(requests(c, 'INVITE', 'sent')[0])}")
            shifts.append(check_dialog_cseq(g, c, f"call {i + 1}"))
        check(shifts == [1] * calls, f"the gateway's CSeqs are {shifts} above the carrier's (want 1)")
        check(a1 - a0 == calls and f1 - f0 == 0,
              f"sip.auth_answered went up by {a1 - a0} (want {calls}), auth_refused by {f1 - f0} (want 0)")
        gw_text = Path(ur.files["messages"]).read_text(errors="replace")
        check(PASSWORD not in gw_text, "the password went out in SIP (the gateway's trace has it)")
        sbcctl(ctx, "remove-gateway", str(gid))
        left = [g for g in ctx.api.list("gateways") if g.get("id") == gid]
        check(not left, f"sbcctl remove-gateway {gid}: still listed: {left}")
    wait_calls_down(ctx)
    log = ctx.sbc.log_since(log0, None)
    check(PASSWORD not in log, "the SBC's log shows the password:\n"
          + "\n".join(x for x in log.splitlines() if PASSWORD in x)[:2000])
    print(f"  ({calls} calls: 401 answered, INVITE CSeq n -> n+1, MD5 qop=auth verified by sipp and "
          f"here; ACK/BYE +1; auth_answered +{a1 - a0}; {listed})", flush=True)


# --- 2. 407, SHA-256 preferred; provisioned over the API; the gateway hangs up ------------------------

@lab_test
def auth_gateway_407_sha256(ctx: Ctx):
    """Gateway .10 added with POST /api/v1/gateways (auth_username, auth_password, auth_realm
    lk.example); it answers each first INVITE with 407 and two Proxy-Authenticate challenges, MD5
    first, SHA-256 second, both qop="auth". 2 calls: the INVITE sent again (CSeq n+1, same
    Call-ID/From tag, new branch) has a Proxy-Authorization (and no Authorization) answering the
    SHA-256 challenge (RFC 8760: SHA-256 before MD5), whose response verifies with
    HA1 = sha256(user:realm:pass) etc.; the carrier sees no 407 and gets its own CSeq in the 200;
    its ACK reaches the gateway one higher. The gateway hangs up: its BYE reaches the carrier and
    the 200 goes back to the gateway with the gateway's CSeq. sip.auth_answered +2."""
    name = "auth_gateway_407_sha256"
    d = ctx.tdir(name)
    calls = 2
    with Provisioned(ctx, BASE_CARRIERS, []):
        row = api_add_gateway(ctx, GW1_IP, 1, 1, "gw-auth-sha256", auth_username=USER,
                              auth_password=PASSWORD, auth_realm=REALM)
        check(row.get("auth_username") == USER and row.get("auth_password_set") is True
              and row.get("auth_realm") == REALM and "auth_password" not in row,
              f"POST /api/v1/gateways answered {row}")
        check_credentials_listed(ctx, row["id"], PASSWORD, REALM, d)
        a0, f0 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
        r, res = run(ctx, name, "sha", {GW1_IP: ("auth_uas_407", challenger())},
                     "auth_uac_callee_bye", calls)
        a1, f1 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
    ur = res[GW1_IP]
    carrier = check_carrier_calls(r, calls, bye_from_carrier=False)
    check(ur.successful == calls and ur.failed == 0,
          f"gateway: {ur.summary()} (a failed call: its 403 means no SHA-256 Proxy-Authorization)\n"
          f"{tail_if(ur.files.get('errors'))}")
    at_gw = by_call(ur.files.get("messages"))
    check(len(at_gw) == calls, f"the gateway's trace has {len(at_gw)} calls (want {calls})")
    for i, (g, c) in enumerate(zip(at_gw, carrier)):
        f = check_challenged(g, 407, password=PASSWORD, algorithm="SHA-256", what=f"call {i + 1}")
        check(f["verified"], f"call {i + 1}: the Proxy-Authorization's SHA-256 response "
                             f"{f['response']} is not the one {USER}/<password> gives for {f['params']}")
        check(f["params"].get("nonce", "").startswith("sha"),
              f"call {i + 1}: answered the nonce {f['params'].get('nonce')} (want the SHA-256 challenge's)")
        shift = check_dialog_cseq(g, c, f"call {i + 1}", bye_from_carrier=False)
        check(shift == 1, f"call {i + 1}: the gateway's INVITE CSeq is {shift} above the carrier's")
        g_bye = requests(g, "BYE", "sent")
        g_ok = responses(g, "received", "BYE", 200)
        c_bye = requests(c, "BYE", "received")
        c_ok = responses(c, "sent", "BYE", 200)
        check(len(g_bye) == 1 and len(c_bye) == 1 and c_ok and g_ok and cseq(g_ok[0]) == cseq(g_bye[0])
              and cseq(c_ok[0]) == cseq(c_bye[0]),
              f"call {i + 1}: the gateway's BYE {[m.header('CSeq') for m in g_bye]} reached the carrier "
              f"as {[m.header('CSeq') for m in c_bye]}; 200s: carrier sent "
              f"{[m.header('CSeq') for m in c_ok]}, gateway got {[m.header('CSeq') for m in g_ok]}\n"
              f"{show(g)}")
    check(a1 - a0 == calls and f1 - f0 == 0,
          f"sip.auth_answered went up by {a1 - a0} (want {calls}), auth_refused by {f1 - f0} (want 0)")
    wait_calls_down(ctx)
    print(f"  ({calls} calls: 407 with MD5 and SHA-256 offered, SHA-256 qop=auth answered and verified; "
          f"the gateway's BYE relayed; auth_answered +{a1 - a0})", flush=True)


# --- 3. the caller cancels the credentialed INVITE ----------------------------------------------------

@lab_test
def auth_cancel_after_challenge(ctx: Ctx):
    """Gateway .10 with credentials (API) answers the first INVITE 401, the INVITE sent again
    (verifyauth) 180 and then waits; the carrier cancels (uac_cancel). 2 calls: the gateway gets
    the CANCEL for the INVITE it is ringing on, with that INVITE's CSeq number (n+1), Via branch
    and Request-URI (RFC 3261 9.1), answers 200 and 487, and the 487 is ACKed on that branch with
    CSeq n+1; the carrier gets 200 for its CANCEL and the 487 with its own CSeq; no 401.
    sip.auth_answered +2."""
    name = "auth_cancel_after_challenge"
    calls = 2
    with Provisioned(ctx, BASE_CARRIERS, []):
        api_add_gateway(ctx, GW1_IP, 1, 1, "gw-auth-cancel", auth_username=USER,
                        auth_password=PASSWORD)
        a0 = sip_counter(ctx, "auth_answered")
        r, res = run(ctx, name, "cancel", {GW1_IP: ("auth_uas_401_ring", challenger())},
                     "uac_cancel", calls)
        a1 = sip_counter(ctx, "auth_answered")
    ur = res[GW1_IP]
    check(r.ok(calls), f"carrier: {r.diagnostics()}\n--- gateway: {ur.summary()}\n"
                       f"{tail_if(ur.files.get('errors'))}")
    carrier = by_call(r.files.get("messages"))
    at_gw = by_call(ur.files.get("messages"))
    check(len(carrier) == calls and len(at_gw) == calls,
          f"calls in the traces: carrier {len(carrier)}, gateway {len(at_gw)} (want {calls})")
    for i, (g, c) in enumerate(zip(at_gw, carrier)):
        what = f"call {i + 1}"
        chal = [m.first_line for m in c if m.direction == "received"
                and (m.is_response(401) or m.is_response(407))]
        check(not chal, f"{what}: the carrier received {chal}\n{show(c)}")
        c_inv = requests(c, "INVITE", "sent")[0]
        c487 = responses(c, "received", "INVITE", 487)
        check(c487 and cseq(c487[0]) == cseq(c_inv),
              f"{what}: the carrier's 487 has CSeq {[m.header('CSeq') for m in c487]} (its INVITE "
              f"{c_inv.header('CSeq')})\n{show(c)}")
        f = check_challenged(g, 401, password=PASSWORD, algorithm="MD5", what=what)
        check(f["verified"], f"{what}: the Authorization's MD5 response does not verify: {f['params']}")
        i2 = f["invites"][1]
        cancels = requests(g, "CANCEL", "received")
        check(len(cancels) == 1 and cseq(cancels[0]) == cseq(i2) and branch(cancels[0]) == branch(i2)
              and cancels[0].first_line.split()[1] == i2.first_line.split()[1],
              f"{what}: the CANCEL the gateway got "
              f"({[(m.first_line, m.header('CSeq'), branch(m)) for m in cancels]}) does not match the "
              f"INVITE it rings on ({i2.first_line}, {i2.header('CSeq')}, branch {branch(i2)})\n{show(g)}")
        acks = [m for m in requests(g, "ACK", "received") if cseq(m) == cseq(i2)]
        check(len(acks) == 1 and branch(acks[0]) == branch(i2),
              f"{what}: the 487 was ACKed with {[(m.header('CSeq'), branch(m)) for m in acks]} (want "
              f"CSeq {cseq(i2)} ACK on branch {branch(i2)})\n{show(g)}")
    check(ur.successful == calls and ur.failed == 0, f"gateway: {ur.summary()}")
    check(a1 - a0 == calls, f"sip.auth_answered went up by {a1 - a0} (want {calls})")
    wait_calls_down(ctx)
    print(f"  ({calls} calls: CANCEL on the credentialed INVITE's branch and CSeq, 487 relayed)", flush=True)


# --- 4. a second challenge, another realm, nothing left ------------------------------------------------

@lab_test
def auth_wrong_password_fails_over(ctx: Ctx):
    """Group 1: .10 (priority 2, tried first; credentials with a wrong password, via sbcctl
    --auth-password) challenges with 401 and again when the answer does not verify; .11
    (priority 1, no credentials) answers. 3 calls: all answered at .11; .10 got two INVITEs per
    call (CSeq n, n+1; the second's digest is the wrong password's) and ACKs for both 401s; the
    carrier sees no 401; .11's ACK and the carrier's BYE keep CSeq in step with the INVITE .11
    got. auth_answered +3, auth_refused +3, failovers +3. Then .10's credentials are for realm
    other.example: its 401 (realm lk.example) is not answered at all (one INVITE per call there),
    2 calls answered at .11, auth_refused +2, auth_answered +0. Then .10 alone, wrong password:
    the carrier gets 503 for 2 calls (auth_answered +2, auth_refused +2)."""
    name = "auth_wrong_password_fails_over"
    notes = []
    # (a) wrong password, a second gateway to fail over to.
    calls = 3
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW2_IP, 1, 1, 1, "gw-plain")]):
        sbcctl_add_gateway(ctx, GW1_IP, 1, 2, "gw-auth-wrong", user=USER, password=WRONG_PASSWORD)
        a0, f0, o0 = (sip_counter(ctx, k) for k in ("auth_answered", "auth_refused", "failovers"))
        r, res = run(ctx, name, "wrong", {GW1_IP: ("auth_uas_401", challenger()),
                                          GW2_IP: ("uas_simple", [])}, "uac_simple", calls)
        a1, f1, o1 = (sip_counter(ctx, k) for k in ("auth_answered", "auth_refused", "failovers"))
    carrier = check_carrier_calls(r, calls)
    at1, at2 = by_call(res[GW1_IP].files.get("messages")), by_call(res[GW2_IP].files.get("messages"))
    check(len(at1) == calls and len(at2) == calls,
          f"wrong password: .10 saw {len(at1)} calls, .11 {len(at2)} (want {calls} each)")
    check(res[GW2_IP].successful == calls, f"wrong password: .11 {res[GW2_IP].summary()}")
    for i, (g1, g2, c) in enumerate(zip(at1, at2, carrier)):
        f = check_challenged(g1, 401, password=WRONG_PASSWORD, algorithm="MD5",
                             what=f"wrong password, call {i + 1} at .10")
        check(f["verified"], f"wrong password, call {i + 1}: the digest at .10 is not the one the "
                             f"provisioned (wrong) password gives: {f['params']}")
        check(len(f["invites"]) == 2, f"wrong password, call {i + 1}: .10 got {len(f['invites'])} "
                                      f"INVITEs (want 2: a second challenge is not answered)\n{show(g1)}")
        second = [m for m in responses(g1, "sent", "INVITE", 401) if cseq(m) == f["n"] + 1]
        acked = [m for m in requests(g1, "ACK", "received") if cseq(m) == f["n"] + 1]
        check(second and acked, f"wrong password, call {i + 1}: .10's second 401 was "
                                f"{'not ACKed' if second else 'never sent'}\n{show(g1)}")
        inv2 = requests(g2, "INVITE", "received")
        check(len(inv2) == 1 and not inv2[0].header("Authorization")
              and not inv2[0].header("Proxy-Authorization"),
              f"wrong password, call {i + 1}: .11 got {len(inv2)} INVITEs (want 1, no credentials)\n"
              f"{show(g2)}")
        check_dialog_cseq(g2, c, f"wrong password, call {i + 1} at .11")
        check(inv2[0].ts >= requests(g1, "ACK", "received")[-1].ts - 0.05,
              f"wrong password, call {i + 1}: .11 got the INVITE before .10's second 401 was ACKed")
    check((a1 - a0, f1 - f0, o1 - o0) == (calls, calls, calls),
          f"wrong password: auth_answered +{a1 - a0}, auth_refused +{f1 - f0}, failovers +{o1 - o0} "
          f"(want +{calls} each)")
    notes.append(f"wrong password: {calls}/{calls} answered at .11 after two 401s at .10")
    wait_calls_down(ctx)

    # (b) credentials for another realm: the challenge is not answered at all.
    calls = 2
    with Provisioned(ctx, BASE_CARRIERS, [gw(GW2_IP, 1, 1, 1, "gw-plain")]):
        sbcctl_add_gateway(ctx, GW1_IP, 1, 2, "gw-auth-realm", user=USER, password=PASSWORD,
                           realm="other.example")
        a0, f0 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
        r, res = run(ctx, name, "realm", {GW1_IP: ("auth_uas_401", challenger()),
                                          GW2_IP: ("uas_simple", [])}, "uac_simple", calls)
        a1, f1 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
    check_carrier_calls(r, calls)
    at1, at2 = by_call(res[GW1_IP].files.get("messages")), by_call(res[GW2_IP].files.get("messages"))
    n1 = [len(requests(g, "INVITE", "received")) for g in at1]
    n2 = [len(requests(g, "INVITE", "received")) for g in at2]
    check(n1 == [1] * calls and n2 == [1] * calls,
          f"other realm: INVITEs per call at .10 {n1}, at .11 {n2} (want one each: a challenge of "
          f"realm {REALM} is not answered with credentials for other.example)\n"
          + (show(at1[0]) if at1 else ""))
    check((a1 - a0, f1 - f0) == (0, calls),
          f"other realm: auth_answered +{a1 - a0} (want 0), auth_refused +{f1 - f0} (want {calls})")
    notes.append(f"other realm: {calls}/{calls} at .11, .10 not answered")
    wait_calls_down(ctx)

    # (c) nothing to fail over to: the carrier gets 503.
    with Provisioned(ctx, BASE_CARRIERS, []):
        sbcctl_add_gateway(ctx, GW1_IP, 1, 1, "gw-auth-only", user=USER, password=WRONG_PASSWORD)
        a0, f0 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
        r, res = run(ctx, name, "none", {GW1_IP: ("auth_uas_401", challenger())}, "uac_503", calls)
        a1, f1 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
    msgs = sipp_messages(r.files.get("messages"))
    finals = [m.first_line for m in msgs if m.direction == "received" and m.is_response(method="INVITE")
              and not m.first_line.startswith(("SIP/2.0 1",))]
    check(r.ok(calls) and all(x.startswith("SIP/2.0 503") for x in finals),
          f"nothing left: the carrier should get 503 for every call, got {finals}\n{r.diagnostics()}")
    at1 = by_call(res[GW1_IP].files.get("messages"))
    n1 = [len(requests(g, "INVITE", "received")) for g in at1]
    check(n1 == [2] * calls, f"nothing left: INVITEs per call at .10 {n1} (want 2 each)")
    check((a1 - a0, f1 - f0) == (calls, calls),
          f"nothing left: auth_answered +{a1 - a0}, auth_refused +{f1 - f0} (want +{calls} each)")
    notes.append(f"nothing left: {calls} x 503")
    wait_calls_down(ctx)
    print(f"  ({'; '.join(notes)})", flush=True)


# --- 5. no credentials: the challenge is the caller's ---------------------------------------------------

@lab_test
def auth_gateway_without_credentials(ctx: Ctx):
    """The base gateway .10 has no credentials: its 401 to the INVITE reaches the carrier (who
    ACKs it) with WWW-Authenticate byte for byte; the gateway gets one INVITE and the ACK;
    sip.auth_answered and auth_refused do not move."""
    name = "auth_gateway_without_credentials"
    a0, f0 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
    r, res = run(ctx, name, "plain", {GW1_IP: ("auth_uas_401", challenger())}, "auth_uac_401", 1)
    a1, f1 = sip_counter(ctx, "auth_answered"), sip_counter(ctx, "auth_refused")
    check(r.ok(1), f"the carrier should get the gateway's 401: {r.diagnostics()}")
    g = sipp_messages(res[GW1_IP].files.get("messages"))
    c = sipp_messages(r.files.get("messages"))
    sent = [m.header("WWW-Authenticate") for m in g if m.direction == "sent" and m.is_response(401)]
    got = [m.header("WWW-Authenticate") for m in c if m.direction == "received" and m.is_response(401)]
    check(sent and got and got[0] == sent[0],
          f"WWW-Authenticate changed on the way: gateway sent {sent[:1]}, carrier got {got[:1]}")
    invs = requests(g, "INVITE", "received")
    acks = requests(g, "ACK", "received")
    check(len(invs) == 1 and len(acks) == 1,
          f"the gateway got {len(invs)} INVITEs and {len(acks)} ACKs (want 1 and 1)\n{show(g)}")
    check((a1 - a0, f1 - f0) == (0, 0), f"auth_answered +{a1 - a0}, auth_refused +{f1 - f0} (want 0)")
    wait_calls_down(ctx)
    print("  (401 relayed to the carrier unchanged, not answered by the SBC)", flush=True)
