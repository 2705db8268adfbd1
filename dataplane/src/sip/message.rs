//! The zero-copy SIP message scanner (RFC 3261 section 7 and 25).
//!
//! [`SipMessage::parse`] frames one UDP datagram: start line, header lines
//! (folded continuation lines included), and the body as delimited by
//! Content-Length. Every header keeps a borrowed slice of the datagram; nothing
//! is copied. The whole-message checks a proxy owes RFC 4475 (duplicate
//! single-valued headers, Content-Length framing, CSeq range and method, the
//! Via grammar, name-addr grammar of To/From/Contact, the Request-URI) run once
//! here, so the engine works on a message that is known to be well formed.

use super::grammar::{self, NameAddr, Via};
use super::Method;

/// Why a message was refused. `code` is the SIP status a request earns
/// (400, 505, ...); a response that fails is dropped instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// SIP status code the request earns: 400 for most faults, 414 for a Request-URI over
    /// [`MAX_REQUEST_URI`] bytes, 416 for a Request-URI scheme other than sip/sips, 501 for an
    /// unknown method whose CSeq method differs, 505 for another SIP version.
    pub code: u16,
    /// Reason phrase sent with `code`; for 400 it names the fault (e.g. `Malformed Via`).
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) const fn bad(reason: &'static str) -> Self {
        ParseError { code: 400, reason }
    }
}

/// The longest Request-URI taken, in bytes; longer gets 414 (RFC 3261
/// §21.4.12). A telephone number with its parameters is far shorter; the
/// limit keeps one oversized URI from being written twice (Request-URI and
/// `To`) into what goes to the gateway.
pub const MAX_REQUEST_URI: usize = 1024;

/// Whether a header line (its name, value and folds, `whole`) holds a byte
/// the SIP grammar forbids there (RFC 3261 §25.1): a control character
/// (0x00-0x1F but HTAB, or DEL) that is not the second byte of a quoted-pair
/// (`\` then any byte but CR and LF), or a CR or LF that is not part of a
/// fold (CRLF then SP or HTAB). Such a byte copied onward could break
/// the next hop's framing.
fn forbidden_control(whole: &[u8]) -> bool {
    let mut prev = 0u8;
    let mut i = 0;
    while let Some(&b) = whole.get(i) {
        let fold = |at: usize| matches!(whole.get(at), Some(b' ' | b'\t'));
        match b {
            b'\r' => {
                if whole.get(i + 1) != Some(&b'\n') || !fold(i + 2) {
                    return true;
                }
                i += 1;
            }
            // A fold is CRLF then white space (RFC 3261 §25.1 LWS); the CR
            // took its LF above, so an LF here is bare.
            b'\n' => return true,
            b'\t' => {}
            0..=0x1f | 0x7f if prev != b'\\' => return true,
            _ => {}
        }
        // A backslash escapes one byte: `\\` then a control byte is not a pair.
        prev = if prev == b'\\' { 0 } else { b };
        i += 1;
    }
    false
}

/// Whether a Request-URI byte must have been %-escaped (RFC 3261 §25.1,
/// RFC 3986 §2): space and controls, non-ASCII, and `"<>\\^`{|}`.
fn unescaped_in_uri(b: u8) -> bool {
    b <= 0x20 || b >= 0x7f || b"\"<>\\^`{|}".contains(&b)
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Header names the proxy acts on; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    /// `Via` or compact `v` (RFC 3261 §20.42).
    Via,
    /// `From` or compact `f` (RFC 3261 §20.20).
    From,
    /// `To` or compact `t` (RFC 3261 §20.39).
    To,
    /// `Call-ID` or compact `i` (RFC 3261 §20.8).
    CallId,
    /// `CSeq` (RFC 3261 §20.16).
    CSeq,
    /// `Max-Forwards` (RFC 3261 §20.22).
    MaxForwards,
    /// `Content-Length` or compact `l` (RFC 3261 §20.14).
    ContentLength,
    /// `Content-Type` or compact `c` (RFC 3261 §20.15).
    ContentType,
    /// `Contact` or compact `m` (RFC 3261 §20.10).
    Contact,
    /// `Route` (RFC 3261 §20.34).
    Route,
    /// `Record-Route` (RFC 3261 §20.30).
    RecordRoute,
    /// `Proxy-Require` (RFC 3261 §20.29).
    ProxyRequire,
    /// `Require` (RFC 3261 §20.32).
    Require,
    /// Any other header; its name is in [`Header::raw_name`].
    Other,
}

