//! The DPDK relay ceiling: RTP packets per second through our poll loop on
//! one lcore. A `net_pcap` port replays a capture of `--flows` RTP flows
//! forever (`infinite_rx=1`) into the relay, which has a session for every
//! flow installed; a `net_null` port takes the output. `perf/dpdk_relay.py`
//! runs it next to `dpdk-testpmd` io forwarding on the same vdevs.
//!
//! `dpdk_relay write-pcap --flows N PATH`   the capture (N packets, one per flow, in a shuffled order)
//! `dpdk_relay run --flows N --pcap PATH --seconds S`   the measurement, one JSON line

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sbc_dataplane::backend::dpdk::{bench_relay, BenchSide};
use sbc_dataplane::dpdk::{Eal, Mempool, Port};
use sbc_dataplane::media::relay::{End, RelayTable, Stream};
use sbc_dataplane::net;
use sbc_dataplane::{BySide, Side};
use serde_json::json;

/// RTP sessions per SBC address (even ports of 10000..60000).
const PER_LANE: u32 = 25_000;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 2, 10];
/// The capture's frames come from this MAC to [`SBC_PRIVATE_MAC`], which
/// `run` gives the private side in place of the `net_pcap` port's own: the
/// poll loop drops frames addressed to other hosts (promiscuous ports see
/// them), and net_pcap cannot change its MAC.
const CARRIER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const SBC_PRIVATE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    WritePcap {
        #[arg(long)]
        flows: u32,
        path: String,
    },
    Run {
        #[arg(long)]
        flows: u32,
        #[arg(long)]
        pcap: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// EAL memory in MiB (no hugepages).
        #[arg(long, default_value_t = 2048)]
        mem: u32,
    },
}

/// Flow i: carrier 10.0.(1 + i / 60000).(i % 250 + 1) port 40000 + i % 20000 to
/// SBC lane i / 25000 (10.0.0.100 + lane) port 10000 + 2 * (i % 25000).
fn flow(i: u32) -> (SocketAddrV4, u8, u16) {
    let src = SocketAddrV4::new(
        Ipv4Addr::new(10, 0, 1 + (i / 60_000) as u8, (i % 250 + 1) as u8),
        40_000 + (i % 20_000) as u16,
    );
    (
        (src),
        (i / PER_LANE) as u8,
        10_000 + 2 * (i % PER_LANE) as u16,
    )
}

fn lane_ip(side: Side, lane: u8) -> Ipv4Addr {
    let first = BySide::new([10, 0, 0, 100], [203, 0, 113, 50])[side];
    let [a, b, c, d] = first;
    Ipv4Addr::new(a, b, c, d + lane)
}

fn write_pcap(flows: u32, path: &str) -> anyhow::Result<()> {
    let mut frames = Vec::with_capacity(flows as usize);
    let mut frame = vec![0u8; 2048];
    let mut payload = [0u8; 172];
    payload[0] = 0x80;
    payload[1] = 8;
    for i in 0..flows {
        let (src, lane, port) = flow(i);
        payload[8..12].copy_from_slice(&i.to_be_bytes());
        let dst = SocketAddrV4::new(lane_ip(Side::Private, lane), port);
        let n = net::build_udp(
            &mut frame,
            CARRIER_MAC,
            SBC_PRIVATE_MAC,
            src,
            dst,
            &payload,
            0,
        )
        .context("building a frame")?;
        frames.push(frame[..n].to_vec());
    }
    // Flows arrive interleaved in no order, as calls' packets do: a capture
    // in flow order would walk the session table sequentially, which the
    // CPU's stride prefetcher hides (a fixed seed keeps runs comparable).
    let mut seed = 0x5bc_u64;
    for i in (1..frames.len()).rev() {
        let j = (sbc_dataplane::rng::next(&mut seed) % (i as u64 + 1)) as usize;
        frames.swap(i, j);
    }
    std::fs::write(path, net::pcap_file(&frames)).with_context(|| format!("writing {path}"))?;
    Ok(())
}

