//! What the SBC originates itself: responses to requests (100, 4xx/5xx,
//! answers to broken requests), the ACK and CANCEL of our client
//! transactions, and the BYE that ends a call whose media stopped.

use std::io::Write;
use std::net::SocketAddr;

use super::dialog::{Dialog, LegRef};
use super::rewrite::{our_contact, with_tag};
use super::slab::Id;
use super::txn::{Outbound, Txn};
use super::{Outgoing, SipEngine};
use crate::sip::build::{reason, Builder};
use crate::sip::grammar::{self, NameAddr};
use crate::sip::{HeaderName, SipMessage};

impl SipEngine {
    /// Sends a BYE of ours toward leg `to` of dialog `did` in a client
    /// transaction of its own ([`Txn::local`]), so that a lost BYE is sent
    /// again (RFC 3261 17.1.2) and its answer is counted, not stray.
    /// `reason` is the value of its `Reason` header (RFC 3326).
    pub(super) fn send_bye(&mut self, did: Id, to: LegRef, reason: &[u8], out: &mut Vec<Outgoing>) {
        self.send_local(did, to, b"BYE", &raw_line(b"Reason", reason), b"", out);
    }

    /// Sends an in-dialog request of ours (`method`, with `extra` header
    /// lines and `body`) toward leg `to` of dialog `did`, in its own client
    /// transaction ([`Txn::local`]; an INVITE's 2xx is ACKed); a request
    /// other than BYE takes the leg's next CSeq number for good.
    pub(super) fn send_local(
        &mut self,
        did: Id,
        to: LegRef,
        method: &[u8],
        extra: &[u8],
        body: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        let id = self.txns.next_id();
        let branch = self.branch_for(id, 0);
        let Some((req, outbound)) = self
            .dialogs
            .get(did)
            .and_then(|d| self.request_for(d, to, method, &branch, extra, body))
        else {
            return;
        };
        if method != b"BYE" {
            if let Some(d) = self.dialogs.get_mut(did) {
                let leg = d.leg_mut(to);
                leg.cseq_sent = leg.cseq_sent.saturating_add(1);
                leg.cseq_shift = leg.cseq_shift.saturating_add(1);
            }
            self.journal_up(did);
        }
        let mut txn = Txn::local(
            did,
            to,
            (req.side, req.dst, req.transport),
            req.data.clone(),
            self.now,
            self.cfg.t1,
        );
        txn.invite = method == b"INVITE";
        txn.outbound = outbound;
        let inserted = self.txns.insert(txn);
        debug_assert_eq!(inserted, id, "the slab handed out another id");
        self.stats.local_requests.inc();
        self.stats.transactions.set(self.txns.len() as u64);
        self.arm(id);
        out.push(req);
    }

    /// An in-dialog request of ours toward leg `to` (a BYE as if the other
    /// party hung up, an UPDATE or re-INVITE refreshing the session), CSeq
    /// one past the last the leg was sent, `extra` header lines after the
    /// usual ones, then `body`; and what its ACK or CANCEL repeats of it.
    fn request_for(
        &self,
        d: &Dialog,
        to: LegRef,
        method: &[u8],
        branch: &[u8],
        extra: &[u8],
        body: &[u8],
    ) -> Option<(Outgoing, Outbound)> {
        let leg = d.leg(to);
        let ours = self.ours(leg.side, leg.transport);
        let (from_tag, to_tag) = match to {
            LegRef::Caller => (&d.callee_tag, &d.caller_tag),
            LegRef::Callee => (&d.caller_tag, &d.callee_tag),
        };
        let from_caller = to == LegRef::Callee;
        let mut via = ours.via_start();
        via.extend_from_slice(branch);
        let (ruri, routes) = leg.request_target();
        let (from, to_value) = (
            with_tag(leg.party(from_caller), Some(from_tag)),
            with_tag(leg.party(!from_caller), Some(to_tag)),
        );
        let cseq = leg.cseq_sent.saturating_add(1);
        let mut b = Builder::request(method, &ruri);
        b.header("Via", &[&via]);
        b.raw(&routes);
        b.header("Max-Forwards", &[b"70"])
            .header("From", &[&from])
            .header("To", &[&to_value])
            .header("Call-ID", &[&leg.call_id]);
        let _ = write!(b.buf_mut(), "CSeq: {cseq} ");
        b.raw(method).raw(b"\r\n");
        if method != b"BYE" {
            b.raw(&our_contact(ours));
        }
        b.raw(extra);
        let request = Outgoing {
            side: leg.side,
            dst: leg.next_hop(),
            transport: leg.transport,
            data: b.finish(body),
        };
        let outbound = Outbound {
            ruri,
            via,
            from,
            to: to_value,
            call_id: leg.call_id.clone(),
            cseq,
            routes,
        };
        Some((request, outbound))
    }
}

