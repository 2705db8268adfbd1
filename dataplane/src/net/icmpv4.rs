//! ICMP echo (RFC 792): the reply we make in place of a request, so hosts
//! can ping the DPDK ports (the kernel holds no address there).

use super::checksum;
use super::ethernet::EthernetFrame;
use super::ipv4::{self, Ipv4Packet};

/// Byte ranges of the ICMP header.
pub mod field {
    use std::ops::Range;

    /// Message type, 8 bits.
    pub const TYPE: usize = 0;
    /// Code, 8 bits (0 for echo and echo reply).
    pub const CODE: usize = 1;
    /// Checksum over the whole ICMP message, 16 bits, network byte order.
    pub const CHECKSUM: Range<usize> = 2..4;
}

/// ICMP type of an echo reply.
pub const ECHO_REPLY: u8 = 0;
/// ICMP type of an echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Type, code, checksum, identifier and sequence number.
pub const ECHO_HEADER_LEN: usize = 8;

/// Whether the ICMP message `body` (the IPv4 payload) is an echo request,
/// and whether its checksum is right: `None` for another message.
pub fn echo_request_checks(body: &[u8]) -> Option<bool> {
    (body.get(field::TYPE) == Some(&ECHO_REQUEST)).then(|| checksum::data(body) == 0)
}

/// Turns an ICMP echo request (a frame [`super::classify`] called
/// [`super::Kind::EchoRequest`]) into its reply, in place: MACs and
/// addresses swapped, TTL 64, type 0, both checksums recomputed.
pub fn icmp_echo_reply(frame: &mut [u8]) -> bool {
    let Some(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return false;
    };
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return false;
    };
    if ip.payload().len() < ECHO_HEADER_LEN {
        return false;
    }
    let (src, dst) = (ip.src(), ip.dst());
    ip.set_src(dst);
    ip.set_dst(src);
    ip.set_ttl(ipv4::TTL);
    ip.fill_checksum();
    let icmp = ip.payload_mut();
    if let Some(t) = icmp.get_mut(field::TYPE) {
        *t = ECHO_REPLY;
    }
    if let Some(c) = icmp.get_mut(field::CHECKSUM) {
        c.fill(0);
    }
    let c = checksum::data(icmp);
    if let Some(f) = icmp.get_mut(field::CHECKSUM) {
        f.copy_from_slice(&c.to_be_bytes());
    }
    eth.swap_addresses();
    true
}

#[cfg(test)]
mod tests {
    use super::super::ethernet::{self, ETHERTYPE_IPV4};
    use super::super::{classify, Kind};
    use super::*;
    use crate::net::test_util::{ip, OUR_MAC, PEER_MAC};

    const ETH_LEN: usize = ethernet::HEADER_LEN;

    #[test]
    fn icmp_echo_answered_in_place() {
        let mut f = vec![0u8; ETH_LEN + 20 + 12];
        f[0..6].copy_from_slice(&OUR_MAC);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ipb = &mut f[ETH_LEN..];
        ipb[0] = 0x45;
        ipb[2..4].copy_from_slice(&32u16.to_be_bytes());
        ipb[8] = 64;
        ipb[9] = ipv4::PROTO_ICMP;
        ipb[12..16].copy_from_slice(&ip("10.0.1.10").octets());
        ipb[16..20].copy_from_slice(&ip("10.0.0.100").octets());
        let c = checksum::data(&ipb[..20]);
        ipb[10..12].copy_from_slice(&c.to_be_bytes());
        ipb[20] = 8;
        ipb[24..32].copy_from_slice(b"ping1234");
        let c = checksum::data(&ipb[20..]);
        ipb[22..24].copy_from_slice(&c.to_be_bytes());
        assert_eq!(classify(&f, &[ip("10.0.0.100")]), Kind::EchoRequest);
        assert!(icmp_echo_reply(&mut f));
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(&f[ETH_LEN + 16..ETH_LEN + 20], &ip("10.0.1.10").octets());
        assert_eq!(f[ETH_LEN + 20], 0, "echo reply");
        assert_eq!(checksum::data(&f[ETH_LEN..ETH_LEN + 20]), 0);
        assert_eq!(
            checksum::fold(checksum::sum(0, &f[ETH_LEN + 20..])),
            0xffff,
            "ICMP checksum"
        );
        assert_eq!(&f[ETH_LEN + 24..], b"ping1234");
    }
}
