//! HEP v3 (SIP capture toward Homer) on any bytes: decoding never panics,
//! and what decodes encodes to bytes that decode to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sbc_dataplane::net::hep::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some(m) = decode(data) else {
        return;
    };
    if let Some(bytes) = encode(&m) {
        assert_eq!(decode(&bytes).as_ref(), Some(&m), "encode/decode pair");
    }
});
