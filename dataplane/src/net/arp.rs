//! ARP for IPv4 over Ethernet (RFC 826): a checked view, the reply we make
//! in place of a request for our address, and the request we send for a
//! next hop.

use std::net::Ipv4Addr;

use super::ethernet::{self, EthernetFrame, Mac, BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use super::{Kind, Reason};

/// Byte ranges of an ARP packet for IPv4 over Ethernet.
pub mod field {
    use std::ops::Range;

    /// Hardware type (HTYPE), 16 bits: 1 for Ethernet.
    pub const HTYPE: Range<usize> = 0..2;
    /// Protocol type (PTYPE), 16 bits: the EtherType 0x0800 for IPv4.
    pub const PTYPE: Range<usize> = 2..4;
    /// Hardware address length (HLEN) in bytes: 6.
    pub const HLEN: usize = 4;
    /// Protocol address length (PLEN) in bytes: 4.
    pub const PLEN: usize = 5;
    /// Operation (OPER), 16 bits: 1 for a request, 2 for a reply.
    pub const OPER: Range<usize> = 6..8;
    /// Sender hardware address (SHA), a MAC.
    pub const SHA: Range<usize> = 8..14;
    /// Sender protocol address (SPA), an IPv4 address.
    pub const SPA: Range<usize> = 14..18;
    /// Target hardware address (THA), a MAC (ignored in a request; ours are zero).
    pub const THA: Range<usize> = 18..24;
    /// Target protocol address (TPA), an IPv4 address.
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an ARP packet for IPv4 over Ethernet.
pub const PACKET_LEN: usize = 28;
/// The smallest Ethernet frame (without FCS): what an ARP request fills.
pub const MIN_FRAME: usize = 60;
const _: () = assert!(MIN_FRAME >= ethernet::HEADER_LEN + PACKET_LEN);

/// ARP operation code of a request (RFC 826 `ares_op$REQUEST`).
pub const OP_REQUEST: u16 = 1;
/// ARP operation code of a reply (RFC 826 `ares_op$REPLY`).
pub const OP_REPLY: u16 = 2;

/// A view over an ARP packet (the Ethernet payload): `new_checked`
/// validates its length once, after which the accessors never panic.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing below is within PACKET_LEN, which `new_checked` guarantees.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// The packet, if `buffer` holds at least [`PACKET_LEN`] bytes (the types are not checked here;
    /// see [`ArpPacket::is_ethernet_ipv4`]).
    pub fn new_checked(buffer: T) -> Option<ArpPacket<T>> {
        (buffer.as_ref().len() >= PACKET_LEN).then_some(ArpPacket { buffer })
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn mac_at(&self, r: std::ops::Range<usize>) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[r]);
        m
    }

    fn ip_at(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Ethernet hardware addresses and IPv4 protocol addresses.
    pub fn is_ethernet_ipv4(&self) -> bool {
        let b = self.buffer.as_ref();
        self.u16_at(field::HTYPE) == 1
            && self.u16_at(field::PTYPE) == ETHERTYPE_IPV4
            && b[field::HLEN] == 6
            && b[field::PLEN] == 4
    }

    /// The operation code (OPER), in host order.
    pub fn operation(&self) -> u16 {
        self.u16_at(field::OPER)
    }

    /// The sender hardware address (SHA).
    pub fn sender_mac(&self) -> Mac {
        self.mac_at(field::SHA)
    }

    /// The sender protocol address (SPA).
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    /// The target protocol address (TPA).
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }

    /// What [`super::classify`] says of it: a request or reply, or why not.
    pub fn kind(&self) -> Kind {
        let op = self.operation();
        if !self.is_ethernet_ipv4() || (op != OP_REQUEST && op != OP_REPLY) {
            return Kind::Drop(Reason::Unsupported);
        }
        Kind::Arp {
            request: op == OP_REQUEST,
            sender_mac: self.sender_mac(),
            sender_ip: self.sender_ip(),
            target_ip: self.target_ip(),
        }
    }
}

