//! The SIP scanner and the flood guard's look at a message, on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sbc_dataplane::guard::{Guard, GuardConfig};
use sbc_dataplane::sip::SipMessage;
use sbc_dataplane::Side;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SipMessage::parse(data) {
        assert!(m.body.len() <= data.len());
        for h in &m.headers {
            let _ = h.value.len();
        }
    }
    let mut g = Guard::new(GuardConfig::default());
    let _ = g.check(Side::Private, Ipv4Addr::new(192, 0, 2, 1), data, 0);
});
