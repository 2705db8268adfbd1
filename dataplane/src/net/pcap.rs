//! Classic libpcap files (the format `tcpdump -w` writes): for the
//! `net_pcap` vdevs the DPDK tests and the relay benchmark replay, and for
//! the SIP capture the control plane serves (`sbcctl capture`), which
//! tshark, Wireshark and sngrep open.

use std::net::SocketAddrV4;

use super::{ethernet, ipv4, udp};

/// A classic libpcap file (microsecond stamps, Ethernet) holding `frames`:
/// what the `net_pcap` vdevs of the tests and the relay benchmark replay.
pub fn pcap_file<F: AsRef<[u8]>>(frames: impl IntoIterator<Item = F>) -> Vec<u8> {
    pcap_records(frames.into_iter().map(|f| (0, f)))
}

/// A classic libpcap file of Ethernet `records`, each with its time in
/// microseconds since the Unix epoch.
pub fn pcap_records<F: AsRef<[u8]>>(records: impl IntoIterator<Item = (u64, F)>) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0xa1b2_c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    for v in [0u32, 0, 65_535, 1] {
        f.extend(v.to_le_bytes());
    }
    for (ts_us, fr) in records {
        let fr = fr.as_ref();
        let n = fr.len() as u32;
        let (secs, us) = ((ts_us / 1_000_000) as u32, (ts_us % 1_000_000) as u32);
        f.extend([secs, us, n, n].iter().flat_map(|v| v.to_le_bytes()));
        f.extend(fr);
    }
    f
}

/// An Ethernet frame (zero MAC addresses, EtherType IPv4) carrying
/// `payload` in one UDP datagram from `src` to `dst`, its IPv4 header from
/// [`ipv4::emit_header`] and UDP header from [`udp::emit_header`]; `None`
/// when it would exceed an IPv4 packet's 65,535 bytes.
pub fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Option<Vec<u8>> {
    let udp_header = udp::emit_header(src, dst, payload)?;
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN];
    if let Some(t) = frame.get_mut(12..14) {
        t.copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
    }
    let repr = ipv4::Ipv4Repr {
        src: *src.ip(),
        dst: *dst.ip(),
        protocol: ipv4::PROTO_UDP,
        payload_len: 8 + payload.len(),
        ident: 0,
        flg_off: 0,
    };
    ipv4::emit_header(frame.get_mut(ethernet::HEADER_LEN..)?, &repr)?;
    frame.extend_from_slice(&udp_header);
    frame.extend_from_slice(payload);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_frame_parses_back_with_its_addresses_and_checksums() {
        let (src, dst) = (
            "10.0.1.10:5060".parse().unwrap(),
            "10.0.0.100:5060".parse().unwrap(),
        );
        let frame = udp_frame(src, dst, b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
        let eth = ethernet::EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = ipv4::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (*src.ip(), *dst.ip()));
        let u = udp::UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum(*src.ip(), *dst.ip()));
        assert_eq!(u.payload(), b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        let file = pcap_records([(1_700_000_000_123_456u64, &frame)]);
        assert_eq!(&file[24..28], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&file[28..32], &123_456u32.to_le_bytes());
    }
}