pub(super) fn raw_line(name: &[u8], value: &[u8]) -> Vec<u8> {
    [name, b": ", value, b"\r\n"].concat()
}

pub(super) fn tag_param(tag: u64) -> Vec<u8> {
    format!(";tag={tag:016x}").into_bytes()
}

/// A response we generate ourselves to `msg`, which came from `src`.
pub(super) fn local_response(
    msg: &SipMessage<'_>,
    src: SocketAddr,
    code: u16,
    why: &str,
    tag: u64,
    extra: &[u8],
) -> Vec<u8> {
    let mut b = Builder::response(code, why.as_bytes());
    b.raw(&via_lines(msg, src));
    for h in &msg.headers {
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                b.raw(&raw_line(h.raw_name, h.value));
            }
            HeaderName::To => {
                let mut v = h.value.to_vec();
                if code > 100 && msg.to.tag().is_none() {
                    v.extend(tag_param(tag));
                }
                b.raw(&raw_line(h.raw_name, &v));
            }
            _ => {}
        }
    }
    b.raw(extra);
    b.finish(b"")
}

/// Our answer `code` to an in-dialog request `msg` from `src` (its To tag
/// kept), with `extra` header lines and `body`.
pub(super) fn local_answer(
    msg: &SipMessage<'_>,
    src: SocketAddr,
    code: u16,
    extra: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut b = Builder::response(code, reason(code).as_bytes());
    b.raw(&via_lines(msg, src));
    for h in &msg.headers {
        if matches!(
            h.name,
            HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
        ) {
            b.raw(&raw_line(h.raw_name, h.value));
        }
    }
    b.raw(extra);
    b.finish(body)
}

/// The Via lines of `msg` (from `src`) as its responses carry them back:
/// as received, but for a bare `rport` in the top Via, which gets the
/// source port and a `received` with the source address (RFC 3581 section 4,
/// Kamailio's `force_rport`), so the answer finds a sender behind NAT.
pub(super) fn via_lines(msg: &SipMessage<'_>, src: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut first = true;
    for h in msg.headers.iter().filter(|h| h.name == HeaderName::Via) {
        let filled = if first {
            with_rport(h.value, src)
        } else {
            None
        };
        first = false;
        out.extend(raw_line(h.raw_name, filled.as_deref().unwrap_or(h.value)));
    }
    out
}

/// The share of new requests (percent) an overloaded SBC asks a client that
/// supports overload control to drop (RFC 7339's loss algorithm).
pub(super) const OC_LOSS_PERCENT: u8 = 50;
/// How long that request holds, ms (RFC 7339 `oc-validity`).
pub(super) const OC_VALIDITY_MS: u64 = 1_000;

/// `resp`, our answer to `msg` while overloaded, with RFC 7339 overload
/// control in its top Via when `msg`'s top Via offered it (a bare `oc`,
/// section 5.1): the entry's `oc` becomes `oc=<percent>`, with
/// `oc-algo="loss"`, `oc-validity=<validity_ms>` and `oc-seq=<seq>` (our
/// engine ms, which only grows) after it (section 5.2). Unchanged when
/// `msg` did not offer it.
pub(super) fn with_overload_control(
    resp: Vec<u8>,
    msg: &SipMessage<'_>,
    percent: u8,
    validity_ms: u64,
    seq: u64,
) -> Vec<u8> {
    let Some(top) = msg.values(HeaderName::Via).next() else {
        return resp;
    };
    let first = top.split(|&c| c == b',').next().unwrap_or_default();
    let offers = first
        .split(|&c| c == b';')
        .skip(1)
        .any(|p| grammar::trim_lws(p).eq_ignore_ascii_case(b"oc"));
    if !offers {
        return resp;
    }
    // The response's first Via line: its first entry ends at a comma or the line's end.
    let Some(line) = resp.windows(2).position(|w| w == b"\r\n") else {
        return resp;
    };
    let Some(colon) = resp
        .get(line + 2..)
        .and_then(|r| r.iter().position(|&c| c == b':'))
        .map(|c| line + 2 + c)
    else {
        return resp;
    };
    let line_end = resp
        .get(colon..)
        .and_then(|r| r.windows(2).position(|w| w == b"\r\n"))
        .map_or(resp.len(), |e| colon + e);
    let entry_end = resp
        .get(colon..line_end)
        .and_then(|r| r.iter().position(|&c| c == b','))
        .map_or(line_end, |e| colon + e);
    let (Some(head), Some(entry), Some(tail)) = (
        resp.get(..=colon),
        resp.get(colon + 1..entry_end),
        resp.get(entry_end..),
    ) else {
        return resp;
    };
    let mut parts = entry.split(|&c| c == b';');
    let mut out = head.to_vec();
    out.extend_from_slice(parts.next().unwrap_or_default());
    for p in parts.filter(|p| {
        let name = p.split(|&c| c == b'=').next().unwrap_or_default();
        let name = grammar::trim_lws(name);
        !(name.eq_ignore_ascii_case(b"oc")
            || name.eq_ignore_ascii_case(b"oc-algo")
            || name.eq_ignore_ascii_case(b"oc-validity")
            || name.eq_ignore_ascii_case(b"oc-seq"))
    }) {
        out.push(b';');
        out.extend_from_slice(p);
    }
    let _ = write!(
        out,
        ";oc={percent};oc-algo=\"loss\";oc-validity={validity_ms};oc-seq={seq}"
    );
    out.extend_from_slice(tail);
    out
}

