//! SDP offer/answer rewriting for the media relay (RFC 4566, RFC 3264).
//!
//! [`SdpRepr::parse`] reads what the relay needs from a session description:
//! every media line with its port, connection address (media-level `c=`
//! over session-level), `a=rtcp` port and direction. [`rewrite`] writes the
//! same description back with the SBC's address and the ports it allocated,
//! line by line, leaving everything else (codecs, `a=rtpmap`, telephone-event,
//! unknown attributes) untouched.

use std::io::Write;
use std::net::Ipv4Addr;

use super::sdes::Crypto;

/// Why a body is not an SDP the relay can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpError {
    /// The body is not UTF-8.
    NotUtf8,
    /// The first line is not `v=`.
    NoVersion,
    /// An `m=` line without a media type or a numeric port; from [`rewrite`] also a media line
    /// beyond the ports given.
    BadMedia,
    /// A `c=` line that is not `IN IP4 <IPv4 address>[/ttl]` (IPv6 included).
    BadConnection,
    /// A media line with neither a media-level nor a session-level `c=` line.
    NoConnection,
    /// An `RTP/SAVP` line the relay cannot key: no `a=crypto` with a suite
    /// we take, DTLS-SRTP (`UDP/TLS/RTP/SAVP`), or SRTP in a build or
    /// backend without it.
    Srtp,
    /// The gateway's `media_encryption` is `require` and its SDP keys no
    /// media line (or not with a key we offered).
    SrtpRequired,
}

impl SdpError {
    /// What was wrong, for a `Warning` header.
    pub fn text(self) -> &'static str {
        match self {
            SdpError::NotUtf8 => "SDP is not UTF-8",
            SdpError::NoVersion => "SDP does not start with v=",
            SdpError::BadMedia => "SDP m= line without a media type or a numeric port",
            SdpError::BadConnection => "SDP c= line is not IN IP4 with an IPv4 address",
            SdpError::NoConnection => "SDP media line without a c= line",
            SdpError::Srtp => "SDP asks for SRTP the SBC cannot key (SDES with AES_CM_128_HMAC_SHA1_80 or AEAD_AES_128_GCM only)",
            SdpError::SrtpRequired => "SDP without SRTP keys toward a gateway that requires them",
        }
    }
}

/// The stream direction attribute (RFC 3264 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// `a=sendrecv`, and the default when no direction attribute is given.
    #[default]
    SendRecv,
    /// `a=sendonly`: the peer sends and will not receive.
    SendOnly,
    /// `a=recvonly`: the peer receives and will not send.
    RecvOnly,
    /// `a=inactive`: the peer neither sends nor receives.
    Inactive,
}

/// One `m=` line and what belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRepr {
    /// `audio`, `video`, ...
    pub kind: String,
    /// 0: the stream is disabled (RFC 3264 section 6).
    pub port: u16,
    /// Where the peer wants RTP: the media-level `c=`, else the session-level one.
    /// `0.0.0.0` is the RFC 2543 hold convention and is kept as such.
    pub addr: Ipv4Addr,
    /// `a=rtcp:` port, when given (RFC 3605); otherwise RTP port + 1.
    pub rtcp_port: Option<u16>,
    /// The media-level direction attribute, else the session-level one, else `SendRecv`.
    pub direction: Direction,
    /// The payload type the line maps to `telephone-event/8000` (RFC 4733 DTMF).
    pub telephone_event: Option<u8>,
    /// The transport protocol of the `m=` line: `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    /// Its `a=crypto` lines (SDES, RFC 4568) with a suite we take, in
    /// order; lines we cannot take are skipped.
    pub crypto: Vec<Crypto>,
}

impl MediaRepr {
    /// The peer's RTCP port: `a=rtcp:` when given, else RTP port + 1 (wrapping).
    pub fn rtcp(&self) -> u16 {
        self.rtcp_port.unwrap_or(self.port.wrapping_add(1))
    }

