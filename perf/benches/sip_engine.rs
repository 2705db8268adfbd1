//! Signalling cost of the SIP engine, with rsip's parser of the same INVITE
//! as a reference measured in the same run.
//!
//! `cargo bench -p sbc-perf --bench sip_engine`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sbc_dataplane::routing::{Carrier, Gateway, Resolved, RouteSnapshot};
use sbc_dataplane::sip::SipMessage;
use sbc_dataplane::stats::EngineStats;
use sbc_dataplane::{EngineConfig, Outgoing, Side, SipEngine};

const CARRIER: &str = "10.0.1.10:5060";
const GATEWAY: &str = "203.0.113.10:5060";

const INVITE: &str = "INVITE sip:+15551234@10.0.0.100:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@10.0.1.10:5060>\r\n\
To: <sip:+15551234@10.0.0.100:5060>\r\n\
From: \"Alice\" <sip:+15550001@10.0.1.10:5060>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@10.0.1.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO\r\n\
Supported: replaces, timer\r\n\
User-Agent: carrier-switch/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 229\r\n\r\n\
v=0\r\n\
o=- 3848276298 3848276298 IN IP4 10.0.1.10\r\n\
s=-\r\n\
c=IN IP4 10.0.1.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn engine() -> SipEngine {
    let snap = RouteSnapshot {
        version: 1,
        carriers: vec![Carrier {
            id: 1,
            ip: Ipv4Addr::new(10, 0, 1, 10),
            mask: 32,
            name: "c".into(),
            group: 1,
        }],
        gateways: vec![Gateway {
            id: 1,
            destination: "sip:203.0.113.10:5060".into(),
            targets: vec![Resolved::at(SocketAddrV4::new(
                Ipv4Addr::new(203, 0, 113, 10),
                5060,
            ))],
            group: 1,
            priority: 1,
            weight: 1,
            description: String::new(),
            profile: Default::default(),
            auth: None,
            headers: Default::default(),
            transport: Default::default(),
            media_encryption: Default::default(),
        }],
        tenants: vec![],
    };
    let cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    SipEngine::new(cfg, Arc::new(snap), Arc::new(EngineStats::default()))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap()
}

/// An engine with one answered call, and the BYE the gateway sends for it.
fn answered_call() -> (SipEngine, Vec<u8>) {
    let mut e = engine();
    let mut out: Vec<Outgoing> = Vec::new();
    e.handle(0, Side::Private, addr(CARRIER), INVITE.as_bytes(), &mut out);
    let fwd = String::from_utf8(out[1].data.clone()).unwrap();
    let (via, from, to, call_id) = (
        header(&fwd, "Via"),
        header(&fwd, "From"),
        header(&fwd, "To"),
        header(&fwd, "Call-ID"),
    );
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to};tag=gw1\r\nCall-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:lk@203.0.113.10:5060>\r\nContent-Length: 0\r\n\r\n"
    );
    e.handle(1, Side::Public, addr(GATEWAY), ok.as_bytes(), &mut out);
    let bye = format!(
        "BYE sip:sbc@203.0.113.50:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKbye1\r\n\
Max-Forwards: 70\r\nFrom: {to};tag=gw1\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    (e, bye.into_bytes())
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip");
    g.bench_function("parse_invite/ours", |b| {
        b.iter(|| SipMessage::parse(black_box(INVITE.as_bytes())).is_ok())
    });
    g.bench_function("parse_invite/rsip (reference)", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(INVITE.as_bytes())).is_ok())
    });
    g.bench_function("engine_invite (parse, route, rewrite)", |b| {
        b.iter_batched_ref(
            || (engine(), Vec::with_capacity(4)),
            |(e, out)| {
                e.handle(
                    0,
                    Side::Private,
                    addr(CARRIER),
                    black_box(INVITE.as_bytes()),
                    out,
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("engine_bye (in dialog)", |b| {
        b.iter_batched_ref(
            || {
                let (e, bye) = answered_call();
                (e, bye, Vec::with_capacity(4))
            },
            |(e, bye, out)| e.handle(2, Side::Public, addr(GATEWAY), black_box(bye), out),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(sip, benches);
criterion_main!(sip);
