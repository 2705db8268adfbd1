//! SIP for the load tools (`rtpload`, `sipload`): the messages a UAC and a
//! UAS exchange for a basic call (RFC 3261 §13 INVITE/200/ACK, §15 BYE/200),
//! written as text and read back with the SBC's own scanner
//! ([`SipMessage`]). Over UDP only; no authentication, no provisional
//! responses sent.

use std::net::SocketAddrV4;

use sbc_dataplane::sip::message::{HeaderName, SipMessage};

/// An SDP offer or answer with one PCMA audio line at `media` (RFC 4566).
pub fn sdp(media: SocketAddrV4) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

/// The header lines of `msg` named in `names`, as written, in their order,
/// each ending in CRLF (a response copies Via, From, Call-ID, CSeq this way).
pub fn raw_headers(msg: &SipMessage<'_>, names: &[HeaderName]) -> String {
    let mut s = String::new();
    for h in msg.headers.iter().filter(|h| names.contains(&h.name)) {
        s.push_str(&String::from_utf8_lossy(h.raw_name));
        s.push_str(": ");
        s.push_str(&String::from_utf8_lossy(h.value));
        s.push_str("\r\n");
    }
    s
}

/// Who a UAC is: its SIP address, its From tag and Call-ID for call `i`
/// (`{prefix}-{i}`, so a response names its call), and its branches.
#[derive(Debug, Clone)]
pub struct Uac {
    /// Our SIP address (Via, From, Contact).
    pub local: SocketAddrV4,
    /// Where requests go (the SBC).
    pub target: SocketAddrV4,
    /// Call-IDs are `{prefix}-{i}`; branches carry it too.
    pub prefix: String,
}

impl Uac {
    /// The Call-ID of call `i`.
    pub fn call_id(&self, i: u32) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// The call a response or request belongs to, from its Call-ID.
    pub fn call_of(&self, msg: &SipMessage<'_>) -> Option<u32> {
        let cid = std::str::from_utf8(msg.call_id).ok()?;
        cid.strip_prefix(self.prefix.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// The initial INVITE of call `i` to `user` at the target, offering
    /// PCMA at `media` (the same bytes each time: a retransmission).
    pub fn invite(&self, i: u32, user: &str, media: SocketAddrV4) -> String {
        let body = sdp(media);
        format!(
            "INVITE sip:{user}@{sbc} SIP/2.0\r\nVia: SIP/2.0/UDP {sip};branch=z9hG4bK-{p}-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:load@{sip}>;tag=f{i}\r\nTo: <sip:{user}@{sbc}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:load@{sip}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            sbc = self.target,
            sip = self.local,
            p = self.prefix,
            cid = self.call_id(i),
            len = body.len()
        )
    }

    /// The ACK of a non-2xx final answer `msg` to call `i`'s INVITE: same
    /// branch and Request-URI, the answer's To (RFC 3261 §17.1.1.3).
    pub fn ack_failure(&self, i: u32, user: &str, msg: &SipMessage<'_>) -> String {
        let to = msg
            .header(HeaderName::To)
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .unwrap_or_default();
        format!(
            "ACK sip:{user}@{sbc} SIP/2.0\r\nVia: SIP/2.0/UDP {sip};branch=z9hG4bK-{p}-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:load@{sip}>;tag=f{i}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            sbc = self.target,
            sip = self.local,
            p = self.prefix,
            cid = self.call_id(i),
        )
    }

    /// A request within `dialog` of call `i` (ACK of the 2xx, BYE), with a
    /// branch of its own per method (RFC 3261 §12.2.1.1).
    pub fn in_dialog(&self, dialog: &Dialog, method: &str, cseq: u32, i: u32) -> String {
        let routes: String = dialog
            .routes
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {sip};branch=z9hG4bK-{p}-{i}-{method}\r\n{routes}Max-Forwards: 70\r\nFrom: <sip:load@{sip}>;tag=f{i}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            target = dialog.target,
            to = dialog.to,
            sip = self.local,
            p = self.prefix,
            cid = self.call_id(i),
        )
    }
}

/// A dialog as a UAC keeps it from the 2xx to its INVITE (RFC 3261
/// §12.1.2): the remote target, the route set, the To with its tag.
#[derive(Debug, Clone, Default)]
pub struct Dialog {
    /// The To header value of the 2xx (with the UAS's tag).
    pub to: String,
    /// The Contact URI of the 2xx: the Request-URI of requests within.
    pub target: String,
    /// The Record-Route values in reverse order: the Route headers.
    pub routes: Vec<String>,
}

impl Dialog {
    /// The dialog a 2xx answer sets up.
    pub fn from_2xx(msg: &SipMessage<'_>) -> Dialog {
        let text = |h: Option<&sbc_dataplane::sip::Header<'_>>| {
            h.map(|h| String::from_utf8_lossy(h.value).into_owned())
                .unwrap_or_default()
        };
        let contact = text(msg.header(HeaderName::Contact));
        let target = contact
            .trim()
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut routes: Vec<String> = msg
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::RecordRoute)
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect();
        routes.reverse();
        Dialog {
            to: text(msg.header(HeaderName::To)),
            target,
            routes,
        }
    }
}

