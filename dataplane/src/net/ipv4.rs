//! IPv4 (RFC 791): a checked view over the header and its payload, and the
//! header we write on what we send.

use std::net::Ipv4Addr;

use super::checksum;
use super::Reason;

/// IP protocol number of ICMP (RFC 792); with [`PROTO_UDP`] the only ones we handle.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of UDP (RFC 768).
pub const PROTO_UDP: u8 = 17;

/// Byte ranges of the IPv4 header.
pub mod field {
    use std::ops::Range;

    /// Version (4 bits) and header length in 32-bit words (4 bits).
    pub const VER_IHL: usize = 0;
    /// Type of service (today DSCP and ECN), 8 bits.
    pub const TOS: usize = 1;
    /// Total length in bytes, header included, 16 bits, network byte order.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification, 16 bits: groups the fragments of one datagram.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (DF 0x4000, MF 0x2000) and fragment offset in 8-byte units.
    pub const FLG_OFF: Range<usize> = 6..8;
    /// Time to live, 8 bits.
    pub const TTL: usize = 8;
    /// Protocol of the payload (see [`PROTO_UDP`](super::PROTO_UDP)), 8 bits.
    pub const PROTOCOL: usize = 9;
    /// Header checksum, 16 bits (RFC 1071).
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address, 4 bytes.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address, 4 bytes.
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// The TTL we send with.
pub const TTL: u8 = 64;
/// The More Fragments flag.
pub const MF: u16 = 0x2000;

/// A view over an IPv4 packet: `new_checked` validates version, header
/// length and total length once, after which the accessors never panic.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

// Indexing below stays within the header length and total length that
// `new_checked` validated (20 <= ihl <= total <= buffer length).
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The packet, or why not: [`Reason::Unsupported`] for another version
    /// or a header shorter than 20 bytes, [`Reason::Truncated`] when the
    /// total length does not fit the buffer.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, Reason> {
        let b = buffer.as_ref();
        let vihl = *b.first().ok_or(Reason::Truncated)?;
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < HEADER_LEN {
            return Err(Reason::Unsupported);
        }
        let total = match b.get(field::LENGTH) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(Reason::Truncated),
        };
        if total < ihl || b.len() < total {
            return Err(Reason::Truncated);
        }
        Ok(Ipv4Packet { buffer })
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn addr_at(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Header length in bytes (options included).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The total length in bytes (header and payload).
    pub fn total_len(&self) -> usize {
        usize::from(self.u16_at(field::LENGTH))
    }

    /// The identification field, in host order.
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// More Fragments set, or a fragment offset: part of a larger datagram.
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x3fff != 0
    }

    /// Whether the More Fragments flag is set.
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & MF != 0
    }

    /// The fragment's offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.u16_at(field::FLG_OFF) & 0x1fff) * 8
    }

    /// The protocol number of the payload (e.g. [`PROTO_UDP`]).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The source address.
    pub fn src(&self) -> Ipv4Addr {
        self.addr_at(field::SRC)
    }

    /// The destination address.
    pub fn dst(&self) -> Ipv4Addr {
        self.addr_at(field::DST)
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Writes the source address; the header checksum is left as it was (see
    /// [`fill_checksum`](Self::fill_checksum)).
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Writes the destination address; the header checksum is left as it was.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Writes the TTL; the header checksum is left as it was.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        let ihl = self.header_len();
        let h = &mut self.buffer.as_mut()[..ihl];
        h[field::CHECKSUM].fill(0);
        let c = checksum::data(h);
        h[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// The bytes after the header, up to the total length, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (ihl, total) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[ihl..total]
    }
}

/// What [`emit_header`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number of the payload (e.g. [`PROTO_UDP`]).
    pub protocol: u8,
    /// Bytes after the header.
    pub payload_len: usize,
    /// Identification: the same on every fragment of one datagram.
    pub ident: u16,
    /// Flags and offset (8-byte units), as the FLG_OFF field holds them.
    pub flg_off: u16,
}

/// Writes a 20-byte header for `repr` into `buf`, TTL 64, checksum filled.
/// DF stays clear: a router on a smaller-MTU path may fragment our SIP (we
/// ignore ICMP "fragmentation needed"). `None` if `buf` is too short or the
/// packet would exceed 65,535 bytes.
pub fn emit_header(buf: &mut [u8], repr: &Ipv4Repr) -> Option<()> {
    let total = u16::try_from(HEADER_LEN + repr.payload_len).ok()?;
    let h = buf.get_mut(..HEADER_LEN)?;
    let [vihl, tos, l0, l1, i0, i1, f0, f1, ttl, proto, c0, c1, s0, s1, s2, s3, d0, d1, d2, d3] = h
    else {
        return None;
    };
    (*vihl, *tos, *ttl, *proto) = (0x45, 0, TTL, repr.protocol);
    [*l0, *l1] = total.to_be_bytes();
    [*i0, *i1] = repr.ident.to_be_bytes();
    [*f0, *f1] = repr.flg_off.to_be_bytes();
    [*c0, *c1] = [0, 0];
    [*s0, *s1, *s2, *s3] = repr.src.octets();
    [*d0, *d1, *d2, *d3] = repr.dst.octets();
    let c = checksum::data(h);
    h.get_mut(field::CHECKSUM)?
        .copy_from_slice(&c.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse_the_same_header() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 100),
            dst: Ipv4Addr::new(10, 0, 1, 10),
            protocol: PROTO_UDP,
            payload_len: 4,
            ident: 7,
            flg_off: MF | 3,
        };
        let mut b = [0u8; 24];
        emit_header(&mut b, &repr).unwrap();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!((p.src(), p.dst(), p.protocol()), (repr.src, repr.dst, 17));
        assert_eq!((p.ident(), p.total_len(), p.header_len()), (7, 24, 20));
        assert!(p.is_fragment() && p.more_frags());
        assert_eq!(p.frag_offset(), 24);
        assert_eq!(p.payload().len(), 4);
        assert_eq!(
            Ipv4Packet::new_checked(&b[..23]).err(),
            Some(Reason::Truncated)
        );
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(Reason::Unsupported)
        );
    }
}