    /// On hold: `c=0.0.0.0`, or the peer will not receive.
    pub fn on_hold(&self) -> bool {
        self.addr.is_unspecified()
            || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }
}

/// The parts of a session description the relay works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpRepr {
    /// The `m=` lines in order of appearance.
    pub media: Vec<MediaRepr>,
}

fn lines(body: &str) -> impl Iterator<Item = &str> {
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// `c=IN IP4 <addr>[/ttl]`.
fn connection(value: &str) -> Result<Ipv4Addr, SdpError> {
    let mut parts = value.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("IN"), Some("IP4"), Some(addr)) => addr
            .split('/')
            .next()
            .unwrap_or(addr)
            .parse()
            .map_err(|_| SdpError::BadConnection),
        _ => Err(SdpError::BadConnection),
    }
}

impl SdpRepr {
    /// Reads every media line of an SDP body: port, connection address, `a=rtcp` port and
    /// direction. Errors as [`SdpError`] says; other lines and attributes are skipped.
    pub fn parse(body: &[u8]) -> Result<SdpRepr, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut it = lines(text).peekable();
        if it.peek().is_none_or(|l| !l.starts_with("v=")) {
            return Err(SdpError::NoVersion);
        }
        let mut session_addr = None;
        let mut session_dir = Direction::SendRecv;
        let mut media: Vec<(MediaRepr, Option<Ipv4Addr>)> = Vec::new();
        for line in it {
            let (key, value) = line.split_at(line.find('=').unwrap_or(0).min(line.len()));
            let value = value.strip_prefix('=').unwrap_or(value);
            match key {
                "m" => {
                    let mut f = value.split_whitespace();
                    let kind = f.next().ok_or(SdpError::BadMedia)?.to_string();
                    let port = f
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok())
                        .ok_or(SdpError::BadMedia)?;
                    let m = MediaRepr {
                        kind,
                        port,
                        addr: Ipv4Addr::UNSPECIFIED,
                        rtcp_port: None,
                        direction: session_dir,
                        telephone_event: None,
                        proto: f.next().unwrap_or_default().to_string(),
                        crypto: Vec::new(),
                    };
                    media.push((m, None));
                }
                "c" => {
                    let addr = connection(value)?;
                    match media.last_mut() {
                        Some((_, c)) => *c = Some(addr),
                        None => session_addr = Some(addr),
                    }
                }
                "a" => {
                    let dir = match value {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    match (dir, media.last_mut()) {
                        (Some(d), Some((m, _))) => m.direction = d,
                        (Some(d), None) => session_dir = d,
                        (None, Some((m, _))) => {
                            if let Some(rest) = value.strip_prefix("rtcp:") {
                                m.rtcp_port =
                                    rest.split_whitespace().next().and_then(|p| p.parse().ok());
                            } else if let Some(pt) = telephone_event_of(value) {
                                m.telephone_event = Some(pt);
                            } else if let Some(c) = value.strip_prefix("crypto:") {
                                m.crypto.extend(Crypto::parse(c.as_bytes()).ok());
                            }
                        }
                        (None, None) => {}
                    }
                }
                _ => {}
            }
        }
        let media = media
            .into_iter()
            .map(|(mut m, c)| {
                m.addr = c.or(session_addr).ok_or(SdpError::NoConnection)?;
                Ok(m)
            })
            .collect::<Result<Vec<_>, SdpError>>()?;
        Ok(SdpRepr { media })
    }
}

/// Attributes the anchored SDP must not carry: ICE (RFC 8839: the relay
/// answers no STUN and its address is the only candidate), and RTP/RTCP
/// multiplexing (RFC 5761, RFC 8858: the relay keeps RTCP on the next port,
/// so removing the offer's `a=rtcp-mux` from both offer and answer keeps
/// each side unmultiplexed). RTPEngine's `ICE=remove` and `rtcp-mux-demux`.
const REMOVED_ATTRIBUTES: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
    "rtcp-mux",
    "rtcp-mux-only",
];

