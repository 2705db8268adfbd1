//! SDP Security Descriptions for media streams (SDES, RFC 4568): the
//! `a=crypto` attribute that carries an SRTP crypto suite and its master
//! key and salt inside the SDP, which is why SDES is only used over TLS
//! (RFC 4568 section 8.3).
//!
//! ```text
//!  a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4
//!           tag suite                  key-params: inline:<base64(key || salt)>[|lifetime][|MKI:len]
//! ```

use base64::Engine as _;

/// The SRTP crypto suites the SBC offers and accepts, by their SDES names
/// (RFC 4568 section 6.2, RFC 7714 section 14.1), in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Suite {
    /// AEAD_AES_128_GCM (RFC 7714): AES-128 in GCM, 16-byte tag; 16-byte key, 12-byte salt.
    AeadAes128Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (RFC 3711, RFC 4568): AES-128 counter mode and an
    /// 80-bit HMAC-SHA1 tag; 16-byte key, 14-byte salt.
    AesCm128HmacSha1_80,
}

impl Suite {
    /// The most bytes any suite adds to a packet (SRTCP under
    /// AEAD_AES_128_GCM): the room a packet needs after it to be protected.
    pub const MAX_OVERHEAD: usize = 20;

    /// Every suite, the preferred one first.
    pub const ALL: [Suite; 2] = [Suite::AeadAes128Gcm, Suite::AesCm128HmacSha1_80];

    /// The SDES name.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        }
    }

    /// The suite an SDES name means (case-sensitive, as RFC 4568 writes
    /// them); `None` for one we do not take.
    pub fn parse(name: &[u8]) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name().as_bytes() == name)
    }

    /// Length in bytes of the master key and salt, together (the `inline:` value).
    pub const fn key_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 16 + 12,
            Suite::AesCm128HmacSha1_80 => 16 + 14,
        }
    }

    /// Bytes SRTP adds to an RTP packet (the authentication tag).
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 16,
            Suite::AesCm128HmacSha1_80 => 10,
        }
    }

    /// Bytes SRTCP adds to an RTCP packet (E flag and index, then the tag).
    pub const fn rtcp_overhead(self) -> usize {
        4 + self.rtp_overhead()
    }
}

/// One `a=crypto` line's value: its tag, suite and master key and salt.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Crypto {
    /// The tag that the answer repeats for the line it accepts (1..=999999999).
    pub tag: u32,
    /// The suite.
    pub suite: Suite,
    /// Master key then master salt, [`Suite::key_len`] bytes.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Crypto {
    /// The key is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Why an `a=crypto` value is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not `<tag> <suite> inline:<key>...`.
    #[error("a=crypto is not `tag suite inline:key`")]
    Syntax,
    /// A suite we do not take (it is skipped; another line may do).
    #[error("unknown crypto suite")]
    UnknownSuite,
    /// The key is not base64 or not the suite's length.
    #[error("a=crypto key is not base64 of the suite's length")]
    BadKey,
    /// An MKI, or session parameters (UNENCRYPTED_SRTP, KDR, ...), which we do not take.
    #[error("a=crypto with MKI or session parameters is not supported")]
    Unsupported,
}

