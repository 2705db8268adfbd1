//! Topology hiding for text the engine does not otherwise rewrite (unknown
//! headers, display names, bodies): every IPv4 literal that belongs to the
//! side a message comes from is replaced by the SBC's address on the side it
//! goes to; where the SBC's own SIP address of the other side is written with
//! its port (a Refer-To, a sipfrag Contact), the port becomes the SIP port of
//! the outgoing side too, so the URI names the SBC there.

use std::io::Write;
use std::net::Ipv4Addr;

use crate::routing::RouteSnapshot;
use crate::side::Side;

/// Replaces the addresses a message must not carry toward `toward`.
#[derive(Debug, Clone, Copy)]
pub struct Hider<'s> {
    pub toward: Side,
    /// The SBC's own address on the side the message goes to.
    pub ours: Ipv4Addr,
    /// The SBC's address on the other side.
    pub theirs: Ipv4Addr,
    /// The SBC's SIP port on the side the message goes to, and on the other
    /// side: `theirs:<theirs_port>` becomes `ours:<ours_port>`.
    pub sip_ports: (u16, u16),
    /// Where the message came from.
    pub source: Ipv4Addr,
    pub snapshot: &'s RouteSnapshot,
}

/// Addresses that only make sense inside a private network.
pub fn is_private(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

impl Hider<'_> {
    fn hides(&self, ip: Ipv4Addr) -> bool {
        if ip == self.theirs || ip == self.source {
            return true;
        }
        match self.toward {
            Side::Public => is_private(ip) || self.snapshot.carrier_for(ip).is_some(),
            Side::Private => self.snapshot.is_gateway(ip),
        }
    }

    /// Copies `input` to `out`, replacing hidden IPv4 literals.
    pub fn copy(&self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        let mut copied = 0;
        while i < input.len() {
            let starts_word = i == 0 || input.get(i - 1).is_some_and(|&b| !is_word(b));
            if starts_word && input.get(i).is_some_and(u8::is_ascii_digit) {
                if let Some((ip, len)) = scan_ipv4(input.get(i..).unwrap_or_default()) {
                    if self.hides(ip) {
                        out.extend_from_slice(input.get(copied..i).unwrap_or_default());
                        let _ = write!(out, "{}", self.ours);
                        copied = i + len;
                        let (ours_port, theirs_port) = self.sip_ports;
                        let port = input.get(i + len..).and_then(port_after);
                        if let (true, Some((port, plen))) = (ip == self.theirs, port) {
                            if port == theirs_port {
                                let _ = write!(out, ":{ours_port}");
                                copied += plen;
                            }
                        }
                    }
                    i += len;
                    continue;
                }
            }
            i += 1;
        }
        out.extend_from_slice(input.get(copied..).unwrap_or_default());
    }
}

/// A `:port` at the start of `s`: the port and the length of `:port`.
fn port_after(s: &[u8]) -> Option<(u16, usize)> {
    let digits = s.strip_prefix(b":")?;
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 5 || digits.get(n).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let port = std::str::from_utf8(digits.get(..n)?).ok()?.parse().ok()?;
    Some((port, n + 1))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.'
}

/// A dotted quad at the start of `s` that is not part of a longer name.
fn scan_ipv4(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut pos = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if s.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let start = pos;
        let mut v: u32 = 0;
        while let Some(d) = s.get(pos).filter(|b| b.is_ascii_digit()) {
            v = v * 10 + u32::from(d - b'0');
            pos += 1;
            if pos - start > 3 {
                return None;
            }
        }
        if pos == start {
            return None;
        }
        *octet = u8::try_from(v).ok()?;
    }
    let continues = match s.get(pos) {
        Some(b) if b.is_ascii_alphanumeric() => true,
        Some(b'.') => s.get(pos + 1).is_some_and(u8::is_ascii_alphanumeric),
        _ => false,
    };
    (!continues).then_some((Ipv4Addr::from(octets), pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_private_literals_toward_public() {
        let snap = RouteSnapshot::default();
        let h = Hider {
            toward: Side::Public,
            ours: Ipv4Addr::new(203, 0, 113, 50),
            theirs: Ipv4Addr::new(10, 0, 0, 100),
            source: Ipv4Addr::new(10, 0, 1, 10),
            sip_ports: (5080, 5060),
            snapshot: &snap,
        };
        let mut out = Vec::new();
        h.copy(b"c=IN IP4 10.0.1.10\r\no=- 1 1 IN IP4 192.168.1.1\r\nhost 1.2.3.4 v10.0.0.1 10.0.0.1.5", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "c=IN IP4 203.0.113.50\r\no=- 1 1 IN IP4 203.0.113.50\r\nhost 1.2.3.4 v10.0.0.1 10.0.0.1.5"
        );
    }

    #[test]
    fn our_other_address_takes_our_port_on_this_side() {
        let snap = RouteSnapshot::default();
        let h = Hider {
            toward: Side::Private,
            ours: Ipv4Addr::new(10, 0, 0, 100),
            theirs: Ipv4Addr::new(203, 0, 113, 50),
            source: Ipv4Addr::new(203, 0, 113, 10),
            sip_ports: (5060, 5080),
            snapshot: &snap,
        };
        let mut out = Vec::new();
        h.copy(
            b"<sip:+1555@203.0.113.50:5080;transport=udp> <sip:x@203.0.113.50:50800> 203.0.113.50:7000 203.0.113.10:5080",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<sip:+1555@10.0.0.100:5060;transport=udp> <sip:x@10.0.0.100:50800> 10.0.0.100:7000 10.0.0.100:5080"
        );
    }
}
