//! Restart without losing what was acknowledged, with the real `sbc` on
//! loopback: after `kill -9` and a start on the same config, answered calls
//! come back from the call journal (media relayed both ways again, the
//! carrier's BYE still reaches the gateway on its leg's Call-ID) and
//! provisioning that was answered 201 is still there.

mod common;
use common::calls::{Call, CallLab};
use common::{answer, header, sbcctl};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// One side's media socket (127.0.0.1, any port).
fn media_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// An RTP packet (version 2, PCMU) with sequence number `seq` and `tag` as payload.
fn rtp(seq: u16, tag: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(tag);
    p
}

/// Sends RTP from `from` to `to` every 20 ms until `at` receives a packet
/// with `tag`; how long that took, or `None` after `limit`.
fn relayed(
    from: &UdpSocket,
    to: SocketAddr,
    at: &UdpSocket,
    tag: &[u8],
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut seq = 0u16;
    while start.elapsed() < limit {
        from.send_to(&rtp(seq, tag), to).unwrap();
        seq = seq.wrapping_add(1);
        while let Ok(n) = at.recv(&mut buf) {
            if buf[..n].ends_with(tag) {
                return Some(start.elapsed());
            }
        }
    }
    None
}

fn status(api: &str) -> serde_json::Value {
    let (code, out, err) = sbcctl(api, &["--json", "status"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn kill_9_then_restart_puts_answered_calls_back() {
    let mut lab = CallLab::start((41900, 42000), "");
    let sockets: Vec<(UdpSocket, UdpSocket)> =
        (0..3).map(|_| (media_socket(), media_socket())).collect();
    let calls: Vec<Call> = sockets
        .iter()
        .enumerate()
        .map(|(i, (c, g))| {
            let ports = (
                c.local_addr().unwrap().port(),
                g.local_addr().unwrap().port(),
            );
            lab.call(&format!("k9-{i}"), ports)
        })
        .collect();
    let limit = Duration::from_secs(2);
    for ((c, g), call) in sockets.iter().zip(&calls) {
        assert!(
            relayed(c, call.media.0, g, b"before", limit).is_some(),
            "media before the crash"
        );
    }
    // The journal's writer flushes every 50 ms.
    std::thread::sleep(Duration::from_millis(300));
    lab.signal("KILL");
    lab.exited(Duration::from_secs(5)).expect("killed");
    let restarted = Instant::now();
    lab.restart();
    for ((c, g), call) in sockets.iter().zip(&calls) {
        let there = relayed(c, call.media.0, g, b"after-c", limit);
        let back = relayed(g, call.media.1, c, b"after-g", limit);
        let log = std::fs::read_to_string(&lab.log).unwrap_or_default();
        assert!(
            there.is_some() && back.is_some(),
            "{}: media after the restart\n{log}",
            call.call_id
        );
    }
    eprintln!(
        "media of 3 calls relayed both ways {:?} after the new process started",
        restarted.elapsed()
    );
    let st = status(&lab.api);
    assert_eq!(st["sip"]["calls_restored"], 3, "{st}");
    assert_eq!(st["sip"]["restore_failed"], 0, "{st}");
    // The carrier's BYE reaches the gateway with the gateway leg's Call-ID.
    let first = &calls[0];
    lab.to_sbc(&lab.bye(first));
    let (bye, sbc) = lab.expect(&lab.gateway, "BYE ");
    assert_eq!(
        header(&bye, "Call-ID"),
        header(&first.invite, "Call-ID"),
        "{bye}"
    );
    lab.gateway
        .send_to(answer(&bye, 200, "", "").as_bytes(), sbc)
        .unwrap();
    lab.expect(&lab.carrier, "SIP/2.0 200");
    // A new call gets its own number and ports; the rest stay up.
    let (c, g) = (media_socket(), media_socket());
    let new = lab.call(
        "k9-new",
        (
            c.local_addr().unwrap().port(),
            g.local_addr().unwrap().port(),
        ),
    );
    assert!(relayed(&c, new.media.0, &g, b"new", limit).is_some());
    let st = status(&lab.api);
    assert_eq!(
        st["sip"]["dialogs"], 3,
        "two restored and the new one: {st}"
    );
}

#[test]
fn acknowledged_provisioning_survives_kill_9() {
    let mut lab = CallLab::start((42000, 42100), "");
    let (code, _, err) = sbcctl(
        &lab.api,
        &["add-gateway", "2", "sip:127.0.0.1:5999", "kept", "1", "1"],
    );
    assert_eq!(code, 0, "{err}");
    // Killed the moment the answer arrived.
    lab.signal("KILL");
    lab.exited(Duration::from_secs(5)).expect("killed");
    lab.restart();
    let (code, out, err) = sbcctl(&lab.api, &["list-gateways"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sip:127.0.0.1:5999"), "{out}");
}