/// Whether the `a=` line `line` is one of [`REMOVED_ATTRIBUTES`].
fn removed(line: &str) -> bool {
    line.strip_prefix("a=").is_some_and(|attr| {
        let name = attr.split([':', ' ']).next().unwrap_or_default();
        REMOVED_ATTRIBUTES
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
    })
}

/// Writes `body` again with `addr` in every `c=` and `o=` line and the
/// `ports[i]` (RTP; RTCP is the next one) on the i-th media line and its
/// `a=rtcp`. A disabled stream (port 0) stays disabled; a `c=0.0.0.0` hold
/// stays `0.0.0.0`. Every address-bearing line is rewritten whole (address
/// and port) or removed: ICE and RTP/RTCP multiplexing attributes are
/// removed (see [`REMOVED_ATTRIBUTES`]).
pub fn rewrite(body: &[u8], addr: Ipv4Addr, ports: &[u16]) -> Result<Vec<u8>, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut out = Vec::with_capacity(body.len() + 32);
    let mut index: Option<usize> = None;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\r', '\n']);
        let ending = raw.get(line.len()..).unwrap_or("");
        if removed(line) {
            continue;
        }
        if let Some(v) = line.strip_prefix("c=") {
            let ip = connection(v)?;
            if ip.is_unspecified() {
                out.extend_from_slice(line.as_bytes());
            } else {
                let _ = write!(out, "c=IN IP4 {addr}");
            }
        } else if let Some(v) = line.strip_prefix("o=") {
            // o=<user> <sess-id> <sess-version> IN IP4 <addr>
            let fields: Vec<&str> = v.split_whitespace().collect();
            match fields.as_slice() {
                [user, id, version, "IN", "IP4", _] => {
                    let _ = write!(out, "o={user} {id} {version} IN IP4 {addr}");
                }
                _ => out.extend_from_slice(line.as_bytes()),
            }
        } else if let Some(v) = line.strip_prefix("m=") {
            let i = index.map_or(0, |i| i + 1);
            index = Some(i);
            let mut fields = v.splitn(3, ' ');
            let kind = fields.next().unwrap_or_default();
            let port_field = fields.next().ok_or(SdpError::BadMedia)?;
            let rest = fields.next().unwrap_or_default();
            let old: u16 = port_field
                .split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or(SdpError::BadMedia)?;
            let new = if old == 0 {
                0
            } else {
                ports.get(i).copied().ok_or(SdpError::BadMedia)?
            };
            let _ = write!(out, "m={kind} {new} {rest}");
        } else if let Some(v) = line.strip_prefix("a=rtcp:") {
            let port = index
                .and_then(|i| ports.get(i))
                .map_or(0, |p| p.wrapping_add(1));
            let has_addr = v.split_whitespace().nth(1).is_some();
            if has_addr {
                let _ = write!(out, "a=rtcp:{port} IN IP4 {addr}");
            } else {
                let _ = write!(out, "a=rtcp:{port}");
            }
        } else {
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(ending.as_bytes());
    }
    Ok(out)
}

