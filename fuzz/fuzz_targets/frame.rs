//! What the DPDK poll loop does with a received frame: classify it,
//! reassemble fragments, readdress and resize relayed UDP, read RTP and
//! RTCP, on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sbc_dataplane::media::{rtcp, rtp::RtpPacket};
use sbc_dataplane::net;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let ours = [Ipv4Addr::new(10, 0, 0, 100)];
    let kind = net::classify(data, &ours);
    let mut r = net::Reassembler::new(4, 1000);
    let _ = r.push(data, 0);
    let mut f = data.to_vec();
    let _ = net::readdress(
        &mut f,
        [2; 6],
        [3; 6],
        "10.0.0.100:10000".parse().unwrap(),
        "10.0.1.10:4000".parse().unwrap(),
    );
    if let net::Kind::Udp {
        payload: (off, len),
        ..
    } = kind
    {
        let mut f = data.to_vec();
        f.resize(off + len + 20, 0);
        assert!(net::payload_resized(&mut f, off, len + 10) || len + 10 > 65_000);
        let p = &data[off..off + len];
        let _ = RtpPacket::new_checked(p);
        let _ = rtcp::report(p);
    }
    let _ = rtcp::report(data);
});
