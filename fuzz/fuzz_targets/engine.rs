//! The whole SIP engine on any sequence of messages, both sides, at any
//! times: input is split at `\0\0` into messages, each led by one byte that
//! picks the side and the milliseconds to advance.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sbc_dataplane::engine::MediaSettings;
use sbc_dataplane::routing::{Carrier, Gateway};
use sbc_dataplane::stats::EngineStats;
use sbc_dataplane::{BySide, EngineConfig, RouteSnapshot, Side, SipEngine};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, OnceLock};

/// One set of counters for every input (their rings, allocated once, only
/// fill up and count their drops).
static STATS: OnceLock<Arc<EngineStats>> = OnceLock::new();

fn snapshot() -> RouteSnapshot {
    RouteSnapshot {
        version: 1,
        carriers: vec![Carrier {
            id: 1,
            ip: Ipv4Addr::new(10, 0, 1, 0),
            mask: 24,
            name: "c".into(),
            group: 1,
        }],
        gateways: vec![Gateway::at(
            1,
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5060),
            1,
        )],
        tenants: vec![],
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.media = Some(MediaSettings {
        ip: BySide::new(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(203, 0, 113, 50)),
        ports: BySide::new((10000, 10100), (20000, 20100)),
        timeout: 60_000,
        hold_timeout: None,
        max_sessions: None,
    });
    cfg.srtp = true;
    let stats = STATS
        .get_or_init(|| Arc::new(EngineStats::default()))
        .clone();
    let mut e = SipEngine::new(cfg, Arc::new(snapshot()), stats);
    let mut out = Vec::new();
    let mut now = 0u64;
    for chunk in data.split(|&b| b == 0).filter(|c| !c.is_empty()) {
        let (lead, msg) = (chunk[0], &chunk[1..]);
        now += u64::from(lead >> 1) * 97;
        let (side, src) = if lead & 1 == 0 {
            (Side::Private, SocketAddr::from(([10, 0, 1, 10], 5060)))
        } else {
            (Side::Public, SocketAddr::from(([203, 0, 113, 10], 5060)))
        };
        e.handle(now, side, src, msg, &mut out);
        e.tick(now, &mut out);
        out.clear();
    }
    e.tick(now + 64_000, &mut out);
});
