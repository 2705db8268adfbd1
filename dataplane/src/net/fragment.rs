//! IPv4 fragmentation of the UDP datagrams we send (SIP larger than the
//! MTU; RFC 791 section 3.2), each fragment a whole frame.

use std::net::SocketAddrV4;

use super::ethernet::{self, Mac};
use super::ipv4::{self, Ipv4Repr, MF, PROTO_UDP};
use super::udp;

/// The IPv4 MTU we send with.
pub const MTU: usize = 1500;

/// Sends a UDP datagram too large for one frame as IPv4 fragments of at
/// most [`MTU`] bytes: `out` receives each whole frame in turn (built in a
/// stack buffer). The UDP checksum covers the whole datagram, as RFC 768
/// wants; the receiver reassembles. The number of fragments, or `None` when
/// the datagram exceeds an IPv4 packet.
pub fn udp_fragments(
    (src_mac, dst_mac): (Mac, Mac),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ip_id: u16,
    mut out: impl FnMut(&[u8]),
) -> Option<usize> {
    const L2_L3: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let header = udp::emit_header(src, dst, payload)?;
    // Every fragment but the last carries a multiple of 8 bytes.
    let chunk = (MTU - ipv4::HEADER_LEN) / 8 * 8;
    let total = udp::HEADER_LEN + payload.len();
    let mut frame = [0u8; ethernet::HEADER_LEN + MTU];
    let mut off = 0;
    let mut count = 0;
    while off < total {
        let n = chunk.min(total - off);
        let flg_off = (off / 8) as u16 | if off + n < total { MF } else { 0 };
        let repr = Ipv4Repr {
            src: *src.ip(),
            dst: *dst.ip(),
            protocol: PROTO_UDP,
            payload_len: n,
            ident: ip_id,
            flg_off,
        };
        udp::emit_l2_l3(&mut frame, (src_mac, dst_mac), &repr)?;
        // This fragment's bytes of (UDP header ++ payload).
        let body = frame.get_mut(L2_L3..L2_L3 + n)?;
        for (i, b) in body.iter_mut().enumerate() {
            let at = off + i;
            *b = match at.checked_sub(udp::HEADER_LEN) {
                None => header.get(at).copied()?,
                Some(p) => payload.get(p).copied()?,
            };
        }
        out(frame.get(..L2_L3 + n)?);
        off += n;
        count += 1;
    }
    Some(count)
}
