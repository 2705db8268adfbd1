//! The flood guard with the real `sbc` on loopback: a scanner's
//! User-Agent bans its source at the first message, a source over 16
//! messages in 2 s is banned, neither gets an answer; a provisioned carrier
//! is never limited; an oversized message is dropped; `sbcctl ban list`
//! shows the bans, `ban remove` lifts one; the counters are in /metrics.

mod common;
use common::{loopback_sbc, sbcctl, LoopbackSbc};
use std::net::UdpSocket;
use std::time::Duration;

fn options(me: &str, n: u32, ua: &str, pad: usize) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKf{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:x@{me}>;tag=f{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: flood-{n}@{me}\r\nCSeq: 1 OPTIONS\r\n\
         User-Agent: {ua}\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        "p".repeat(pad)
    )
}

/// Sends `count` OPTIONS from `s` (one every `gap`) and counts the 200s
/// (read as they come: a socket buffer holds fewer than the carrier sends).
fn answered(s: &UdpSocket, to: u16, count: u32, ua: &str, pad: usize, gap: Duration) -> u32 {
    let me = s.local_addr().unwrap().to_string();
    let mut buf = [0u8; 65535];
    let mut got = 0;
    let mut read = |wait: Duration| {
        s.set_read_timeout(Some(wait)).unwrap();
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 200") {
                got += 1;
            }
        }
    };
    for n in 0..count {
        s.send_to(options(&me, n, ua, pad).as_bytes(), ("127.0.0.1", to))
            .unwrap();
        read(gap);
    }
    read(Duration::from_millis(500));
    got
}

#[test]
fn scanners_and_floods_are_banned_carriers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let LoopbackSbc {
        sbc: _sbc,
        private,
        api,
        metrics_port,
        ..
    } = loopback_sbc(dir.path(), (42000, 42100), "", "");
    let (code, _, err) = sbcctl(&api, &["add-carrier", "127.0.0.1", "32", "carrier", "1"]);
    assert_eq!(code, 0, "{err}");
    let fast = Duration::from_millis(5);

    // A scanner: banned at its first message, never answered.
    let scanner = UdpSocket::bind("127.0.0.7:0").unwrap();
    assert_eq!(
        answered(&scanner, private, 3, "friendly-scanner", 0, fast),
        0
    );
    // A flood from a stranger: 16 answered in the window, then nothing.
    let stranger = UdpSocket::bind("127.0.0.8:0").unwrap();
    assert_eq!(answered(&stranger, private, 40, "softphone", 0, fast), 16);
    // The carrier, with the scanner's User-Agent and far more: all answered.
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    let got = answered(
        &carrier,
        private,
        200,
        "sipvicious",
        0,
        Duration::from_millis(1),
    );
    assert_eq!(got, 200);
    // Too large, even from the carrier.
    assert_eq!(answered(&carrier, private, 1, "x", 20_000, fast), 0);

    let (code, out, err) = sbcctl(&api, &["--json", "ban", "list"]);
    assert_eq!(code, 0, "{err}");
    let bans: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list: Vec<(String, String)> = bans
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["ip"].as_str().unwrap().into(),
                b["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        list,
        [
            ("127.0.0.7".into(), "scanner".into()),
            ("127.0.0.8".into(), "flood".into())
        ],
        "{out}"
    );
    assert!(bans[1]["expires_in_s"].as_u64().unwrap() > 290, "{out}");
    assert!(bans[1]["dropped"].as_u64().unwrap() >= 20, "{out}");
    let (_, table, _) = sbcctl(&api, &["ban", "list"]);
    assert!(
        table.starts_with("ip") && table.contains("127.0.0.8"),
        "{table}"
    );
    // Lifted: answered again.
    let (code, _, err) = sbcctl(&api, &["ban", "remove", "127.0.0.8"]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(answered(&stranger, private, 2, "softphone", 0, fast), 2);
    let (code, _, err) = sbcctl(&api, &["ban", "remove", "127.0.0.9"]);
    assert_eq!(code, 1);
    assert!(err.contains("not banned"), "{err}");
    let (code, _, err) = sbcctl(&api, &["ban", "remove", "nonsense"]);
    assert_eq!(code, 1);
    assert!(err.contains("`ip`"), "{err}");

    let text = ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for want in [
        "sbc_sip_dropped_scanner_total 1\n",
        "sbc_sip_dropped_too_large_total 1\n",
        "sbc_sip_bans_total 2\n",
        "sbc_sip_bans_active 1\n",
    ] {
        assert!(text.contains(want), "{want:?} not in /metrics:\n{text}");
    }
}
