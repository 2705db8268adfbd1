//! UDP (RFC 768): a checked view, the header with its checksum for what we
//! send, whole frames for SIP, and the in-place readdressing of relayed RTP
//! whose checksum is updated without reading the payload (RFC 1624).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::ethernet::{self, EthernetFrame, Mac, ETHERTYPE_IPV4};
use super::ipv4::{self, Ipv4Packet, Ipv4Repr, PROTO_UDP};
use super::{checksum, Reason};

/// Byte ranges of the UDP header.
pub mod field {
    use std::ops::Range;

    /// Source port, 16 bits, network byte order.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port, 16 bits, network byte order.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length in bytes of header and payload, 16 bits, network byte order.
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum over pseudo-header, header and payload, 16 bits; 0 when the sender computed none.
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header in bytes.
pub const HEADER_LEN: usize = 8;
/// Ethernet + IPv4 (no options) + UDP: where a frame we build puts the payload.
pub const FRAME_HEADERS: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + HEADER_LEN;

/// A view over a UDP datagram (header and payload): `new_checked` validates
/// the length field once, after which the accessors never panic.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing below stays within the length field, which `new_checked` found
// between 8 and the buffer's length.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// The datagram, or [`Reason::Truncated`] when the header or the length
    /// it gives does not fit.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, Reason> {
        let b = buffer.as_ref();
        let len = match b.get(field::LENGTH) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(Reason::Truncated),
        };
        if len < HEADER_LEN || len > b.len() {
            return Err(Reason::Truncated);
        }
        Ok(UdpPacket { buffer })
    }

    #[inline]
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Header and payload length, from the header.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.u16_at(field::LENGTH))
    }

    /// Never true: a checked datagram holds at least its header.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The checksum field as sent (0: none computed).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The bytes after the header, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }

    /// Whether the checksum over the pseudo-header of `src` → `dst` is right
    /// (or absent: 0).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let udp = &self.buffer.as_ref()[..self.len()];
        let acc = checksum::pseudo_header(src, dst, PROTO_UDP, udp.len() as u32);
        !checksum::fold(checksum::sum(acc, udp)) == 0
    }
}