fn run(flows: u32, pcap: &str, seconds: f64, mem: u32) -> anyhow::Result<()> {
    if flows == 0 || flows > 8 * PER_LANE {
        bail!("--flows must be 1..={}", 8 * PER_LANE);
    }
    let lanes = flows.div_ceil(PER_LANE) as u8;
    let eal = Eal::init(&[
        "--no-huge".to_string(),
        "--no-pci".into(),
        "-m".into(),
        mem.to_string(),
        "--no-shconf".into(),
        format!("--file-prefix=relaybench-{}", std::process::id()),
        "-l".into(),
        "0".into(),
        format!("--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1"),
        "--vdev=net_null0,no-rx=1".into(),
        "--log-level=*:warning".into(),
    ])?;
    let pool = Mempool::new(&eal, "relaybench", flows + 16_384)?;
    let mut ports = BySide::new(Port::by_id(&eal, 0)?, Port::by_id(&eal, 1)?);
    for (_, p) in ports.iter_mut() {
        p.start(1, 1024, &pool)?;
    }
    let streams: Vec<Stream> = (0..flows)
        .map(|i| {
            let (src, lane, port) = flow(i);
            Stream {
                ends: [
                    End::on_lane(Side::Private, lane, port, Some(src)),
                    End::on_lane(
                        Side::Public,
                        lane,
                        port,
                        Some(SocketAddrV4::new(GATEWAY, 30_000)),
                    ),
                ],
                rtcp: false,
                last_active: 0,
            }
        })
        .collect();
    let sides = BySide::from_fn(|side| BenchSide {
        mac: (side == Side::Private).then_some(SBC_PRIVATE_MAC),
        ips: (0..lanes).map(|l| lane_ip(side, l)).collect(),
        prefix: if side == Side::Private { 16 } else { 24 },
        neighbours: vec![(GATEWAY, GATEWAY_MAC)],
    });
    let table_bytes =
        flows as usize * RelayTable::STREAM_BYTES + 2 * usize::from(lanes) * 50_001 * 4;
    let r = bench_relay(
        ports,
        pool,
        sides,
        lanes,
        (10_000, 60_000),
        streams,
        seconds,
    );
    let relay_reasons = ["unknown_port", "wrong_source", "no_destination", "srtp"];
    let mut drops = serde_json::Map::new();
    for (i, n) in r.dropped.iter().enumerate() {
        let name = ["truncated", "not_for_us", "bad_checksum", "unsupported"]
            .get(i)
            .copied()
            .unwrap_or("other");
        drops.insert(name.into(), json!(n));
    }
    for (name, n) in relay_reasons.iter().zip(r.relay_drops) {
        drops.insert((*name).into(), json!(n));
    }
    drops.insert("arp_unresolved".into(), json!(r.arp_unresolved));
    drops.insert("tx_errors".into(), json!(r.tx_errors));
    println!(
        "{}",
        json!({
            "drops": drops.clone(),
            "flows": flows,
            "seconds": r.seconds,
            "received": r.received,
            "sent": r.sent,
            "relayed": r.relayed,
            "mpps": r.sent as f64 / r.seconds / 1e6,
            "ns_per_packet": r.seconds * 1e9 / r.sent.max(1) as f64,
            "busy_share": r.busy_polls as f64 / r.polls.max(1) as f64,
            "latency_ns": r.latency_ns.iter().map(|(q, ns)| json!([q, ns])).collect::<Vec<_>>(),
            "table_mib": table_bytes as f64 / (1 << 20) as f64,
        })
    );
    drop(eal);
    // Every frame received must leave relayed: anything less means the
    // figure measures drops, not the relay.
    if r.received == 0 || r.relayed != r.received || r.sent != r.received {
        bail!(
            "relayed {} and sent {} of {} received frames; drops: {}",
            r.relayed,
            r.sent,
            r.received,
            serde_json::Value::Object(drops)
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::WritePcap { flows, path } => write_pcap(flows, &path),
        Cmd::Run {
            flows,
            pcap,
            seconds,
            mem,
        } => run(flows, &pcap, seconds, mem),
    }
}
