//! IPv4 reassembly (RFC 791 section 3.2, RFC 815's hole bookkeeping kept
//! simple) of UDP datagrams for us: SIP larger than the MTU.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::ethernet::EthernetFrame;
use super::ipv4::{self, Ipv4Packet, PROTO_UDP};
use super::udp::UdpPacket;
use crate::time::Ms;

/// A reassembled UDP datagram: addresses and the UDP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The source address and UDP port.
    pub src: SocketAddrV4,
    /// The destination address (ours) and UDP port.
    pub dst: SocketAddrV4,
    /// The UDP payload (header stripped; checksum verified when the sender set one).
    pub payload: Vec<u8>,
}

/// One datagram being put together.
#[derive(Debug)]
struct Partial {
    key: (Ipv4Addr, Ipv4Addr, u16),
    data: Vec<u8>,
    /// Byte ranges received, as (start, end).
    have: Vec<(usize, usize)>,
    /// Known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    started: Ms,
}

/// IPv4 reassembly of UDP datagrams for us (SIP larger than the MTU), with
/// a fixed number of datagrams in progress and a deadline for each, so a
/// flood of fragments costs bounded memory and nothing else. Overlapping
/// fragments are dropped with their datagram (RFC 5722's rule, for IPv4).
#[derive(Debug)]
pub struct Reassembler {
    slots: Vec<Option<Partial>>,
    timeout_ms: Ms,
}

const MAX_FRAGMENTS: usize = 64;

impl Reassembler {
    /// A reassembler for at most `slots` datagrams at once (at least 1; when all are taken, the
    /// oldest gives way). A datagram still incomplete `timeout_ms` after its first fragment is
    /// dropped.
    pub fn new(slots: usize, timeout_ms: Ms) -> Reassembler {
        Reassembler {
            slots: (0..slots.max(1)).map(|_| None).collect(),
            timeout_ms,
        }
    }