impl HeaderName {
    /// Classifies a header name, case-insensitively, in long or compact form (RFC 3261 §7.3.3).
    pub fn classify(name: &[u8]) -> HeaderName {
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if eq("via") || eq("v") {
            HeaderName::Via
        } else if eq("from") || eq("f") {
            HeaderName::From
        } else if eq("to") || eq("t") {
            HeaderName::To
        } else if eq("call-id") || eq("i") {
            HeaderName::CallId
        } else if eq("cseq") {
            HeaderName::CSeq
        } else if eq("max-forwards") {
            HeaderName::MaxForwards
        } else if eq("content-length") || eq("l") {
            HeaderName::ContentLength
        } else if eq("content-type") || eq("c") {
            HeaderName::ContentType
        } else if eq("contact") || eq("m") {
            HeaderName::Contact
        } else if eq("route") {
            HeaderName::Route
        } else if eq("record-route") {
            HeaderName::RecordRoute
        } else if eq("proxy-require") {
            HeaderName::ProxyRequire
        } else if eq("require") {
            HeaderName::Require
        } else {
            HeaderName::Other
        }
    }

    /// Headers that may appear once only (RFC 3261 section 7.3.1, RFC 4475 3.3.8).
    fn single_valued(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
        )
    }
}

/// One header line as it stands in the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// The classified name.
    pub name: HeaderName,
    /// The name as written (compact or long form, any case).
    pub raw_name: &'a [u8],
    /// The value, trimmed of surrounding whitespace; folded lines keep their
    /// CRLF and indentation, which every grammar function treats as LWS.
    pub value: &'a [u8],
}

/// The first line of a message (RFC 3261 §7.1, §7.2), slices borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A Request-Line: `Method SP Request-URI SP SIP/2.0`, single spaces.
    Request {
        /// The request method.
        method: Method<'a>,
        /// The Request-URI as written: a sip/sips URI without a `?headers` part.
        uri: &'a [u8],
    },
    /// A Status-Line: `SIP/2.0 SP Status-Code SP Reason-Phrase`.
    Response {
        /// The status code, three digits in 100..=699.
        code: u16,
        /// The Reason-Phrase as written (may be empty).
        reason: &'a [u8],
    },
}

/// A parsed CSeq header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number, up to 2^32-1 (RFC 3261 §8.1.1.5 asks senders for less than 2^31).
    pub seq: u32,
    /// The method the CSeq names; for a request it equals the Request-Line method.
    pub method: Method<'a>,
}

/// A framed, validated SIP message borrowing the datagram.
#[derive(Debug, Clone)]
pub struct SipMessage<'a> {
    /// The whole datagram.
    pub raw: &'a [u8],
    /// The Request-Line or Status-Line.
    pub start: StartLine<'a>,
    /// Every header line in order of appearance (at most 256).
    pub headers: Vec<Header<'a>>,
    /// The body: exactly Content-Length bytes when that header is present, else the rest of the
    /// datagram (RFC 3261 §18.3).
    pub body: &'a [u8],
    /// The Call-ID value (non-empty, without whitespace).
    pub call_id: &'a [u8],
    /// The CSeq header.
    pub cseq: CSeq<'a>,
    /// The From header, as a name-addr (see [`NameAddr::tag`]).
    pub from: NameAddr<'a>,
    /// The To header, as a name-addr; a request outside a dialog has no `tag` there (RFC 3261
    /// §8.1.1.2).
    pub to: NameAddr<'a>,
    /// The top Via value.
    pub via: Via<'a>,
    /// Max-Forwards when present.
    pub max_forwards: Option<u32>,
}

const MAX_HEADERS: usize = 256;

impl<'a> SipMessage<'a> {
    /// Frames and validates one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<SipMessage<'a>, ParseError> {
        let (start_line, mut pos) = next_line(buf, 0).ok_or(ParseError::bad("No start line"))?;
        let start = parse_start_line(start_line)?;

