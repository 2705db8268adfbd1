//! Overload with the real `sbc` on loopback (`[dataplane] ring_size = 64`):
//! while two sources flood the private side with OPTIONS faster than the
//! engine takes them, a new INVITE gets 503 with Retry-After (the lane of new
//! requests past its high-water mark), a BYE of a call up still reaches the
//! gateway (the priority lane), and once the flood stops calls are taken again.

mod common;
use common::calls::CallLab;
use common::{answer, header, sbcctl};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flooding sources (127.0.0.2, ...) and the datagrams each sends per millisecond.
const FLOODERS: u8 = 2;
const BURST: u64 = 48;

fn counter(api: &str, group: &str, name: &str) -> u64 {
    let (code, out, err) = sbcctl(api, &["--json", "status"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[group][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{group}.{name} in {v}"))
}

#[test]
fn a_flood_gets_new_calls_503_while_calls_up_go_on() {
    let lab = CallLab::start((42300, 42400), "[dataplane]\nring_size = 64\n");
    // Every loopback address is a carrier: the flood guard lets them all by.
    let (code, _, err) = sbcctl(&lab.api, &["add-carrier", "127.0.0.0", "8", "lo", "1"]);
    assert_eq!(code, 0, "{err}");
    let up = lab.call("ov-up", (43300, 42300));
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (2..2 + FLOODERS)
        .map(|i| {
            let (stop, port) = (stop.clone(), lab.private);
            std::thread::spawn(move || {
                let s = UdpSocket::bind((format!("127.0.0.{i}").as_str(), 0)).unwrap();
                let me = s.local_addr().unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let msg = format!(
                        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKf{n}\r\n\
                         Max-Forwards: 70\r\nFrom: <sip:f@{me}>;tag=f\r\nTo: <sip:127.0.0.1>\r\n\
                         Call-ID: f{i}-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = s.send_to(msg.as_bytes(), ("127.0.0.1", port));
                    n += 1;
                    // Bursts: faster than the engine handles them, slower
                    // than its socket reads, so the kernel's buffer keeps room.
                    if n.is_multiple_of(BURST) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                n
            })
        })
        .collect();
    // New INVITEs until one is refused as overload (each resent until answered).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refused = None;
    let mut n = 0;
    while refused.is_none() && Instant::now() < deadline {
        n += 1;
        let invite = lab.invite(&format!("ov-{n}"), 43302);
        lab.carrier
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let sent = Instant::now();
        let mut buf = [0u8; 4096];
        let mut tries = 0;
        loop {
            if tries % 3 == 0 {
                lab.to_sbc(&invite);
            }
            tries += 1;
            match lab.carrier.recv(&mut buf) {
                Ok(len) => {
                    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                    if !text.contains(&format!("Call-ID: ov-{n}\r\n"))
                        || text.starts_with("SIP/2.0 100")
                    {
                        continue;
                    }
                    if text.starts_with("SIP/2.0 503") {
                        refused = Some((text, sent.elapsed()));
                    }
                    break;
                }
                Err(_) if tries > 30 => break,
                Err(_) => {}
            }
        }
    }
    // A call up is not held back: its BYE (resent as a UA would, every
    // 500 ms: the kernel's socket buffer drops what the flood overflows)
    // crosses during the flood.
    lab.gateway
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut got = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next_send = Instant::now();
    while got.is_none() && Instant::now() < deadline {
        if Instant::now() >= next_send {
            lab.to_sbc(&lab.bye(&up));
            next_send += Duration::from_millis(500);
        }
        // The gateway also gets the INVITEs let through above, resent.
        if let Ok((len, from)) = lab.gateway.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if text.starts_with("BYE ") {
                got = Some((text, from));
            }
        }
    }
    let (bye, sbc) = got.expect("the BYE reached the gateway during the flood");
    lab.gateway
        .send_to(answer(&bye, 200, "", "").as_bytes(), sbc)
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = floods.into_iter().map(|f| f.join().unwrap()).sum();
    let (refusal, after) = refused.unwrap_or_else(|| {
        panic!(
            "no INVITE was refused for overload in 15 s ({sent} OPTIONS sent)\n{}",
            std::fs::read_to_string(&lab.log).unwrap_or_default()
        )
    });
    assert!(header(&refusal, "Retry-After").is_some(), "{refusal}");
    eprintln!("{sent} OPTIONS sent; INVITE {n} refused 503 {after:?} after it was sent");
    assert!(counter(&lab.api, "sip", "overload_refused") >= 1);
    assert!(counter(&lab.api, "sip", "overloads") >= 1);
    // The flood is over: within 10 s a new call is taken again.
    lab.carrier
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        n += 1;
        lab.to_sbc(&lab.invite(&format!("ov-{n}"), 43304));
        let (reply, _) = lab.expect(&lab.carrier, "SIP/2.0 ");
        if reply.starts_with("SIP/2.0 100") {
            let (inv, _) = lab.expect(&lab.gateway, "INVITE ");
            assert!(inv.contains("m=audio"), "{inv}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refusing after 10 s: {reply}"
        );
    }
}
