//! Signalling cost of the SIP engine, with rsip's parser of the same INVITE
//! as a reference measured in the same run.
//!
//! `cargo bench -p sbc-perf --bench sip_engine`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sbc_dataplane::sip::SipMessage;
use sbc_dataplane::{Outgoing, Side, SipEngine};
use sbc_perf::fixtures::{self, addr, CARRIER, GATEWAY, INVITE};
use std::hint::black_box;

fn engine() -> SipEngine {
    fixtures::engine(false)
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    fixtures::header(msg, name).unwrap()
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
