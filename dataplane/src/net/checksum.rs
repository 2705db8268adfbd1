//! The Internet checksum (RFC 1071): one's-complement sums, the IPv4/UDP
//! pseudo-header, and the incremental update of RFC 1624 that lets the relay
//! readdress a datagram without reading its payload.

use std::net::Ipv4Addr;

/// One's-complement sum of `data` added to `acc` (odd length padded with a
/// zero byte), not folded, not inverted.
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [hi, lo] = c {
            acc += u32::from(u16::from_be_bytes([*hi, *lo]));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds the carries of a 32-bit sum into 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data` (an IPv4 header, an ICMP message): 0 when `data`
/// holds a right checksum field already.
pub fn data(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The sum of the IPv4 pseudo-header (RFC 768) for `protocol`, `len` bytes.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u32) -> u32 {
    let acc = sum(sum(0, &src.octets()), &dst.octets());
    acc + u32::from(protocol) + len
}

/// RFC 1624 eqn. 3: the checksum `old` after the 16-bit words `from` became
/// `to` (same length), `HC' = ~(~HC + ~m + m')`.
pub fn update(old: u16, from: &[u8], to: &[u8]) -> u16 {
    let mut acc = u32::from(!old);
    for (o, n) in from.chunks_exact(2).zip(to.chunks_exact(2)) {
        if let ([o0, o1], [n0, n1]) = (o, n) {
            acc += u32::from(!u16::from_be_bytes([*o0, *o1]));
            acc += u32::from(u16::from_be_bytes([*n0, *n1]));
        }
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_incremental_update() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2 (folded).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &d)), 0xddf2);
        assert_eq!(data(&d), !0xddf2);
        let mut changed = d;
        changed[2..4].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(update(data(&d), &d[2..4], &changed[2..4]), data(&changed));
    }
}