        let mut headers: Vec<Header<'a>> = Vec::with_capacity(24);
        let mut seen_single: u32 = 0;
        let mut terminated = false;
        while pos < buf.len() {
            let (line, next) = next_line(buf, pos).ok_or(ParseError::bad("Truncated header"))?;
            if line.is_empty() {
                pos = next;
                terminated = true;
                break;
            }
            // Gather folded continuation lines (RFC 3261 7.3.1).
            let mut end_of_value = pos + line.len();
            let mut cursor = next;
            while let Some(&b) = buf.get(cursor) {
                if b != b' ' && b != b'\t' {
                    break;
                }
                let (cont, after) =
                    next_line(buf, cursor).ok_or(ParseError::bad("Truncated header"))?;
                end_of_value = cursor + cont.len();
                cursor = after;
            }
            let whole = buf
                .get(pos..end_of_value)
                .ok_or(ParseError::bad("Truncated header"))?;
            if forbidden_control(whole) {
                return Err(ParseError::bad("Control character in header"));
            }
            let colon = whole
                .iter()
                .position(|&b| b == b':')
                .ok_or(ParseError::bad("Header without colon"))?;
            let (raw_name, rest) = whole.split_at(colon);
            let raw_name = grammar::trim_lws(raw_name);
            if raw_name.is_empty() || !raw_name.iter().all(|&b| grammar::is_token(b)) {
                return Err(ParseError::bad("Malformed header name"));
            }
            let value = grammar::trim_lws(rest.get(1..).unwrap_or_default());
            let name = HeaderName::classify(raw_name);
            if name.single_valued() {
                let bit = 1u32 << (name as u32);
                if seen_single & bit != 0 {
                    return Err(ParseError::bad("Duplicate single-valued header"));
                }
                seen_single |= bit;
            }
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::bad("Too many headers"));
            }
            headers.push(Header {
                name,
                raw_name,
                value,
            });
            pos = cursor;
        }
        if !terminated {
            return Err(ParseError::bad("Header section not terminated"));
        }

        let rest = buf.get(pos..).unwrap_or_default();
        let body = match find(&headers, HeaderName::ContentLength) {
            Some(h) => {
                let len = grammar::parse_u32(h.value)
                    .ok_or(ParseError::bad("Malformed Content-Length"))?
                    as usize;
                // Over UDP, bytes past Content-Length are discarded (RFC 3261 18.3).
                rest.get(..len)
                    .ok_or(ParseError::bad("Content-Length larger than datagram"))?
            }
            None => rest,
        };

        let call_id = find(&headers, HeaderName::CallId)
            .map(|h| h.value)
            .filter(|v| !v.is_empty() && !v.iter().any(|b| b.is_ascii_whitespace()))
            .ok_or(ParseError::bad("Missing or malformed Call-ID"))?;
        let cseq = parse_cseq(
            find(&headers, HeaderName::CSeq)
                .ok_or(ParseError::bad("Missing CSeq"))?
                .value,
        )?;
        let from = NameAddr::parse(
            find(&headers, HeaderName::From)
                .ok_or(ParseError::bad("Missing From"))?
                .value,
        )
        .filter(|f| !f.uri.iter().any(|&b| unescaped_in_uri(b)))
        .ok_or(ParseError::bad("Malformed From"))?;
        let to = NameAddr::parse(
            find(&headers, HeaderName::To)
                .ok_or(ParseError::bad("Missing To"))?
                .value,
        )
        .filter(|t| !t.uri.iter().any(|&b| unescaped_in_uri(b)))
        .ok_or(ParseError::bad("Malformed To"))?;

        // Every Via value must parse; the top one is kept.
        let mut top_via = None;
        for h in headers.iter().filter(|h| h.name == HeaderName::Via) {
            for value in grammar::split_list(h.value) {
                let via = Via::parse(value).ok_or(ParseError::bad("Malformed Via"))?;
                top_via.get_or_insert(via);
            }
        }
        let via = top_via.ok_or(ParseError::bad("Missing Via"))?;

        for h in headers.iter().filter(|h| h.name == HeaderName::Contact) {
            if h.value != b"*" {
                for value in grammar::split_list(h.value) {
                    NameAddr::parse(value).ok_or(ParseError::bad("Malformed Contact"))?;
                }
            }
        }
        for h in headers
            .iter()
            .filter(|h| matches!(h.name, HeaderName::Route | HeaderName::RecordRoute))
        {
            for value in grammar::split_list(h.value) {
                let na = NameAddr::parse(value).ok_or(ParseError::bad("Malformed Route"))?;
                if !na.bracketed {
                    return Err(ParseError::bad("Malformed Route"));
                }
            }
        }

        let max_forwards = match find(&headers, HeaderName::MaxForwards) {
            Some(h) => Some(
                grammar::parse_u32_saturating(h.value)
                    .ok_or(ParseError::bad("Malformed Max-Forwards"))?,
            ),
            None => None,
        };

        if let StartLine::Request { method, uri } = start {
            if method != cseq.method {
                return Err(if method.is_known() {
                    ParseError::bad("CSeq method does not match")
                } else {
                    ParseError {
                        code: 501,
                        reason: "Not Implemented",
                    }
                });
            }
            check_request_uri(uri)?;
        }

        Ok(SipMessage {
            raw: buf,
            start,
            headers,
            body,
            call_id,
            cseq,
            from,
            to,
            via,
            max_forwards,
        })
    }

    /// Whether the start line is a Request-Line.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request's method; for a response the CSeq method, i.e. the method of the request it
    /// answers.
    pub fn method(&self) -> Method<'a> {
        match self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => self.cseq.method,
        }
    }

    /// The first header of that name.
    pub fn header(&self, name: HeaderName) -> Option<&Header<'a>> {
        find(&self.headers, name)
    }

    /// All values of a list-valued header (several lines and comma lists).
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(|h| grammar::split_list(h.value))
    }

    /// The first header with this (case-insensitive) name, for `Other` headers.
    pub fn header_named(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.raw_name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value)
    }
}