impl Direction {
    /// The attribute's name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the party that wrote it receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction an answer may have to an offer of `self` when the
    /// answerer wanted `answered` (RFC 3264 section 6.1): to sendonly,
    /// recvonly or inactive; to recvonly, sendonly or inactive; to
    /// inactive, inactive; to sendrecv, anything.
    pub fn answer_to(self, answered: Direction) -> Direction {
        let sends = !matches!(self, Direction::SendOnly | Direction::Inactive)
            && matches!(answered, Direction::SendRecv | Direction::SendOnly);
        let receives =
            !matches!(self, Direction::RecvOnly | Direction::Inactive) && answered.receives();
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

/// The payload type of an `a=` value `rtpmap:<pt> telephone-event/8000`.
fn telephone_event_of(attr: &str) -> Option<u8> {
    let (pt, codec) = attr.trim_end().strip_prefix("rtpmap:")?.split_once(' ')?;
    codec
        .to_ascii_lowercase()
        .starts_with("telephone-event/8000")
        .then(|| pt.trim().parse().ok())
        .flatten()
}

/// The payload type `body` maps to `telephone-event/8000` (RFC 4733) in its
/// first media line that has one; `None` when it has none.
pub fn telephone_event_pt(body: &[u8]) -> Option<u8> {
    SdpRepr::parse(body)
        .ok()?
        .media
        .iter()
        .find_map(|m| m.telephone_event)
}

/// `body` with the direction of the i-th media line set to `dirs[i]` where
/// that is `Some`: its own direction attribute replaced (or one added at the
/// end of its section); other lines unchanged.
pub fn set_directions(body: &[u8], dirs: &[Option<Direction>]) -> Vec<u8> {
    let is_dir = |l: &[u8]| {
        matches!(
            l,
            b"a=sendrecv" | b"a=sendonly" | b"a=recvonly" | b"a=inactive"
        )
    };
    let set = |i: Option<usize>| i.and_then(|i| dirs.get(i)).copied().flatten();
    edit_sections(
        body,
        |index, line, raw, out| {
            if !(is_dir(line) && set(index).is_some()) {
                out.extend_from_slice(raw);
            }
        },
        |index, eol, out| {
            if let Some(d) = set(Some(index)) {
                out.extend_from_slice(b"a=");
                out.extend_from_slice(d.name().as_bytes());
                out.extend_from_slice(eol);
            }
        },
    )
}

/// Writes `body` again line by line: `line(index, line, raw, out)` writes
/// each line but the `m=` lines (`line` without its ending, `raw` with it)
/// given the media section it is in (`None`: the session part); `m=` lines
/// go through `line` too, with the index of the section they open.
/// `end(index, eol, out)` runs at the end of each media section (before the
/// next `m=` line, and at the end of the body) with the body's line ending,
/// to add lines there. How the SDP editors that work per media line walk it.
pub(crate) fn edit_sections(
    body: &[u8],
    mut line: impl FnMut(Option<usize>, &[u8], &[u8], &mut Vec<u8>),
    mut end: impl FnMut(usize, &[u8], &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut index: Option<usize> = None;
    let mut eol: &[u8] = b"\r\n";
    for raw in body.split_inclusive(|&b| b == b'\n') {
        let text = raw
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(raw);
        if raw.ends_with(b"\r\n") {
            eol = b"\r\n";
        } else if raw.ends_with(b"\n") {
            eol = b"\n";
        }
        if text.starts_with(b"m=") {
            if let Some(i) = index {
                end(i, eol, &mut out);
            }
            index = Some(index.map_or(0, |i| i + 1));
        }
        line(index, text, raw, &mut out);
    }
    if let Some(i) = index {
        end(i, eol, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_offered_direction_and_lines_are_set() {
        use Direction::*;
        assert_eq!(SendOnly.answer_to(SendRecv), RecvOnly);
        assert_eq!(SendOnly.answer_to(SendOnly), Inactive);
        assert_eq!(RecvOnly.answer_to(SendRecv), SendOnly);
        assert_eq!(Inactive.answer_to(SendRecv), Inactive);
        assert_eq!(SendRecv.answer_to(RecvOnly), RecvOnly);
        let body = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=sendrecv\r\na=ptime:20\r\nm=video 2 RTP/AVP 96\r\n";
        let out = set_directions(body, &[Some(RecvOnly), Some(Inactive)]);
        assert_eq!(
            out,
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=ptime:20\r\na=recvonly\r\nm=video 2 RTP/AVP 96\r\na=inactive\r\n".to_vec()
        );
        assert_eq!(set_directions(body, &[None, None]), body.to_vec());
    }

    const OFFER: &str = "v=0\r\n\
o=- 3848276298 3848276298 IN IP4 10.0.1.10\r\n\
s=-\r\n\
c=IN IP4 10.0.1.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:40001 IN IP4 10.0.1.10\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 96\r\n\
m=video 40002 RTP/AVP 97\r\n\
c=IN IP4 10.0.1.11\r\n\
a=sendonly\r\n";

    #[test]
    fn parse_media_lines() {
        let sdp = SdpRepr::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.media.len(), 3);
        let a = &sdp.media[0];
        assert_eq!((a.kind.as_str(), a.port, a.rtcp()), ("audio", 40000, 40001));
        assert_eq!(a.addr, Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(sdp.media[1].port, 0);
        let v = &sdp.media[2];
        assert_eq!(v.addr, Ipv4Addr::new(10, 0, 1, 11));
        assert_eq!(v.direction, Direction::SendOnly);
        assert!(v.on_hold());
    }

    #[test]
    fn rewrite_then_parse_round_trips() {
        let ours = Ipv4Addr::new(203, 0, 113, 50);
        let out = rewrite(OFFER.as_bytes(), ours, &[20000, 0, 20002]).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("10.0.1."), "{text}");
        assert!(text.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"));
        assert!(text.contains("a=rtcp:20001 IN IP4 203.0.113.50\r\n"));
        assert!(text.contains("m=video 0 RTP/AVP 96\r\n"));
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        let sdp = SdpRepr::parse(&out).unwrap();
        assert_eq!(sdp.media[2].port, 20002);
        assert_eq!(sdp.media[2].addr, ours);
        assert_eq!(sdp.media[2].direction, Direction::SendOnly);
    }

    #[test]
    fn ice_and_rtcp_mux_are_removed_and_nothing_half_rewritten() {
        let offer = OFFER.replace(
            "a=sendrecv\r\n",
            "a=sendrecv\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=ice-options:trickle\r\n\
a=candidate:1 1 UDP 2130706431 10.0.1.10 40000 typ host\r\n\
a=candidate:2 1 UDP 1694498815 198.51.100.7 40000 typ srflx raddr 10.0.1.10 rport 40000\r\n\
a=end-of-candidates\r\n\
a=rtcp-mux\r\n\
a=ptime:20\r\n",
        );
        let out = String::from_utf8(
            rewrite(
                offer.as_bytes(),
                Ipv4Addr::new(203, 0, 113, 50),
                &[20000, 0, 20002],
            )
            .unwrap(),
        )
        .unwrap();
        for gone in ["candidate", "ice-", "rtcp-mux", "10.0.1.10", "198.51.100.7"] {
            assert!(!out.contains(gone), "{gone} left in:\n{out}");
        }
        assert!(
            out.contains("a=ptime:20\r\na=sendrecv")
                || out.contains("a=sendrecv\r\na=ptime:20\r\n")
        );
        assert!(out.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"));
        assert!(out.contains("a=rtcp:20001 IN IP4 203.0.113.50\r\n"));
        let sdp = SdpRepr::parse(out.as_bytes()).unwrap();
        assert_eq!(sdp.media.len(), 3);
    }

    #[test]
    fn hold_address_is_kept() {
        let hold = OFFER.replace("c=IN IP4 10.0.1.10", "c=IN IP4 0.0.0.0");
        let out = String::from_utf8(
            rewrite(hold.as_bytes(), Ipv4Addr::new(1, 2, 3, 4), &[2, 0, 4]).unwrap(),
        )
        .unwrap();
        assert!(out.contains("c=IN IP4 0.0.0.0\r\n"));
        assert!(SdpRepr::parse(hold.as_bytes()).unwrap().media[0].on_hold());
    }

    #[test]
    fn broken_sdp_is_an_error() {
        assert_eq!(
            SdpRepr::parse(b"m=audio x RTP/AVP 0\r\n"),
            Err(SdpError::NoVersion)
        );
        assert_eq!(
            SdpRepr::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n"),
            Err(SdpError::BadMedia)
        );
        assert_eq!(
            SdpRepr::parse(b"v=0\r\nm=audio 4 RTP/AVP 0\r\n"),
            Err(SdpError::NoConnection)
        );
    }
}