/// A 200 OK to the request `msg`, as a UAS at `local` sends it: Via, From,
/// Call-ID, CSeq and Record-Route copied, our `to_tag` added to To unless it
/// has one (a request within a dialog), our Contact, and `sdp` as the body
/// when given (RFC 3261 §8.2.6).
pub fn ok_200(
    msg: &SipMessage<'_>,
    local: SocketAddrV4,
    to_tag: &str,
    sdp: Option<&str>,
) -> String {
    let copy = raw_headers(
        msg,
        &[
            HeaderName::Via,
            HeaderName::From,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::RecordRoute,
        ],
    );
    let mut to = msg
        .header(HeaderName::To)
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .unwrap_or_default();
    if msg.to.tag().is_none() {
        to.push_str(";tag=");
        to.push_str(to_tag);
    }
    match sdp {
        Some(body) => format!(
            "SIP/2.0 200 OK\r\n{copy}To: {to}\r\nContact: <sip:uas@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => format!(
            "SIP/2.0 200 OK\r\n{copy}To: {to}\r\nContact: <sip:uas@{local}>\r\nContent-Length: 0\r\n\r\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_reads_back_through_the_scanner() {
        let uac = Uac {
            local: "10.0.1.10:5060".parse().unwrap(),
            target: "10.0.0.100:5060".parse().unwrap(),
            prefix: "sl-7".into(),
        };
        let media = "10.0.1.10:40000".parse().unwrap();
        let inv = uac.invite(42, "919876543210", media);
        let msg = SipMessage::parse(inv.as_bytes()).unwrap();
        assert_eq!(uac.call_of(&msg), Some(42));
        let gw = "203.0.113.10:5060".parse().unwrap();
        let ok = ok_200(&msg, gw, "u42", Some(&sdp(gw)));
        let ok = SipMessage::parse(ok.as_bytes()).unwrap();
        assert_eq!(ok.to.tag(), Some(&b"u42"[..]));
        assert_eq!(uac.call_of(&ok), Some(42));
        let d = Dialog::from_2xx(&ok);
        assert_eq!(d.target, "sip:uas@203.0.113.10:5060");
        for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
            let req = uac.in_dialog(&d, method, cseq, 42);
            let req = SipMessage::parse(req.as_bytes()).unwrap();
            assert_eq!((req.cseq.seq, req.to.tag()), (cseq, Some(&b"u42"[..])));
        }
        let ack = uac.ack_failure(42, "919876543210", &ok);
        assert!(SipMessage::parse(ack.as_bytes()).is_ok());
    }
}