fn find<'h, 'a>(headers: &'h [Header<'a>], name: HeaderName) -> Option<&'h Header<'a>> {
    headers.iter().find(|h| h.name == name)
}

/// The line starting at `pos` without its line end, and where the next begins.
/// Accepts CRLF and, leniently, a bare LF.
fn next_line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let line = rest.get(..lf)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, pos + lf + 1))
}

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    if line.starts_with(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = line.splitn(3, |&b| b == b' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        let reason = parts
            .next()
            .ok_or(ParseError::bad("Malformed status line"))?;
        if !version.eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::bad("Unsupported version in response"));
        }
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::bad("Malformed status code"));
        }
        let code = grammar::parse_u32(code).unwrap_or(0) as u16;
        if !(100..=699).contains(&code) {
            return Err(ParseError::bad("Status code out of range"));
        }
        if reason
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(ParseError::bad("Control character in reason phrase"));
        }
        return Ok(StartLine::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces.
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let uri = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    if parts.next().is_some() || method.is_empty() || uri.is_empty() {
        return Err(ParseError::bad("Malformed request line"));
    }
    if !method.iter().all(|&b| grammar::is_token(b)) {
        return Err(ParseError::bad("Malformed method"));
    }
    if uri.iter().any(|&b| unescaped_in_uri(b)) {
        return Err(ParseError::bad("Malformed Request-URI"));
    }
    if uri.len() > MAX_REQUEST_URI {
        return Err(ParseError {
            code: 414,
            reason: "Request-URI Too Long",
        });
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        let looks_like_version = version.len() > 4
            && version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
            && version.get(4..).is_some_and(|v| {
                v.iter().all(|b| b.is_ascii_digit() || *b == b'.') && v.contains(&b'.')
            });
        return Err(if looks_like_version {
            ParseError {
                code: 505,
                reason: "Version Not Supported",
            }
        } else {
            ParseError::bad("Malformed SIP version")
        });
    }
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        uri,
    })
}

fn parse_cseq(value: &[u8]) -> Result<CSeq<'_>, ParseError> {
    let mut words = grammar::split_lws(value);
    let num = words.next().ok_or(ParseError::bad("Malformed CSeq"))?;
    let method = words.next().ok_or(ParseError::bad("Malformed CSeq"))?;
    if words.next().is_some() || !method.iter().all(|&b| grammar::is_token(b)) {
        return Err(ParseError::bad("Malformed CSeq"));
    }
    let seq = grammar::parse_u32(num).ok_or(ParseError::bad("CSeq number out of range"))?;
    Ok(CSeq {
        seq,
        method: Method::from_bytes(method),
    })
}