/// The UDP header for `payload` from `src` to `dst`, its checksum computed
/// over the pseudo-header and the payload (RFC 768; 0 sent as 0xffff).
/// `None` when the datagram would not fit an IPv4 packet.
pub fn emit_header(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Option<[u8; 8]> {
    let udp_len = u16::try_from(HEADER_LEN + payload.len()).ok()?;
    if usize::from(udp_len) + ipv4::HEADER_LEN > 65_535 {
        return None;
    }
    let [s0, s1] = src.port().to_be_bytes();
    let [d0, d1] = dst.port().to_be_bytes();
    let [l0, l1] = udp_len.to_be_bytes();
    let mut udp = [s0, s1, d0, d1, l0, l1, 0, 0];
    let acc = checksum::pseudo_header(*src.ip(), *dst.ip(), PROTO_UDP, u32::from(udp_len));
    let c = match !checksum::fold(checksum::sum(checksum::sum(acc, &udp), payload)) {
        0 => 0xffff,
        c => c,
    };
    [udp[6], udp[7]] = c.to_be_bytes();
    Some(udp)
}

/// Writes the Ethernet and IPv4 headers of a UDP packet (or fragment).
pub(super) fn emit_l2_l3(
    frame: &mut [u8],
    (src_mac, dst_mac): (Mac, Mac),
    repr: &Ipv4Repr,
) -> Option<()> {
    let mut eth = EthernetFrame::new_checked(&mut *frame)?;
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(ETHERTYPE_IPV4);
    ipv4::emit_header(eth.payload_mut(), repr)
}

/// Writes an Ethernet/IPv4/UDP frame carrying `payload` into `buf`; its
/// length, or `None` if it does not fit (or the payload exceeds an IPv4
/// datagram).
pub fn build_udp(
    buf: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ip_id: u16,
) -> Option<usize> {
    let udp = emit_header(src, dst, payload)?;
    let total = FRAME_HEADERS + payload.len();
    let f = buf.get_mut(..total)?;
    let repr = Ipv4Repr {
        src: *src.ip(),
        dst: *dst.ip(),
        protocol: PROTO_UDP,
        payload_len: HEADER_LEN + payload.len(),
        ident: ip_id,
        flg_off: 0,
    };
    emit_l2_l3(f, (src_mac, dst_mac), &repr)?;
    let (headers, body) = f.split_at_mut(FRAME_HEADERS);
    headers
        .get_mut(FRAME_HEADERS - HEADER_LEN..)?
        .copy_from_slice(&udp);
    body.copy_from_slice(payload);
    Some(total)
}

/// Whether a UDP frame [`super::classify`] accepted has a right (or no) UDP
/// checksum. Only what we consume (SIP) is checked: relayed RTP is not, since
/// [`readdress`] updates its checksum incrementally and so keeps a wrong one
/// wrong for the receiver to drop, without reading the payload here.
pub fn udp_checksum_ok(frame: &[u8]) -> bool {
    let check = || -> Option<bool> {
        let eth = EthernetFrame::new_checked(frame)?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        Some(udp.verify_checksum(ip.src(), ip.dst()))
    };
    check().unwrap_or(false)
}

/// The destination of what looks like an Ethernet/IPv4/UDP frame, read at
/// fixed offsets with nothing checked but the lengths, the ethertype and the
/// protocol: a hint for prefetching before [`super::classify`] judges the
/// frame, never a verdict.
pub fn peek_udp_dst(frame: &[u8]) -> Option<SocketAddrV4> {
    const IP: usize = ethernet::HEADER_LEN;
    if frame.get(ethernet::field::ETHERTYPE)? != ETHERTYPE_IPV4.to_be_bytes()
        || *frame.get(IP + ipv4::field::PROTOCOL)? != PROTO_UDP
    {
        return None;
    }
    let ihl = usize::from(frame.get(IP + ipv4::field::VER_IHL)? & 0x0f) * 4;
    let ip = frame.get(IP + ipv4::field::DST.start..IP + ipv4::field::DST.end)?;
    let port = frame.get(IP + ihl + field::DST_PORT.start..IP + ihl + field::DST_PORT.end)?;
    Some(SocketAddrV4::new(
        Ipv4Addr::new(*ip.first()?, *ip.get(1)?, *ip.get(2)?, *ip.get(3)?),
        u16::from_be_bytes([*port.first()?, *port.get(1)?]),
    ))
}

/// Readdresses a UDP frame (as [`super::classify`] accepted it) in place:
/// from `src_mac`/`src` to `dst_mac`/`dst`, TTL 64. Both checksums are
/// updated from the changed words (RFC 1624 eqn. 3): the IPv4 one from the
/// addresses and the TTL word ([`super::classify`] verified it, so the result
/// is exact), the UDP one from the addresses and ports, so neither the
/// payload nor the rest of the header is read; a zero UDP checksum (none)
/// stays zero. `false` (the frame untouched) when it is shorter than its
/// headers.
///
/// This is the relay's per-packet work, so it reads the header fields by
/// their offsets after one length check rather than through the views, and
/// sums the changed words from registers: reading back the header just
/// written (a full checksum) stalled on store forwarding, a fifth of the
/// relay's time per packet (`perf annotate`, `perf/dpdk_relay.py`).
// Indexing below stays within `f`, whose length (Ethernet, the IPv4 header
// with its options, the UDP header) is checked once at the top.
#[allow(clippy::indexing_slicing)]
pub fn readdress(
    frame: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> bool {
    const IP: usize = ethernet::HEADER_LEN;
    let Some(&vihl) = frame.get(IP + ipv4::field::VER_IHL) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < ipv4::HEADER_LEN {
        return false;
    }
    let u = IP + ihl;
    let Some(f) = frame.get_mut(..u + HEADER_LEN) else {
        return false;
    };
    f[ethernet::field::DST].copy_from_slice(&dst_mac);
    f[ethernet::field::SRC].copy_from_slice(&src_mac);
    // The words the checksums cover that change: addresses (both), ports
    // (UDP), the TTL/protocol word (IPv4).
    let addrs = IP + ipv4::field::SRC.start..IP + ipv4::field::DST.end;
    let ports = u + field::SRC_PORT.start..u + field::DST_PORT.end;
    let ttl = IP + ipv4::field::TTL;
    let be16 = |b: &[u8], i: usize| u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
    // RFC 1624: the sum of ~old + new over the changed 16-bit words.
    let delta = |old: u32, new: u32| u32::from(!(old as u16)) + new;
    let (src_ip, dst_ip) = (u32::from(*src.ip()), u32::from(*dst.ip()));
    let mut addr_delta = 0;
    for (i, new) in [src_ip >> 16, src_ip & 0xffff, dst_ip >> 16, dst_ip & 0xffff]
        .into_iter()
        .enumerate()
    {
        addr_delta += delta(be16(f, addrs.start + 2 * i), new);
    }
    let port_delta = delta(be16(f, ports.start), u32::from(src.port()))
        + delta(be16(f, ports.start + 2), u32::from(dst.port()));
    let ttl_delta = delta(
        be16(f, ttl),
        (u32::from(ipv4::TTL) << 8) | u32::from(f[ttl + 1]),
    );
    f[addrs.start..addrs.start + 4].copy_from_slice(&src.ip().octets());
    f[addrs.start + 4..addrs.end].copy_from_slice(&dst.ip().octets());
    f[ports.start..ports.start + 2].copy_from_slice(&src.port().to_be_bytes());
    f[ports.start + 2..ports.end].copy_from_slice(&dst.port().to_be_bytes());
    f[ttl] = ipv4::TTL;
    let c = IP + ipv4::field::CHECKSUM.start..IP + ipv4::field::CHECKSUM.end;
    let old_c = be16(f, c.start) as u16;
    let sum = !checksum::fold(u32::from(!old_c) + addr_delta + ttl_delta);
    f[c].copy_from_slice(&sum.to_be_bytes());
    let c = u + field::CHECKSUM.start..u + field::CHECKSUM.end;
    let old_c = be16(f, c.start) as u16;
    if old_c != 0 {
        let sum = match !checksum::fold(u32::from(!old_c) + addr_delta + port_delta) {
            0 => 0xffff,
            x => x,
        };
        f[c].copy_from_slice(&sum.to_be_bytes());
    }
    true
}

/// The UDP payload at frame offset `payload_off` of a frame
/// [`super::classify`] accepted is now `len` bytes, rewritten whole (SRTP
/// protected or unprotected it, RFC 3711): the IPv4 total length and
/// checksum and the UDP length follow, and the UDP checksum is computed
/// anew over pseudo-header and payload (RFC 768; 0 sent as 0xffff). `false`
/// (nothing written) when the frame holds less than that or the payload
/// does not start right after the UDP header.
// Indexing below stays within `f`, checked to reach `payload_off + len`.
#[allow(clippy::indexing_slicing)]
pub fn payload_resized(frame: &mut [u8], payload_off: usize, len: usize) -> bool {
    const IP: usize = ethernet::HEADER_LEN;
    let Some(&vihl) = frame.get(IP + ipv4::field::VER_IHL) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let u = IP + ihl;
    let (Ok(ip_len), Ok(udp_len)) = (
        u16::try_from(ihl + HEADER_LEN + len),
        u16::try_from(HEADER_LEN + len),
    ) else {
        return false;
    };
    if ihl < ipv4::HEADER_LEN || payload_off != u + HEADER_LEN {
        return false;
    }
    let Some(f) = frame.get_mut(..payload_off + len) else {
        return false;
    };
    f[IP + ipv4::field::LENGTH.start..IP + ipv4::field::LENGTH.end]
        .copy_from_slice(&ip_len.to_be_bytes());
    let c = IP + ipv4::field::CHECKSUM.start..IP + ipv4::field::CHECKSUM.end;
    f[c.clone()].fill(0);
    let sum = checksum::data(&f[IP..u]);
    f[c].copy_from_slice(&sum.to_be_bytes());
    f[u + field::LENGTH.start..u + field::LENGTH.end].copy_from_slice(&udp_len.to_be_bytes());
    let c = u + field::CHECKSUM.start..u + field::CHECKSUM.end;
    f[c.clone()].fill(0);
    let addr = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&f[IP + r.start..IP + r.end]);
        Ipv4Addr::from(a)
    };
    let (src, dst) = (addr(ipv4::field::SRC), addr(ipv4::field::DST));
    let acc = checksum::pseudo_header(src, dst, PROTO_UDP, u32::from(udp_len));
    let sum = match !checksum::fold(checksum::sum(acc, &f[u..])) {
        0 => 0xffff,
        x => x,
    };
    f[c].copy_from_slice(&sum.to_be_bytes());
    true
}

