//! Re-writing a request for the other leg of its dialog (topology hiding):
//! our Via, Record-Route and Contact, the leg's own Call-ID and From/To, the
//! route set, every other header copied through the [`Hider`].

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::dialog::{DialogState, LegRef};
use super::hide::Hider;
use super::slab::Id;
use super::txn::Outbound;
use super::{SipEngine, TENANT_HEADER};
use crate::routing::Profile;
use crate::side::Side;
use crate::sip::build::Builder;
use crate::sip::grammar::{self, NameAddr, SipUri};
use crate::sip::{HeaderName, Method, SipMessage};
use crate::transport::Transport;

/// A request re-written for the other leg of its dialog.
#[derive(Debug)]
pub(super) struct Rewritten {
    pub bytes: Vec<u8>,
    /// The next hop: the leg's first Route, else its remote target (over
    /// TCP/TLS, its connection: [`super::dialog::Leg::next_hop`]).
    pub dst: SocketAddr,
    /// The leg's transport.
    pub transport: Transport,
    pub side: Side,
    /// What an ACK or CANCEL of ours repeats of it.
    pub outbound: Outbound,
    /// An UPDATE sent on as a re-INVITE ([`super::txn::Txn::update_as_invite`]).
    pub as_invite: bool,
}

impl SipEngine {
    /// Re-writes a request from leg `orig` (whose sender is at `source`) for
    /// the other leg of dialog `did`, with our Via carrying `branch`: the
    /// initial INVITE, a failover INVITE, re-INVITEs and every other
    /// in-dialog request, and the ACK for a 2xx. `None` when the dialog is
    /// gone.
    pub(super) fn rewrite_request(
        &self,
        msg: &SipMessage<'_>,
        did: Id,
        orig: LegRef,
        branch: &[u8],
        source: Ipv4Addr,
    ) -> Option<Rewritten> {
        let d = self.dialogs.get(did)?;
        let to_leg = d.leg(orig.other());
        let dest_side = to_leg.side;
        let ours = self.ours(dest_side, to_leg.transport);
        let hider = self.hider(dest_side, source);
        let from_caller = orig == LegRef::Caller;

        // LiveKit has no UPDATE: in a confirmed call it gets a re-INVITE.
        let as_invite = msg.method() == Method::Update
            && d.profile == Profile::Livekit
            && dest_side == d.gateway_side()
            && d.state == DialogState::Confirmed;
        let method = if as_invite {
            Method::Invite
        } else {
            msg.method()
        };
        let cseq = msg.cseq.seq.saturating_add(to_leg.cseq_shift);
        let (ruri, routes) = to_leg.request_target();
        let mut b = Builder::request(method.as_bytes(), &ruri);
        let mut via = ours.via_start();
        via.extend_from_slice(branch);
        b.header("Via", &[&via]);
        b.raw(&routes);
        let is_initial = msg.to.tag().is_none() && method == Method::Invite;
        if is_initial {
            b.raw(&record_route(ours));
        }
        let body = self.body_for(did, orig.other(), msg, &hider);
        let mut out_from = Vec::new();
        let mut out_to = Vec::new();
        let mut saw_mf = false;
        for h in &msg.headers {
            match h.name {
                HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::ContentLength => {}
                HeaderName::From => {
                    out_from = with_tag(to_leg.party(from_caller), msg.from.tag());
                    b.header("From", &[&out_from]);
                }
                HeaderName::To => {
                    out_to = with_tag(to_leg.party(!from_caller), msg.to.tag());
                    b.header("To", &[&out_to]);
                }
                HeaderName::CallId => {
                    b.header("Call-ID", &[&to_leg.call_id]);
                }
                HeaderName::Contact => {
                    b.raw(&our_contact(ours));
                }
                HeaderName::CSeq if as_invite || to_leg.cseq_shift > 0 => {
                    let _ = write!(b.buf_mut(), "CSeq: {} ", cseq);
                    b.raw(method.as_bytes()).raw(b"\r\n");
                }
                HeaderName::MaxForwards => {
                    saw_mf = true;
                    let mf = msg.max_forwards.unwrap_or(70).saturating_sub(1).min(255);
                    let _ = write!(b.buf_mut(), "Max-Forwards: {mf}\r\n");
                }
                HeaderName::Other
                    if is_initial
                        && (h.raw_name.eq_ignore_ascii_case(TENANT_HEADER.as_bytes())
                            || names_header(&d.gateway_headers, h.raw_name)) => {}
                HeaderName::ContentType => {
                    body.write_content_type(&mut b, h.raw_name, h.value, &hider);
                }
                _ => self.copy_shielded(&mut b, (d, dest_side), h, &hider),
            }
        }
        // LiveKit maps X-* headers to call attributes: tell it the tenant,
        // and add what the gateway's trunk wants.
        if is_initial && dest_side == Side::Public {
            if let Some(tenant) = &d.tenant_id {
                b.header(TENANT_HEADER, &[tenant.as_bytes()]);
            }
            b.raw(&d.gateway_headers);
        }
        if !saw_mf {
            b.header("Max-Forwards", &[b"70"]);
        }
        b.raw(&self.shield_extra(d, is_initial, false));
        body.write_missing_content_type(&mut b, msg);
        let bytes = b.finish(&body.bytes);
        let outbound = Outbound {
            ruri,
            via,
            from: out_from,
            to: out_to,
            call_id: to_leg.call_id.clone(),
            cseq,
            routes,
        };
        Some(Rewritten {
            bytes,
            dst: to_leg.next_hop(),
            transport: to_leg.transport,
            side: dest_side,
            outbound,
            as_invite,
        })
    }
}

