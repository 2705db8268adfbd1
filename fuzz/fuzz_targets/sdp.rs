//! SDP parse and every rewrite the relay makes of it (addresses and ports,
//! directions, SDES keys), and `a=crypto` values, on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sbc_dataplane::media::sdes::{write_keys, Crypto, LineKeys};
use sbc_dataplane::media::sdp::{rewrite, set_directions, Direction, SdpRepr};
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let _ = Crypto::parse(data);
    let Ok(sdp) = SdpRepr::parse(data) else {
        return;
    };
    let ports: Vec<u16> = (0..sdp.media.len()).map(|i| 20000 + 2 * i as u16).collect();
    if let Ok(out) = rewrite(data, Ipv4Addr::new(203, 0, 113, 50), &ports) {
        let again = SdpRepr::parse(&out).expect("what we write parses");
        assert_eq!(again.media.len(), sdp.media.len());
    }
    let dirs: Vec<Option<Direction>> = sdp
        .media
        .iter()
        .map(|_| Some(Direction::RecvOnly))
        .collect();
    let _ = set_directions(data, &dirs);
    let keys: Vec<LineKeys> = sdp
        .media
        .iter()
        .map(|m| LineKeys {
            proto: Some(m.proto.clone()),
            crypto: m.crypto.clone(),
        })
        .collect();
    let _ = write_keys(data, &keys, false);
    let _ = write_keys(data, &[], true);
});