impl Crypto {
    /// Parses the value of an `a=crypto:` attribute (what follows the colon).
    /// A lifetime (`|2^31`) is accepted and ignored; an MKI or session
    /// parameters are [`CryptoError::Unsupported`].
    pub fn parse(value: &[u8]) -> Result<Crypto, CryptoError> {
        let text = std::str::from_utf8(value).map_err(|_| CryptoError::Syntax)?;
        let mut parts = text.split_ascii_whitespace();
        let tag: u32 = parts
            .next()
            .and_then(|t| t.parse().ok())
            .filter(|t| (1..=999_999_999).contains(t))
            .ok_or(CryptoError::Syntax)?;
        let suite = parts.next().ok_or(CryptoError::Syntax)?;
        let key_params = parts.next().ok_or(CryptoError::Syntax)?;
        if parts.next().is_some() {
            return Err(CryptoError::Unsupported);
        }
        let suite = Suite::parse(suite.as_bytes()).ok_or(CryptoError::UnknownSuite)?;
        // The first key parameter; several (`;`) would be for key changes by MKI.
        let first = key_params.split(';').next().unwrap_or_default();
        let inline = first.strip_prefix("inline:").ok_or(CryptoError::Syntax)?;
        let mut fields = inline.split('|');
        let b64 = fields.next().unwrap_or_default();
        for f in fields {
            // A lifetime is digits or 2^n; an MKI is `n:len`.
            if f.contains(':') {
                return Err(CryptoError::Unsupported);
            }
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| CryptoError::BadKey)?;
        if key.len() != suite.key_len() {
            return Err(CryptoError::BadKey);
        }
        Ok(Crypto { tag, suite, key })
    }

    /// A new master key and salt for `suite` under `tag`, from the
    /// operating system's random source (`getrandom`; RFC 4568 section 6.1
    /// wants them cryptographically random). Errors when that source fails.
    pub fn generate(tag: u32, suite: Suite) -> Result<Crypto, getrandom::Error> {
        let mut key = vec![0; suite.key_len()];
        getrandom::fill(&mut key)?;
        Ok(Crypto { tag, suite, key })
    }

    /// Whether `other` names the same key slot: tag and suite (how an
    /// answer's `a=crypto` is matched to the offer's, RFC 4568 section 7.1.2).
    pub fn same_slot(&self, other: &Crypto) -> bool {
        self.tag == other.tag && self.suite == other.suite
    }

    /// The attribute value: `<tag> <suite> inline:<base64>`.
    pub fn to_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            base64::engine::general_purpose::STANDARD.encode(&self.key)
        )
    }
}

/// The SRTP of one media line in an SDP we write: its transport protocol
/// and its `a=crypto` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineKeys {
    /// The `m=` line's transport protocol to write (`RTP/SAVP`, ...);
    /// `None`: as it is.
    pub proto: Option<String>,
    /// The `a=crypto` lines the line carries (ours).
    pub crypto: Vec<Crypto>,
}

/// The secure profile of an RTP protocol: `RTP/AVP` becomes `RTP/SAVP`,
/// `RTP/AVPF` `RTP/SAVPF` (RFC 3711 section 12, RFC 5124); others unchanged.
pub fn secure_proto(proto: &str) -> String {
    match proto {
        "RTP/AVP" => "RTP/SAVP".into(),
        "RTP/AVPF" => "RTP/SAVPF".into(),
        p => p.into(),
    }
}

/// The plain profile of an RTP protocol: `RTP/SAVP` becomes `RTP/AVP`,
/// `RTP/SAVPF` `RTP/AVPF`; others unchanged.
pub fn plain_proto(proto: &str) -> String {
    match proto {
        "RTP/SAVP" => "RTP/AVP".into(),
        "RTP/SAVPF" => "RTP/AVPF".into(),
        p => p.into(),
    }
}