pub(super) fn first_contact_uri<'a>(msg: &SipMessage<'a>) -> Option<&'a [u8]> {
    msg.values(HeaderName::Contact)
        .next()
        .and_then(NameAddr::parse)
        .map(|na| na.uri)
}

/// `display <uri>;params` without the tag parameter.
pub(super) fn without_tag(na: &NameAddr<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    if !na.display.is_empty() {
        v.extend_from_slice(na.display);
        v.push(b' ');
    }
    v.push(b'<');
    v.extend_from_slice(na.uri);
    v.push(b'>');
    for p in grammar::split_params(na.params) {
        if !p.get(..3).is_some_and(|n| n.eq_ignore_ascii_case(b"tag"))
            || p.get(3).is_some_and(|&c| c != b'=' && !grammar::is_lws(c))
        {
            v.push(b';');
            v.extend_from_slice(p);
        }
    }
    v
}

pub(super) fn with_tag(party: &[u8], tag: Option<&[u8]>) -> Vec<u8> {
    let mut v = party.to_vec();
    if let Some(t) = tag {
        v.extend_from_slice(b";tag=");
        v.extend_from_slice(t);
    }
    v
}

/// A From/To value for the far leg: the display name and user, at `host`.
/// `haystack` with every `from` replaced by `to`.
pub(super) fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack.get(i..).is_some_and(|rest| rest.starts_with(from)) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.extend(haystack.get(i).copied());
            i += 1;
        }
    }
    out
}

/// A From/To value for the far leg: `na`'s display name (the first of `was`
/// found in it written as the user we send instead, when one replaces it)
/// and its URI
/// re-written to `sip:<user>@<host>[:port]` - `user` in place of the
/// URI's own user when given and not empty - everything text-hidden.
pub(super) fn party_for(
    na: &NameAddr<'_>,
    host: Ipv4Addr,
    (user, port): (Option<&[u8]>, Option<u16>),
    was: &[Option<&[u8]>],
    hider: &Hider<'_>,
) -> Vec<u8> {
    let user = user.filter(|u| !u.is_empty());
    let mut v = Vec::with_capacity(64);
    if !na.display.is_empty() {
        let shown = was.iter().flatten().find(|w| {
            !w.is_empty()
                && user.is_some_and(|u| u != **w)
                && na.display.windows(w.len()).any(|x| x == **w)
        });
        match (shown, user) {
            (Some(w), Some(u)) => hider.copy(&replace_all(na.display, w, u), &mut v),
            _ => hider.copy(na.display, &mut v),
        }
        v.push(b' ');
    }
    v.push(b'<');
    match SipUri::parse(na.uri) {
        Some(u) => {
            v.extend_from_slice(b"sip:");
            if let Some(user) = user.or(u.user) {
                hider.copy(user, &mut v);
                v.push(b'@');
            }
            let _ = write!(v, "{host}");
            if let Some(port) = port {
                let _ = write!(v, ":{port}");
            }
        }
        None => hider.copy(na.uri, &mut v),
    }
    v.push(b'>');
    v
}

