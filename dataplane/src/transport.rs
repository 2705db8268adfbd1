//! The SIP transports (RFC 3261 §18): UDP datagrams, and TCP or TLS
//! streams. The engine names the transport of every message it takes and
//! sends; the backends carry UDP, and the control plane's stream layer
//! carries TCP and TLS.

/// A SIP transport, with the spellings RFC 3261 gives it in Via
/// (`SIP/2.0/UDP`) and in URIs (`;transport=udp`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Transport {
    /// UDP (RFC 3261 §18.1.1): unreliable, so requests and INVITE finals are resent.
    #[default]
    Udp,
    /// TCP: reliable, framed by Content-Length (RFC 3261 §18.3).
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2.1, RFC 5246/8446): `sips:` URIs and `;transport=tls`.
    Tls,
}

impl Transport {
    /// Every transport, UDP first.
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// The name in a Via's sent-protocol (`UDP`, `TCP`, `TLS`).
    pub const fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The lower-case name: a URI's `transport` parameter, config and API values.
    pub const fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Parses a `transport` parameter or a config value, case-insensitive
    /// (`udp`, `tcp`, `tls`); `None` for any other (SCTP, WS are not built).
    pub fn parse(value: &[u8]) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| value.eq_ignore_ascii_case(t.name().as_bytes()))
    }

    /// Whether the transport delivers reliably: then RFC 3261 timers A, E
    /// and G do not run (§17.1.1.2, §17.1.2.2, §17.2.1).
    pub const fn reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The port a URI without one means (RFC 3261 §19.1.2): 5061 for TLS, else 5060.
    pub const fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for t in Transport::ALL {
            assert_eq!(Transport::parse(t.name().as_bytes()), Some(t));
            assert_eq!(Transport::parse(t.via_name().as_bytes()), Some(t));
        }
        assert_eq!(Transport::parse(b"sctp"), None);
        assert_eq!(Transport::Tls.default_port(), 5061);
        assert!(!Transport::Udp.reliable() && Transport::Tls.reliable());
    }
}