    /// Adds a fragment (a frame [`classify`](super::classify) called
    /// [`Kind::Fragment`](super::Kind::Fragment)); the whole datagram once its last missing piece
    /// arrives.
    pub fn push(&mut self, frame: &[u8], now: Ms) -> Option<Datagram> {
        let eth = EthernetFrame::new_checked(frame)?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.protocol() != PROTO_UDP {
            return None;
        }
        let key = (ip.src(), ip.dst(), ip.ident());
        let more = ip.more_frags();
        let start = ip.frag_offset();
        let piece = ip.payload();
        let end = start + piece.len();
        if end > 65_535 - ipv4::HEADER_LEN || (more && piece.len() % 8 != 0) {
            return None;
        }
        // Expire old datagrams; find ours or a free slot.
        for slot in &mut self.slots {
            if slot
                .as_ref()
                .is_some_and(|p| now.saturating_sub(p.started) > self.timeout_ms)
            {
                *slot = None;
            }
        }
        let idx = match self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|p| p.key == key))
        {
            Some(i) => i,
            None => {
                // A free slot, else the oldest datagram in progress gives way.
                let i = self.slots.iter().position(Option::is_none).or_else(|| {
                    (0..self.slots.len()).min_by_key(|&i| {
                        self.slots
                            .get(i)
                            .and_then(|s| s.as_ref().map(|p| p.started))
                            .unwrap_or(0)
                    })
                })?;
                *self.slots.get_mut(i)? = Some(Partial {
                    key,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    started: now,
                });
                i
            }
        };
        let slot = self.slots.get_mut(idx)?;
        let p = slot.as_mut()?;
        let overlaps = p.have.iter().any(|&(a, b)| start < b && a < end);
        let bad_total = match (more, p.total) {
            (false, Some(t)) => t != end,
            (_, Some(t)) => end > t,
            (false, None) => p.have.iter().any(|&(_, b)| b > end),
            (true, None) => false,
        };
        if overlaps || bad_total || p.have.len() >= MAX_FRAGMENTS {
            *slot = None;
            return None;
        }
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data.get_mut(start..end)?.copy_from_slice(piece);
        p.have.push((start, end));
        if !more {
            p.total = Some(end);
        }
        let t = p.total?;
        if p.have.iter().map(|&(a, b)| b - a).sum::<usize>() != t {
            return None;
        }
        // Complete: check and strip the UDP header.
        let p = slot.take()?;
        let udp = UdpPacket::new_checked(&p.data[..]).ok()?;
        if udp.len() != p.data.len() || !udp.verify_checksum(key.0, key.1) {
            return None;
        }
        Some(Datagram {
            src: SocketAddrV4::new(key.0, udp.src_port()),
            dst: SocketAddrV4::new(key.1, udp.dst_port()),
            payload: udp.payload().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{build_udp, classify, ethernet, udp_fragments, Kind, MTU};
    use super::*;
    use crate::net::test_util::{ip, sa, OUR_MAC, PEER_MAC};

    /// Splits a built UDP frame into IPv4 fragments of `size` payload bytes.
    fn fragments(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
        let body = &frame[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
        let mut out = Vec::new();
        for (i, chunk) in body.chunks(size).enumerate() {
            let mut f = frame[..ethernet::HEADER_LEN + ipv4::HEADER_LEN].to_vec();
            f.extend_from_slice(chunk);
            let more = (i + 1) * size < body.len();
            let off = (i * size / 8) as u16 | if more { 0x2000 } else { 0 };
            let ip = &mut f[ethernet::HEADER_LEN..];
            ip[2..4].copy_from_slice(&((ipv4::HEADER_LEN + chunk.len()) as u16).to_be_bytes());
            ip[6..8].copy_from_slice(&off.to_be_bytes());
            Ipv4Packet::new_checked(&mut ip[..])
                .unwrap()
                .fill_checksum();
            out.push(f);
        }
        out
    }

    #[test]
    fn fragments_reassemble_in_any_order_and_bad_ones_are_dropped() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0u8; 4000];
        let n = build_udp(
            &mut buf,
            PEER_MAC,
            OUR_MAC,
            sa("10.0.1.10:5060"),
            sa("10.0.0.100:5060"),
            &payload,
            99,
        )
        .unwrap();
        let frags = fragments(&buf[..n], 1480);
        assert_eq!(frags.len(), 3);
        assert_eq!(classify(&frags[1], &[ip("10.0.0.100")]), Kind::Fragment);
        let mut r = Reassembler::new(4, 2000);
        assert_eq!(r.push(&frags[2], 0), None);
        assert_eq!(r.push(&frags[0], 1), None);
        let d = r.push(&frags[1], 2).expect("complete");
        assert_eq!(
            (d.src, d.dst),
            (sa("10.0.1.10:5060"), sa("10.0.0.100:5060"))
        );
        assert_eq!(d.payload, payload);
        // A duplicate (overlapping) fragment drops the datagram.
        assert_eq!(r.push(&frags[0], 3), None);
        assert_eq!(r.push(&frags[0], 3), None);
        assert_eq!(r.push(&frags[1], 3), None);
        assert!(r.push(&frags[2], 3).is_none(), "dropped, not completed");
        // An old partial datagram expires.
        let mut r = Reassembler::new(4, 2000);
        assert_eq!(r.push(&frags[0], 10), None);
        assert_eq!(r.push(&frags[1], 5000), None);
        assert_eq!(r.push(&frags[2], 5001), None, "the first fragment expired");
        // A broken payload fails the UDP checksum once whole.
        let mut bad = frags.clone();
        let last = bad[1].len() - 1;
        bad[1][last] ^= 1;
        let mut r = Reassembler::new(4, 2000);
        r.push(&bad[0], 0);
        r.push(&bad[1], 0);
        assert_eq!(r.push(&bad[2], 0), None);
        // What we fragment, we reassemble.
        let mut sent = Vec::new();
        udp_fragments(
            (OUR_MAC, PEER_MAC),
            sa("10.0.0.100:5060"),
            sa("10.0.1.10:5060"),
            &payload,
            7,
            |f| sent.push(f.to_vec()),
        )
        .unwrap();
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|f| f.len() <= ethernet::HEADER_LEN + MTU));
        let mut r = Reassembler::new(2, 2000);
        let got: Vec<_> = sent
            .iter()
            .rev()
            .filter_map(|f| {
                assert_eq!(classify(f, &[ip("10.0.1.10")]), Kind::Fragment);
                r.push(f, 0)
            })
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, payload);
        // At most `slots` datagrams in progress: a new one evicts the oldest.
        let mut r = Reassembler::new(1, 2000);
        assert_eq!(r.push(&frags[0], 0), None);
        let mut other = frags[1].clone();
        other[ethernet::HEADER_LEN + 4] ^= 1; // another IP id
        assert_eq!(r.push(&other, 1), None);
        assert_eq!(r.push(&frags[1], 2), None);
        assert!(
            r.push(&frags[2], 2).is_none(),
            "its first fragment was evicted"
        );
        assert!(r.push(&frags[0], 3).is_some());
    }
}
