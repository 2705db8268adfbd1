//! L2/L3 for the DPDK backend, over frame bytes: one file per protocol in
//! smoltcp's wire style (a checked view with a `field` module of byte
//! ranges; accessors never panic once `new_checked` has passed), plus the
//! tables and tools built on them. Pure code (no DPDK here), so every rule
//! is unit-tested on byte arrays; the poll loop applies it to mbufs in place.
//!
//! ```text
//!  frame ─► classify ─┬─ Arp { .. }        arp::arp_reply in place; arp_cache learns
//!                     ├─ EchoRequest       icmpv4::icmp_echo_reply in place
//!                     ├─ Udp { .. }        RTP: udp::readdress in place (RFC 1624)
//!                     │                    SIP: udp::udp_checksum_ok, payload to the engine
//!                     ├─ Fragment          reassembly::Reassembler (SIP > MTU)
//!                     └─ Drop(Reason)      counted per reason
//!  SIP out ─► udp::build_udp, or fragment::udp_fragments above the MTU
//! ```
//! [`checksum`] holds the Internet checksum arithmetic; [`pcap`] writes the
//! captures the tests and the relay benchmark replay; [`hep`] is SIP
//! capture's wire format toward Homer.

use std::net::{Ipv4Addr, SocketAddrV4};

pub mod arp;
pub mod arp_cache;
pub mod checksum;
pub mod ethernet;
pub mod fragment;
pub mod hep;
pub mod icmpv4;
pub mod ipv4;
pub mod pcap;
pub mod reassembly;
pub mod udp;

#[cfg(test)]
mod test_util;

pub use arp::{arp_reply, arp_request, ArpPacket};
pub use arp_cache::ArpCache;
pub use ethernet::{EthernetFrame, Mac, BROADCAST};
pub use fragment::{udp_fragments, MTU};
pub use icmpv4::icmp_echo_reply;
pub use ipv4::Ipv4Packet;
pub use pcap::pcap_file;
pub use reassembly::{Datagram, Reassembler};
pub use udp::{
    build_udp, payload_resized, payload_word_changed, peek_udp_dst, readdress, udp_checksum_ok,
    UdpPacket,
};

/// Length of the Ethernet header.
pub const ETH_LEN: usize = ethernet::HEADER_LEN;
/// Ethernet + IPv4 (no options) + UDP.
pub const UDP_HEADERS: usize = udp::FRAME_HEADERS;

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ARP packet (`request`: op 1) from `sender` asking for/telling `target`.
    Arp {
        /// Operation 1 (request); `false` for a reply (operation 2).
        request: bool,
        /// The sender hardware address (SHA).
        sender_mac: Mac,
        /// The sender protocol address (SPA).
        sender_ip: Ipv4Addr,
        /// The target protocol address (TPA): the address asked for or answered.
        target_ip: Ipv4Addr,
    },
    /// A UDP datagram for us; the payload is at `payload` (offset, length).
    Udp {
        /// The source address and port.
        src: SocketAddrV4,
        /// The destination: one of our addresses, and the port.
        dst: SocketAddrV4,
        /// The Ethernet source: the previous hop, where a reply goes.
        src_mac: Mac,
        /// Offset from the frame's start and length, in bytes, of the UDP payload.
        payload: (usize, usize),
    },
    /// An ICMP echo request for us.
    EchoRequest,
    /// A fragment of an IPv4 datagram for us: the caller reassembles it
    /// ([`Reassembler`]) when it is SIP.
    Fragment,
    /// Dropped, with the reason.
    Drop(Reason),
}

/// Why a frame is not handled; indexes the per-port drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A header, or a length one gives (IPv4 total length, UDP length), does not fit the frame.
    Truncated = 0,
    /// The IPv4 destination is not one of ours (the DPDK poll loop also counts here a frame whose
    /// destination MAC is neither ours nor broadcast).
    NotForUs = 1,
    /// A wrong IPv4 header or ICMP checksum (the DPDK poll loop also counts here a SIP datagram
    /// whose UDP checksum is wrong).
    BadChecksum = 2,
    /// Anything else we do not handle: an EtherType other than IPv4 and ARP, ARP not for IPv4 over
    /// Ethernet or neither request nor reply, IP version other than 4, an IP protocol other than
    /// UDP and ICMP, an ICMP message other than echo request.
    Unsupported = 3,
}

/// Number of [`Reason`] variants: the length of an array of per-reason counters.
pub const REASONS: usize = 4;

/// What `frame` is, for a port whose addresses are `ours`: the checks of
/// each layer in order (lengths, IPv4 version and header checksum, that it
/// is for us, fragments), never reading a UDP payload.
pub fn classify(frame: &[u8], ours: &[Ipv4Addr]) -> Kind {
    let Some(eth) = EthernetFrame::new_checked(frame) else {
        return Kind::Drop(Reason::Truncated);
    };
    match eth.ethertype() {
        ethernet::ETHERTYPE_ARP => match ArpPacket::new_checked(eth.payload()) {
            Some(arp) => arp.kind(),
            None => Kind::Drop(Reason::Truncated),
        },
        ethernet::ETHERTYPE_IPV4 => classify_ipv4(&eth, ours).unwrap_or_else(Kind::Drop),
        _ => Kind::Drop(Reason::Unsupported),
    }
}

fn classify_ipv4(eth: &EthernetFrame<&[u8]>, ours: &[Ipv4Addr]) -> Result<Kind, Reason> {
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    if !ip.verify_checksum() {
        return Err(Reason::BadChecksum);
    }
    let to = ip.dst();
    if !ours.contains(&to) {
        return Err(Reason::NotForUs);
    }
    if ip.is_fragment() {
        // Part of a larger datagram.
        return Ok(Kind::Fragment);
    }
    let ihl = ip.header_len();
    let body = ip.payload();
    match ip.protocol() {
        ipv4::PROTO_UDP => {
            let udp = UdpPacket::new_checked(body)?;
            // The UDP checksum is left to `udp_checksum_ok`: relayed RTP does
            // not need it (see there).
            Ok(Kind::Udp {
                src: SocketAddrV4::new(ip.src(), udp.src_port()),
                dst: SocketAddrV4::new(to, udp.dst_port()),
                src_mac: eth.src(),
                payload: (ETH_LEN + ihl + udp::HEADER_LEN, udp.len() - udp::HEADER_LEN),
            })
        }
        ipv4::PROTO_ICMP => match icmpv4::echo_request_checks(body) {
            Some(true) => Ok(Kind::EchoRequest),
            Some(false) => Err(Reason::BadChecksum),
            None => Err(Reason::Unsupported),
        },
        _ => Err(Reason::Unsupported),
    }
}

/// Whether `ip` is on the subnet `ours/prefix`.
pub fn on_link(ip: Ipv4Addr, ours: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(ip) & mask == u32::from(ours) & mask
}