#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes operation `op` from `sender` to `target` (hardware and
    /// protocol types for IPv4 over Ethernet included).
    pub fn emit(&mut self, op: u16, sender: (Mac, Ipv4Addr), target: (Mac, Ipv4Addr)) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&1u16.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        b[field::OPER].copy_from_slice(&op.to_be_bytes());
        b[field::SHA].copy_from_slice(&sender.0);
        b[field::SPA].copy_from_slice(&sender.1.octets());
        b[field::THA].copy_from_slice(&target.0);
        b[field::TPA].copy_from_slice(&target.1.octets());
    }
}

/// Turns an ARP request for `our_ip` into our reply, in place; `false` (the
/// frame untouched) when it is not one.
pub fn arp_reply(frame: &mut [u8], our_mac: Mac, our_ip: Ipv4Addr) -> bool {
    let Some(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return false;
    };
    let Some(mut arp) = ArpPacket::new_checked(eth.payload_mut()) else {
        return false;
    };
    let Kind::Arp {
        request: true,
        sender_mac,
        sender_ip,
        target_ip,
    } = arp.kind()
    else {
        return false;
    };
    if target_ip != our_ip {
        return false;
    }
    arp.emit(OP_REPLY, (our_mac, our_ip), (sender_mac, sender_ip));
    eth.set_dst(sender_mac);
    eth.set_src(our_mac);
    true
}

/// Writes an ARP request for `target` into `buf` (a minimum-size frame);
/// the frame length.
pub fn arp_request(
    buf: &mut [u8],
    our_mac: Mac,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Option<usize> {
    let f = buf.get_mut(..MIN_FRAME)?;
    f.fill(0);
    let mut eth = EthernetFrame::new_checked(f)?;
    eth.set_dst(BROADCAST);
    eth.set_src(our_mac);
    eth.set_ethertype(ETHERTYPE_ARP);
    ArpPacket::new_checked(eth.payload_mut())?.emit(
        OP_REQUEST,
        (our_mac, our_ip),
        ([0; 6], target),
    );
    Some(MIN_FRAME)
}

#[cfg(test)]
mod tests {
    use super::super::{classify, on_link, ArpCache};
    use super::*;
    use crate::net::test_util::{ip, OUR_MAC, PEER_MAC};

    #[test]
    fn arp_answered_learnt_and_asked() {
        let mut req = vec![0u8; 60];
        arp_request(&mut req, PEER_MAC, ip("10.0.1.10"), ip("10.0.0.100")).unwrap();
        assert_eq!(
            classify(&req, &[ip("10.0.0.100")]),
            Kind::Arp {
                request: true,
                sender_mac: PEER_MAC,
                sender_ip: ip("10.0.1.10"),
                target_ip: ip("10.0.0.100")
            }
        );
        let mut other = req.clone();
        assert!(
            !arp_reply(&mut other, OUR_MAC, ip("10.0.0.99")),
            "not our address"
        );
        assert!(arp_reply(&mut req, OUR_MAC, ip("10.0.0.100")));
        assert_eq!(&req[0..6], &PEER_MAC);
        assert_eq!(
            classify(&req, &[ip("10.0.1.10")]),
            Kind::Arp {
                request: false,
                sender_mac: OUR_MAC,
                sender_ip: ip("10.0.0.100"),
                target_ip: ip("10.0.1.10")
            }
        );
        let mut cache = ArpCache::new(4, 60_000);
        assert_eq!(cache.get(ip("10.0.1.10"), 0), None);
        cache.learn(ip("10.0.1.10"), PEER_MAC, 0);
        for i in 0..20u8 {
            cache.learn(Ipv4Addr::new(10, 0, 2, i), [i; 6], 0);
        }
        cache.learn(ip("10.0.1.10"), PEER_MAC, 1000);
        assert_eq!(cache.get(ip("10.0.1.10"), 1000), Some(PEER_MAC));
        assert_eq!(cache.get(ip("10.0.1.10"), 61_000), None, "expired");
        assert!(on_link(ip("10.0.255.1"), ip("10.0.0.100"), 16));
        assert!(!on_link(ip("10.1.0.1"), ip("10.0.0.100"), 16));
        assert!(on_link(ip("1.2.3.4"), ip("10.0.0.100"), 0));
    }
}
