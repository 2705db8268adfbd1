//! `callmem`: the memory a held call costs in the SIP engine and the media
//! relay's table, counted by a global allocator, and what each structure
//! takes.
//!
//! `cargo run --release -p sbc-perf --bin callmem -- --calls 100000`
//!
//! N calls are set up through a real [`SipEngine`] with media anchoring on
//! (INVITE with an SDP offer from the carrier, 200 with an answer from the
//! gateway, ACK), the streams the engine asks for installed in a
//! [`RelayTable`] as the relay threads do, and the journal images taken as the
//! engine thread does. Live heap bytes are read before the calls, with every
//! call answered (their INVITE transactions still kept), and after 40 s of
//! engine time (the transactions gone: RFC 6026's 32 s): the last is a held
//! call's cost. Prints one JSON object.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use anyhow::{bail, Context};
use clap::Parser;
use sbc_dataplane::engine::JournalOp;
use sbc_dataplane::media::{MediaCmd, RelayTable};
use sbc_dataplane::{Outgoing, Side};
use sbc_perf::fixtures::{self, addr, header, CARRIER, GATEWAY};
use serde_json::json;

/// Bytes allocated and not yet freed, by everything in the process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as GlobalAlloc::alloc's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as GlobalAlloc::dealloc's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as GlobalAlloc::realloc's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[derive(Debug, Parser)]
#[command(about = "Memory per held call in the SIP engine and relay table (perf/README.md)")]
struct Cli {
    /// Calls to set up and hold (at most 200,000: the port range holds 25,000 per lane).
    #[arg(long, default_value_t = 20_000)]
    calls: u32,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.calls == 0 || cli.calls > 24_000 {
        bail!("--calls: 1 to 24,000 (the default port range holds 25,000 calls, two ports a side each)");
    }
    let (min, max) = fixtures::media().port_span();
    let before_all = live();
    let mut engine = fixtures::engine(true);
    let mut relay = RelayTable::new(min, max);
    let empty = live();
    let mut out: Vec<Outgoing> = Vec::with_capacity(8);
    let mut cmds: Vec<MediaCmd> = Vec::new();
    let mut journal: Vec<JournalOp> = Vec::new();
    let (mut image_bytes, mut images, mut streams) = (0usize, 0usize, 0usize);
    let (carrier, gateway) = (addr(CARRIER), addr(GATEWAY));
    let mut now = 1_000;
    for i in 0..cli.calls {
        now += 1;
        out.clear();
        engine.handle(
            now,
            Side::Private,
            carrier,
            fixtures::invite(i).as_bytes(),
            &mut out,
        );
        let fwd = out
            .iter()
            .find(|o| o.dst == gateway)
            .map(|o| String::from_utf8_lossy(&o.data).into_owned())
            .with_context(|| format!("call {i}: no INVITE to the gateway"))?;
        let h = |name| header(&fwd, name).with_context(|| format!("call {i}: no {name}"));
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n\
m=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            20_000 + 2 * (i % 20_000)
        );
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=gw{i}\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:lk@203.0.113.10:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            h("Via")?,
            h("From")?,
            h("To")?,
            h("Call-ID")?,
            body.len()
        );
        out.clear();
        engine.handle(now, Side::Public, gateway, ok.as_bytes(), &mut out);
        let answer = out
            .iter()
            .find(|o| o.dst == carrier && o.data.starts_with(b"SIP/2.0 200"))
            .map(|o| String::from_utf8_lossy(&o.data).into_owned())
            .with_context(|| format!("call {i}: no 200 to the carrier"))?;
        let to = header(&answer, "To").context("200 without To")?;
        let contact = header(&answer, "Contact").context("200 without Contact")?;
        let target = contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default();
        let inv = fixtures::invite(i);
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK-ack-{i}\r\nMax-Forwards: 70\r\n\
From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            header(&inv, "From").context("From")?,
            header(&inv, "Call-ID").context("Call-ID")?,
        );
        out.clear();
        engine.handle(now, Side::Private, carrier, ack.as_bytes(), &mut out);
        engine.take_media_commands(&mut cmds);
        for c in cmds.drain(..) {
            if matches!(c, MediaCmd::Install(_)) {
                streams += 1;
            }
            let _ = relay.apply(c, |_| {});
        }
        engine.take_journal(&mut journal);
        for op in journal.drain(..) {
            if let JournalOp::Up(image) = op {
                image_bytes += image.to_bytes().len();
                images += 1;
            }
        }
    }
    out = Vec::with_capacity(8);
    let answered = live();
    let calls_up = engine.active_calls().len();
    if calls_up != cli.calls as usize {
        bail!("{calls_up} calls up of {}", cli.calls);
    }
    // 40 s later: the answered INVITEs' transactions are gone (RFC 6026
    // Timer L/M, 64·T1 = 32 s), the dialogs and streams stay.
    now += 40_000;
    engine.tick(now, &mut out);
    engine.take_journal(&mut journal);
    journal.clear();
    journal.shrink_to_fit();
    out = Vec::new();
    let held = live();
    let left = engine.active_calls().len();
    if left != cli.calls as usize {
        bail!("calls ended during the hold: {left} left");
    }
    let n = f64::from(cli.calls);
    println!(
        "{}",
        json!({
            "calls": cli.calls,
            "engine_and_table_empty_bytes": empty - before_all,
            "per_call_answered_bytes": (answered - empty) as f64 / n,
            "per_call_held_bytes": (held - empty) as f64 / n,
            "held_total_mib": (held - before_all) as f64 / (1u64 << 20) as f64,
            "streams_per_call": streams as f64 / n,
            "relay_streams": relay.len(),
            "size_of": {
                "Stream slot (Option<Stream>)": std::mem::size_of::<Option<sbc_dataplane::media::Stream>>(),
            },
            "journal_image_bytes_mean": image_bytes as f64 / images.max(1) as f64,
        })
    );
    drop(out);
    Ok(())
}
