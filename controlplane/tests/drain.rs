//! Drain on SIGTERM with the real `sbc` on loopback (a carrier and a
//! gateway on UDP): new INVITEs and OPTIONS get 503 with Retry-After, the
//! call in progress still ends with its BYE, and the SBC exits once it has;
//! a second SIGTERM exits at once.

mod common;
use common::calls::CallLab;
use common::{answer, header};
use std::time::Duration;

fn lab(drain_s: u64) -> CallLab {
    CallLab::start(
        (41800, 41900),
        &format!("[shutdown]\ndrain_s = {drain_s}\n"),
    )
}

#[test]
fn sigterm_drains_new_calls_refused_the_call_in_progress_ends_then_exit() {
    let mut lab = lab(20);
    let call = lab.call("d1", (43200, 42200));
    lab.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // New calls and probes are refused; nothing reaches the gateway.
    lab.to_sbc(&lab.invite("d2", 43202));
    let (busy, _) = lab.expect(&lab.carrier, "SIP/2.0 503");
    assert!(header(&busy, "Retry-After").is_some(), "{busy}");
    assert!(busy.contains("Call-ID: d2"), "{busy}");
    let me = lab.carrier.local_addr().unwrap();
    lab.to_sbc(&format!(
        "OPTIONS sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo1\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag=o1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        lab.private
    ));
    lab.expect(&lab.carrier, "SIP/2.0 503");
    assert!(
        lab.exited(Duration::from_millis(500)).is_none(),
        "a call is up: still draining"
    );
    // The call in progress ends as usual; then the SBC exits.
    lab.to_sbc(&lab.bye(&call));
    let (bye_gw, sbc) = lab.expect(&lab.gateway, "BYE ");
    lab.gateway
        .send_to(answer(&bye_gw, 200, "", "").as_bytes(), sbc)
        .unwrap();
    lab.expect(&lab.carrier, "SIP/2.0 200");
    let status = lab.exited(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "the SBC did not exit once its last call ended\n{}",
            std::fs::read_to_string(&lab.log).unwrap_or_default()
        )
    });
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut lab = lab(60);
    lab.call("s1", (43200, 42200));
    lab.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(lab.exited(Duration::from_millis(300)).is_none(), "draining");
    lab.signal("TERM");
    let status = lab.exited(Duration::from_secs(3)).expect("exited at once");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&lab.log).unwrap_or_default();
    assert!(log.contains("second signal"), "{log}");
}