/// Keeps the UDP checksum of `frame` right after the 16-bit payload word at
/// frame offset `payload_off` (the payload's first word) went from `old` to
/// `new` (RFC 1624); a zero checksum (none sent) stays zero.
pub fn payload_word_changed(frame: &mut [u8], payload_off: usize, old: [u8; 2], new: [u8; 2]) {
    let Some(c) = payload_off
        .checked_sub(HEADER_LEN - field::CHECKSUM.start)
        .and_then(|at| frame.get_mut(at..at + 2))
    else {
        return;
    };
    let sum = u16::from_be_bytes([
        c.first().copied().unwrap_or(0),
        c.get(1).copied().unwrap_or(0),
    ]);
    if sum == 0 {
        return;
    }
    let updated = match checksum::update(sum, &old, &new) {
        0 => 0xffff,
        x => x,
    };
    c.copy_from_slice(&updated.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::{classify, Kind};
    use super::*;
    use crate::net::test_util::{ip, sa, OUR_MAC, PEER_MAC};

    #[inline]
    fn rtp_frame() -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let payload: Vec<u8> = (0..172u8).collect();
        let n = build_udp(
            &mut buf,
            PEER_MAC,
            OUR_MAC,
            sa("10.0.1.10:40000"),
            sa("10.0.0.100:10000"),
            &payload,
            7,
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    #[inline]
    fn udp_built_classified_and_checked() {
        let f = rtp_frame();
        let Kind::Udp {
            src,
            dst,
            src_mac,
            payload,
        } = classify(&f, &[ip("10.0.0.100")])
        else {
            panic!("{:?}", classify(&f, &[ip("10.0.0.100")]));
        };
        assert_eq!(
            (src, dst, src_mac),
            (sa("10.0.1.10:40000"), sa("10.0.0.100:10000"), PEER_MAC)
        );
        assert_eq!(
            &f[payload.0..payload.0 + payload.1],
            &(0..172u8).collect::<Vec<_>>()[..]
        );
        assert_eq!(
            classify(&f, &[ip("10.0.0.101")]),
            Kind::Drop(Reason::NotForUs)
        );
        assert!(udp_checksum_ok(&f));
        let mut bad = f.clone();
        bad[FRAME_HEADERS + 3] ^= 1;
        assert!(matches!(
            classify(&bad, &[ip("10.0.0.100")]),
            Kind::Udp { .. }
        ));
        assert!(!udp_checksum_ok(&bad), "checked only where we consume it");
        let mut bad = f.clone();
        bad[ethernet::HEADER_LEN + 8] ^= 1; // TTL: the IPv4 header checksum no longer matches
        assert_eq!(
            classify(&bad, &[ip("10.0.0.100")]),
            Kind::Drop(Reason::BadChecksum)
        );
        assert_eq!(
            classify(&f[..40], &[ip("10.0.0.100")]),
            Kind::Drop(Reason::Truncated)
        );
        let mut frag = f.clone();
        frag[ethernet::HEADER_LEN + 6] = 0x20; // more fragments
        Ipv4Packet::new_checked(&mut frag[ethernet::HEADER_LEN..])
            .unwrap()
            .fill_checksum();
        assert_eq!(classify(&frag, &[ip("10.0.0.100")]), Kind::Fragment);
    }

    #[test]
    fn a_resized_payload_keeps_lengths_and_checksums_right() {
        for new_len in [172 + 10, 172 - 16] {
            let mut f = rtp_frame();
            f.resize(FRAME_HEADERS + 200, 0xee);
            for b in &mut f[FRAME_HEADERS..FRAME_HEADERS + new_len] {
                *b = !*b;
            }
            assert!(payload_resized(&mut f, FRAME_HEADERS, new_len));
            f.truncate(FRAME_HEADERS + new_len);
            let Kind::Udp { payload, .. } = classify(&f, &[ip("10.0.0.100")]) else {
                panic!("{:?}", classify(&f, &[ip("10.0.0.100")]));
            };
            assert_eq!(payload, (FRAME_HEADERS, new_len));
            assert!(udp_checksum_ok(&f), "{new_len}");
        }
        let mut f = rtp_frame();
        assert!(
            !payload_resized(&mut f, FRAME_HEADERS, 400),
            "past the frame"
        );
        assert!(
            !payload_resized(&mut f, FRAME_HEADERS + 1, 10),
            "not the payload"
        );
    }

    #[test]
    fn peek_reads_a_udp_frames_destination_and_nothing_else() {
        let f = rtp_frame();
        assert_eq!(peek_udp_dst(&f), Some(sa("10.0.0.100:10000")));
        // Cut inside the UDP ports: nothing.
        assert_eq!(peek_udp_dst(&f[..FRAME_HEADERS - 5]), None);
        // Not IPv4 (ARP), not UDP (ICMP): nothing.
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(peek_udp_dst(&arp), None);
        let mut icmp = f.clone();
        icmp[ethernet::HEADER_LEN + ipv4::field::PROTOCOL] = 1;
        assert_eq!(peek_udp_dst(&icmp), None);
    }

    #[test]
    #[inline]
    fn readdress_keeps_both_checksums_right_and_the_payload() {
        let mut f = rtp_frame();
        let payload = f[FRAME_HEADERS..].to_vec();
        let out_mac = [2, 0, 0, 0, 0, 3];
        let gw_mac = [2, 0, 0, 0, 0, 4];
        assert!(readdress(
            &mut f,
            out_mac,
            gw_mac,
            sa("203.0.113.50:20000"),
            sa("203.0.113.10:30000")
        ));
        let Kind::Udp {
            src, dst, src_mac, ..
        } = classify(&f, &[ip("203.0.113.10")])
        else {
            panic!(
                "checksums or headers broken: {:?}",
                classify(&f, &[ip("203.0.113.10")])
            );
        };
        assert_eq!(
            (src, dst, src_mac),
            (sa("203.0.113.50:20000"), sa("203.0.113.10:30000"), out_mac)
        );
        assert_eq!(&f[0..6], &gw_mac);
        assert_eq!(&f[FRAME_HEADERS..], &payload[..]);
        // Same as a frame built from scratch (the IP id aside).
        let mut fresh = vec![0u8; 1500];
        let n = build_udp(&mut fresh, out_mac, gw_mac, src, dst, &payload, 7).unwrap();
        assert_eq!(&f[..], &fresh[..n]);
        assert!(udp_checksum_ok(&f));
        // A corrupted datagram stays detectably corrupted after readdressing.
        let mut bad = rtp_frame();
        bad[FRAME_HEADERS + 5] ^= 0x10;
        assert!(readdress(
            &mut bad,
            out_mac,
            gw_mac,
            sa("203.0.113.50:20000"),
            sa("203.0.113.10:30000")
        ));
        assert!(!udp_checksum_ok(&bad));
    }

    #[test]
    fn a_changed_payload_word_keeps_the_checksum_right() {
        let mut f = rtp_frame();
        let off = f.len() - 172;
        let old = [f[off], f[off + 1]];
        f[off + 1] |= 0x80;
        let new = [f[off], f[off + 1]];
        assert!(!udp_checksum_ok(&f));
        payload_word_changed(&mut f, off, old, new);
        assert!(udp_checksum_ok(&f));
    }
}
