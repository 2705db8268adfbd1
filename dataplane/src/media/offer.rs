//! The SDP the SBC offers itself: toward a `livekit` gateway when the
//! carrier's INVITE carries no offer (a delayed offer, RFC 3261 section
//! 13.2.1; LiveKit answers only an INVITE with an offer in it).
//!
//! The offer lists a tenant's codecs ([`Codec`], in its order of preference,
//! RFC 3264 section 5.1), each with its RTP/AVP payload type: the static one
//! of RFC 3551 section 6 where there is one, else the dynamic number the
//! field commonly uses (101 for `telephone-event`, RFC 4733; 111 for Opus,
//! RFC 7587). Its address and port are placeholders that anchoring replaces
//! with the SBC's media address and the port pair taken for the call.

use std::fmt;

/// A codec the SBC can put in its own offer, named by its RTP encoding name
/// (the `a=rtpmap` name, matched without regard to case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, static payload type 0 (RFC 3551).
    Pcmu,
    /// GSM 06.10, static payload type 3 (RFC 3551).
    Gsm,
    /// G.711 A-law, static payload type 8 (RFC 3551).
    Pcma,
    /// G.722, static payload type 9, clock 8000 by RFC 3551's erratum.
    G722,
    /// G.729 (Annex B silence suppression left to the answer), static
    /// payload type 18 (RFC 3551).
    G729,
    /// Opus, dynamic payload type 111, `opus/48000/2` (RFC 7587).
    Opus,
    /// RFC 4733 DTMF events 0-16, dynamic payload type 101.
    TelephoneEvent,
}

/// The codecs offered when the tenant names none and the configuration
/// does not change them: PCMU, PCMA, G.722 and telephone-event.
pub const DEFAULT_CODECS: &[Codec] =
    &[Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::TelephoneEvent];

impl Codec {
    /// Every codec, for listing the names accepted.
    pub const ALL: [Codec; 7] = [
        Codec::Pcmu,
        Codec::Gsm,
        Codec::Pcma,
        Codec::G722,
        Codec::G729,
        Codec::Opus,
        Codec::TelephoneEvent,
    ];

    /// The RTP/AVP payload type offered for it.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Gsm => 3,
            Codec::Pcma => 8,
            Codec::G722 => 9,
            Codec::G729 => 18,
            Codec::Opus => 111,
            Codec::TelephoneEvent => 101,
        }
    }

    /// Its encoding name as configured and as written in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Gsm => "GSM",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::G729 => "G729",
            Codec::Opus => "opus",
            Codec::TelephoneEvent => "telephone-event",
        }
    }

    /// The `a=rtpmap` value after the payload type: name, clock rate and, for
    /// Opus, its channel count.
    fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Gsm => "GSM/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::G722 => "G722/8000",
            Codec::G729 => "G729/8000",
            Codec::Opus => "opus/48000/2",
            Codec::TelephoneEvent => "telephone-event/8000",
        }
    }

    /// The codec with this encoding name (any case; `G.722`-style dots are
    /// not names); `None` for one the SBC cannot offer.
    pub fn parse(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a codec list: encoding names separated by commas (`PCMA, PCMU,
/// telephone-event`), in order of preference.
///
/// # Errors
/// A message naming the first unknown name and the names accepted; an empty
/// list, a list of `telephone-event` alone (no audio to offer) or a name
/// given twice is refused too.
pub fn parse_codecs(list: &str) -> Result<Vec<Codec>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        let Some(c) = Codec::parse(name) else {
            let known: Vec<&str> = Codec::ALL.iter().map(|c| c.name()).collect();
            return Err(format!(
                "unknown codec {name:?} (known: {})",
                known.join(", ")
            ));
        };
        if out.contains(&c) {
            return Err(format!("codec {} named twice", c.name()));
        }
        out.push(c);
    }
    if !out.iter().any(|&c| c != Codec::TelephoneEvent) {
        return Err("no audio codec in the list".to_string());
    }
    Ok(out)
}

/// The names of `codecs` as [`parse_codecs`] reads them: `PCMU,PCMA`.
pub fn codecs_text(codecs: &[Codec]) -> String {
    let names: Vec<&str> = codecs.iter().map(|c| c.name()).collect();
    names.join(",")
}

/// The SDP offer for `codecs` (RFC 4566): one `m=audio` line listing them
/// in order, an `a=rtpmap` for each, `a=fmtp:101 0-16` with
/// telephone-event, `a=ptime:20`, `a=sendrecv`; the origin, connection
/// address (192.0.2.1, TEST-NET-1) and port (9) are placeholders that
/// anchoring replaces.
pub fn offer_sdp(codecs: &[Codec]) -> Vec<u8> {
    let mut m = String::from("m=audio 9 RTP/AVP");
    let mut attrs = String::new();
    for c in codecs {
        let pt = c.payload_type();
        m.push_str(&format!(" {pt}"));
        attrs.push_str(&format!("a=rtpmap:{pt} {}\r\n", c.rtpmap()));
        if *c == Codec::TelephoneEvent {
            attrs.push_str(&format!("a=fmtp:{pt} 0-16\r\n"));
        }
    }
    format!(
        "v=0\r\no=sbc 1 1 IN IP4 192.0.2.1\r\ns=sbc\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         {m}\r\n{attrs}a=ptime:20\r\na=sendrecv\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::{telephone_event_pt, SdpRepr};

    #[test]
    fn lists_are_read_in_order_and_bad_ones_named() {
        assert_eq!(
            parse_codecs("pcma, PCMU ,telephone-event"),
            Ok(vec![Codec::Pcma, Codec::Pcmu, Codec::TelephoneEvent])
        );
        assert_eq!(
            codecs_text(DEFAULT_CODECS),
            "PCMU,PCMA,G722,telephone-event"
        );
        assert_eq!(
            parse_codecs(&codecs_text(DEFAULT_CODECS)).unwrap(),
            DEFAULT_CODECS
        );
        let e = parse_codecs("PCMU,G.729").unwrap_err();
        assert!(e.contains("\"G.729\"") && e.contains("G729"), "{e}");
        assert!(parse_codecs("telephone-event").is_err());
        assert!(parse_codecs("").is_err());
        assert!(parse_codecs("PCMU,pcmu").unwrap_err().contains("twice"));
    }

    #[test]
    fn the_offer_lists_the_codecs_in_order_with_their_maps() {
        let sdp = offer_sdp(&[Codec::G722, Codec::Pcma, Codec::TelephoneEvent]);
        let text = String::from_utf8(sdp.clone()).unwrap();
        assert!(text.contains("m=audio 9 RTP/AVP 9 8 101\r\n"), "{text}");
        assert!(
            text.contains("a=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\n"),
            "{text}"
        );
        assert!(text.contains("a=fmtp:101 0-16\r\n"), "{text}");
        let repr = SdpRepr::parse(&sdp).unwrap();
        assert_eq!(repr.media.len(), 1);
        assert_eq!(telephone_event_pt(&sdp), Some(101));
        let opus = String::from_utf8(offer_sdp(&[Codec::Opus])).unwrap();
        assert!(opus.contains("a=rtpmap:111 opus/48000/2\r\n"), "{opus}");
        assert!(!opus.contains("fmtp"), "{opus}");
    }
}