/// The Via value `value` with its first entry's bare `rport` set to the
/// port of `src` and `received` set to its address; `None` when that entry
/// has no bare `rport` (or does not parse).
fn with_rport(value: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    let end = value.iter().position(|&c| c == b',').unwrap_or(value.len());
    let (top, rest) = value.split_at(end);
    let mut params = top.split(|&c| c == b';');
    let head = params.next()?;
    let params: Vec<&[u8]> = params.map(grammar::trim_lws).collect();
    let name = |p: &[u8]| -> Vec<u8> {
        let n = p.split(|&c| c == b'=').next().unwrap_or_default();
        grammar::trim_lws(n).to_ascii_lowercase()
    };
    if !params.iter().any(|p| p.eq_ignore_ascii_case(b"rport")) {
        return None;
    }
    let mut out = head.to_vec();
    for p in params.iter().filter(|p| name(p) != b"received") {
        out.push(b';');
        if p.eq_ignore_ascii_case(b"rport") {
            let _ = write!(out, "rport={}", src.port());
        } else {
            out.extend_from_slice(p);
        }
    }
    let _ = write!(out, ";received={}", src.ip());
    out.extend_from_slice(rest);
    Some(out)
}

/// A response we generate for a transaction whose request is gone.
/// Our final `code` on transaction `t`, with `extra` header lines (each
/// ending in CRLF) after the ones it must echo.
pub(super) fn txn_response(t: &Txn, code: u16, extra: &[u8]) -> Vec<u8> {
    let mut b = Builder::response(code, reason(code).as_bytes());
    b.raw(&t.vias).raw(&t.from_line);
    let mut to = t.to_value.clone();
    if NameAddr::parse(&to).and_then(|n| n.tag()).is_none() {
        to.extend(tag_param(t.local_tag));
    }
    b.header("To", &[&to])
        .raw(&t.call_id_line)
        .raw(&t.cseq_line)
        .raw(extra);
    b.finish(b"")
}

/// An error response to a request that did not parse: echoes what it can of
/// Via, From, To, Call-ID and CSeq. Without a Via there is no one to answer.
pub(super) fn error_response(bytes: &[u8], code: u16, why: &str, tag: u64) -> Option<Vec<u8>> {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next()?;
    let mut b = Builder::response(code, reason(code).as_bytes());
    let mut have_via = false;
    let mut seen = [false; 4];
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = grammar::trim_lws(line.get(..colon).unwrap_or_default());
        let slot = match HeaderName::classify(name) {
            HeaderName::Via => {
                have_via = true;
                b.raw(line).raw(b"\r\n");
                continue;
            }
            HeaderName::From => 0,
            HeaderName::To => 1,
            HeaderName::CallId => 2,
            HeaderName::CSeq => 3,
            _ => continue,
        };
        if seen.get(slot) == Some(&true) {
            continue;
        }
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        b.raw(line);
        let lower = line.to_ascii_lowercase();
        if slot == 1 && !lower.windows(4).any(|w| w == b"tag=") {
            b.raw(&tag_param(tag));
        }
        b.raw(b"\r\n");
    }
    if !have_via {
        return None;
    }
    if code == 400 {
        b.header("Warning", &[b"399 sbc \"", why.as_bytes(), b"\""]);
    }
    Some(b.finish(b""))
}

/// The hop-by-hop ACK for a non-2xx final response to our INVITE.
pub(super) fn build_ack(o: &Outbound, resp: &SipMessage<'_>) -> Vec<u8> {
    let to = resp
        .header(HeaderName::To)
        .map_or(o.to.as_slice(), |h| h.value);
    outbound_request(o, b"ACK", to)
}

pub(super) fn build_cancel(o: &Outbound) -> Vec<u8> {
    outbound_request(o, b"CANCEL", &o.to)
}

pub(super) fn outbound_request(o: &Outbound, method: &[u8], to: &[u8]) -> Vec<u8> {
    let mut b = Builder::request(method, &o.ruri);
    b.header("Via", &[&o.via]).raw(&o.routes);
    b.header("Max-Forwards", &[b"70"])
        .header("From", &[&o.from])
        .header("To", &[to])
        .header("Call-ID", &[&o.call_id]);
    let _ = write!(b.buf_mut(), "CSeq: {} ", o.cseq);
    b.raw(method).raw(b"\r\n");
    b.finish(b"")
}