/// The Request-URI checks of RFC 3261 section 16.3 and RFC 4475 3.1.2.7,
/// 3.1.2.11, 3.3.2 and 3.3.3: a well formed scheme, and for SIP URIs no
/// `?headers` part; a scheme other than sip/sips earns 416.
fn check_request_uri(uri: &[u8]) -> Result<(), ParseError> {
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::bad("Malformed Request-URI"))?;
    let scheme = uri.get(..colon).unwrap_or_default();
    let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_scheme {
        return Err(ParseError::bad("Malformed Request-URI"));
    }
    if !scheme.eq_ignore_ascii_case(b"sip") && !scheme.eq_ignore_ascii_case(b"sips") {
        return Err(ParseError {
            code: 416,
            reason: "Unsupported URI Scheme",
        });
    }
    let parsed = grammar::SipUri::parse(uri).ok_or(ParseError::bad("Malformed Request-URI"))?;
    if parsed.has_headers {
        return Err(ParseError::bad("Request-URI with headers"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:+15551234@10.0.0.100:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK-1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@10.0.1.10:5060>;tag=a1\r\n\
To: <sip:+15551234@10.0.0.100>\r\n\
Call-ID: c1@10.0.1.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@10.0.1.10:5060>\r\n\
Content-Length: 4\r\n\r\nv=0\r\nextra";

    #[test]
    fn parses_invite_and_frames_body_by_content_length() {
        let m = SipMessage::parse(INVITE).unwrap();
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Invite,
                ..
            }
        ));
        assert_eq!(m.body, b"v=0\r");
        assert_eq!(
            m.cseq,
            CSeq {
                seq: 1,
                method: Method::Invite
            }
        );
        assert_eq!(m.from.tag(), Some(&b"a1"[..]));
        assert_eq!(m.to.tag(), None);
        assert_eq!(m.via.branch, Some(&b"z9hG4bK-1"[..]));
        assert_eq!(m.max_forwards, Some(70));
    }

    #[test]
    fn rejects_content_length_past_datagram() {
        let bad =
            String::from_utf8_lossy(INVITE).replace("Content-Length: 4", "Content-Length: 400");
        assert_eq!(SipMessage::parse(bad.as_bytes()).unwrap_err().code, 400);
    }

    #[test]
    fn response_with_big_code_is_an_error() {
        let r = b"SIP/2.0 4294967301 Big\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert!(SipMessage::parse(r).is_err());
    }

    /// PROTOS c07-sip style anomalies the scanner must refuse (a next hop
    /// could read a bare CR as a line break) and the ones it must take.
    #[test]
    fn control_characters_and_unescaped_uri_bytes_are_400() {
        let with = |from: &str, to: &str| {
            String::from_utf8_lossy(INVITE)
                .replace(from, to)
                .into_bytes()
        };
        for (from, to) in [
            ("\"Alice\"", "\"Al\rice\""),
            ("\"Alice\"", "\"Al\x00ice\""),
            ("\"Alice\"", "\"Al\x1bice\""),
            ("c1@10.0.1.10", "c1@10.0\r.1.10"),
            ("CSeq: 1 INVITE", "CSeq: 1\x7f INVITE"),
            (
                "sip:+15551234@10.0.0.100:5060 SIP",
                "sip:+1<555>@10.0.0.100:5060 SIP",
            ),
            (
                "sip:+15551234@10.0.0.100:5060 SIP",
                "sip:+1\u{e9}@10.0.0.100:5060 SIP",
            ),
            (
                "sip:+15551234@10.0.0.100:5060 SIP",
                "sip:+1\"5@10.0.0.100:5060 SIP",
            ),
            (
                "<sip:alice@10.0.1.10:5060>;tag=a1",
                "<sip:al\u{e9}ice@10.0.1.10:5060>;tag=a1",
            ),
            (
                "To: <sip:+15551234@10.0.0.100>",
                "To: <sip:+1 5@10.0.0.100>",
            ),
            ("CSeq: 1 INVITE", "CSeq: 1\n INVITE"),
        ] {
            let m = with(from, to);
            let e = SipMessage::parse(&m).unwrap_err();
            assert_eq!(e.code, 400, "{to:?}: {e}");
        }
        // A quoted-pair may escape a control character (RFC 4475 intmeth);
        // a fold is fine; UTF-8 in a display name is fine.
        for (from, to) in [
            ("\"Alice\"", "\"Al\\\x00ice \\\x07\""),
            (
                "To: <sip:+15551234@10.0.0.100>",
                "To:\r\n <sip:+15551234@10.0.0.100>",
            ),
            ("\"Alice\"", "\"Al\u{e9}ice\""),
        ] {
            assert!(SipMessage::parse(&with(from, to)).is_ok(), "{to:?}");
        }
        let long = format!("sip:+1{}@10.0.0.100:5060 SIP", "5".repeat(MAX_REQUEST_URI));
        let e = SipMessage::parse(&with("sip:+15551234@10.0.0.100:5060 SIP", &long)).unwrap_err();
        assert_eq!(e.code, 414);
        let r = b"SIP/2.0 200 O\x00K\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert!(SipMessage::parse(r).is_err());
    }

    #[test]
    fn version_seven_is_505() {
        let bad = String::from_utf8_lossy(INVITE).replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert_eq!(SipMessage::parse(bad.as_bytes()).unwrap_err().code, 505);
    }
}
