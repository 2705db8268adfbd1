//! The RFC 4475 torture messages through the engine, each with the verdict
//! a proxy owes it.

use super::*;

/// RFC 4475 verdicts, straight through the engine.
#[test]
fn rfc4475_torture_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/rfc4475");
    let Ok(expected) = std::fs::read_to_string(dir.join("EXPECTED.tsv")) else {
        panic!("RFC 4475 corpus not found at {}", dir.display());
    };
    let mut failures = Vec::new();
    for row in expected.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, verdict) = (cols[0], cols[3]);
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let mut peers = Peers::new();
        peers.out.clear();
        peers
            .engine
            .handle(0, Side::Private, addr(CARRIER), &bytes, &mut peers.out);
        let replies: Vec<u16> = peers
            .out
            .iter()
            .filter(|o| o.dst == addr(CARRIER) && o.data.starts_with(b"SIP/2.0 "))
            .map(|o| status(&String::from_utf8_lossy(&o.data)))
            .collect();
        let ok = match verdict {
            "accept" => !replies.contains(&400),
            "drop" => peers.out.is_empty(),
            v => {
                let code: u16 = v.trim_start_matches("reject-").parse().unwrap();
                replies.first() == Some(&code)
            }
        };
        if !ok {
            failures.push(format!("{file}: expected {verdict}, got {replies:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