/// `body` with, on its i-th media line, the protocol and exactly the
/// `a=crypto` lines `lines[i]` gives (added at the end of the line's
/// section); every `a=crypto` that was there is removed, and a line beyond
/// `lines` keeps its protocol and carries none. With `plain`, every
/// protocol becomes its plain profile ([`plain_proto`]) as well: the SDP a
/// plain RTP party (the carrier) gets.
pub fn write_keys(body: &[u8], lines: &[LineKeys], plain: bool) -> Vec<u8> {
    let line = |index: Option<usize>, line: &[u8], raw: &[u8], out: &mut Vec<u8>| {
        if line.starts_with(b"a=crypto:") {
            return;
        }
        let (Some(m), Some(i)) = (line.strip_prefix(b"m="), index) else {
            out.extend_from_slice(raw);
            return;
        };
        // m=<media> <port> <proto> <fmt> ...
        let text = String::from_utf8_lossy(m);
        let mut fields = text.splitn(4, ' ');
        let (kind, port, proto, rest) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next(),
        );
        let new = lines
            .get(i)
            .and_then(|l| l.proto.clone())
            .unwrap_or_else(|| proto.to_string());
        let new = if plain { plain_proto(&new) } else { new };
        out.extend_from_slice(format!("m={kind} {port} {new}").as_bytes());
        if let Some(rest) = rest {
            out.push(b' ');
            out.extend_from_slice(rest.as_bytes());
        }
        out.extend_from_slice(raw.get(line.len()..).unwrap_or_default());
    };
    let end = |index: usize, eol: &[u8], out: &mut Vec<u8>| {
        for c in lines.get(index).map_or(&[][..], |l| &l.crypto) {
            out.extend_from_slice(b"a=crypto:");
            out.extend_from_slice(c.to_value().as_bytes());
            out.extend_from_slice(eol);
        }
    };
    super::sdp::edit_sections(body, line, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_lines_parse_and_print_back() {
        // RFC 4568 section 4's example key (30 bytes).
        let v = b"1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20";
        let c = Crypto::parse(v).unwrap();
        assert_eq!(
            (c.tag, c.suite, c.key.len()),
            (1, Suite::AesCm128HmacSha1_80, 30)
        );
        assert_eq!(
            c.to_value(),
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
        );
        assert!(!format!("{c:?}").contains("WVNf"), "Debug hides the key");
        let gcm = Crypto {
            tag: 2,
            suite: Suite::AeadAes128Gcm,
            key: (0..28).collect(),
        };
        assert_eq!(Crypto::parse(gcm.to_value().as_bytes()), Ok(gcm));
        for (bad, err) in [
            (&b"x AES_CM_128_HMAC_SHA1_80 inline:AAAA"[..], CryptoError::Syntax),
            (b"1 F8_128_HMAC_SHA1_80 inline:AAAA", CryptoError::UnknownSuite),
            (b"1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", CryptoError::BadKey),
            (
                b"1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
                CryptoError::Unsupported,
            ),
            (
                b"1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz UNENCRYPTED_SRTP",
                CryptoError::Unsupported,
            ),
        ] {
            assert_eq!(Crypto::parse(bad), Err(err), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Suite::AeadAes128Gcm.rtcp_overhead(), Suite::MAX_OVERHEAD);
        assert!(Suite::ALL
            .iter()
            .all(|s| s.rtcp_overhead() <= Suite::MAX_OVERHEAD));
    }

    #[test]
    fn keys_are_written_per_line_and_stripped_for_plain_parties() {
        let a = Crypto::generate(1, Suite::AeadAes128Gcm).unwrap();
        let b = Crypto::generate(1, Suite::AeadAes128Gcm).unwrap();
        assert_ne!(a.key, b.key, "keys are random");
        assert!(a.same_slot(&b));
        let body = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/SAVP 0 101\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\n";
        let plain = write_keys(body, &[], true);
        assert_eq!(
            plain,
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0 101\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\n".to_vec()
        );
        let ours = LineKeys {
            proto: Some(secure_proto("RTP/AVP")),
            crypto: vec![a.clone()],
        };
        let keyed = write_keys(&plain, &[ours], false);
        let sdp = crate::media::sdp::SdpRepr::parse(&keyed).unwrap();
        assert_eq!(sdp.media[0].proto, "RTP/SAVP");
        assert_eq!(sdp.media[0].crypto, vec![a]);
        assert_eq!(
            sdp.media[0].direction,
            crate::media::sdp::Direction::SendRecv
        );
        assert_eq!(
            (sdp.media[1].proto.as_str(), sdp.media[1].crypto.len()),
            ("RTP/AVP", 0)
        );
        assert!(keyed.ends_with(b"m=video 0 RTP/AVP 96\r\n"));
        assert_eq!(plain_proto("RTP/SAVPF"), "RTP/AVPF");
        assert_eq!(secure_proto("UDP/TLS/RTP/SAVPF"), "UDP/TLS/RTP/SAVPF");
    }
}