/// Our address on one leg: where and over what the leg's peer reaches us.
/// Our Via, Record-Route and Contact on that leg say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ours {
    pub addr: SocketAddrV4,
    pub transport: Transport,
}

impl Ours {
    /// `SIP/2.0/<T> <addr>;branch=` (RFC 3261 §18.1.1, §20.42): the caller
    /// appends the branch. Over TCP/TLS with `;alias`, so the peer may send
    /// its requests back over our connection (RFC 5923 §5).
    pub fn via_start(self) -> Vec<u8> {
        let mut via = Vec::with_capacity(64);
        let alias = if self.transport.reliable() {
            ";alias"
        } else {
            ""
        };
        let _ = write!(
            via,
            "SIP/2.0/{} {}{alias};branch=",
            self.transport.via_name(),
            self.addr
        );
        via
    }

    /// `sip:<user@>addr` with `;transport=` for TCP/TLS (`sip:` with
    /// `transport=tls` rather than `sips:`: a `sips:` URI would promise TLS on
    /// every hop after ours, which the SBC cannot vouch for toward carriers).
    fn uri(self, user: &str) -> String {
        match self.transport {
            Transport::Udp => format!("sip:{user}{}", self.addr),
            t => format!("sip:{user}{};transport={}", self.addr, t.name()),
        }
    }
}

pub(super) fn record_route(ours: Ours) -> Vec<u8> {
    format!("Record-Route: <{};lr>\r\n", ours.uri("")).into_bytes()
}

pub(super) fn our_contact(ours: Ours) -> Vec<u8> {
    format!("Contact: <{}>\r\n", ours.uri("sbc@")).into_bytes()
}

/// Whether the URI in `value` names one of `ours` (IP and port; a port
/// left out is the URI's transport's default, RFC 3261 §19.1.2).
pub(super) fn is_our_uri(value: &[u8], mut ours: impl Iterator<Item = SocketAddrV4>) -> bool {
    NameAddr::parse(value)
        .and_then(|na| SipUri::parse(na.uri))
        .is_some_and(|u| {
            let tls = na_is_sips(value)
                || grammar::param(u.params, "transport")
                    .flatten()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"tls"));
            let port = u
                .port
                .unwrap_or(if tls { Transport::Tls } else { Transport::Udp }.default_port());
            let ip = grammar::parse_ipv4(u.host);
            ours.any(|o| ip == Some(*o.ip()) && port == o.port())
        })
}

/// Whether a name-addr's (or bare URI's) scheme is `sips:`.
fn na_is_sips(value: &[u8]) -> bool {
    let uri = NameAddr::parse(value).map_or(value, |na| na.uri);
    uri.get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"))
}

/// Headers whose value is signed or hashed end to end, so they pass byte
/// for byte: digest credentials and challenges (RFC 3261 22, RFC 7616 3.4:
/// the `uri` and `realm` inside are part of the hash), and identity
/// signatures (RFC 8224 `Identity`, `y`; RFC 4474 `Identity-Info`).
const SIGNED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "authentication-info",
    "identity",
    "y",
    "identity-info",
];

/// Whether header `name` is one of [`SIGNED_HEADERS`].
fn is_signed(name: &[u8]) -> bool {
    SIGNED_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Copies one header line through the hider, or byte-exact when its value is
/// signed ([`SIGNED_HEADERS`]).
pub(super) fn copy_hidden(b: &mut Builder, name: &[u8], value: &[u8], hider: &Hider<'_>) {
    let buf = b.buf_mut();
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    if is_signed(grammar::trim_lws(name)) {
        buf.extend_from_slice(value);
    } else {
        hider.copy(value, buf);
    }
    buf.extend_from_slice(b"\r\n");
}

/// Whether the header lines `lines` (`Name: value\r\n` each) have one
/// named `name` (case-insensitive).
fn names_header(lines: &[u8], name: &[u8]) -> bool {
    !lines.is_empty()
        && lines.split(|&b| b == b'\n').any(|l| {
            l.split(|&b| b == b':')
                .next()
                .is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(name))
                && l.contains(&b':')
        })
}
