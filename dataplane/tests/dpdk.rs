//! The DPDK wrappers against a real EAL with `--no-huge --no-pci` and vdevs:
//! `net_null0` (rx makes packets, tx swallows them) and `net_pcap0` reading a
//! pcap we write and writing what we send to another. One EAL per process,
//! so one test. Needs `--features dpdk` and root.
#![cfg(feature = "dpdk")]

use sbc_dataplane::dpdk::{self, Burst, Eal, Mempool, Port};

/// A pcap file of `n` 60-byte Ethernet frames, frame i filled with byte i.
fn pcap(n: u8) -> Vec<u8> {
    sbc_dataplane::net::pcap_file((0..n).map(|i| [i; 60]))
}

#[test]
fn eal_ports_bursts_lcores_and_errors() {
    let dir = std::env::temp_dir().join(format!("sbc-dpdk-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rx = dir.join("rx.pcap");
    let tx = dir.join("tx.pcap");
    std::fs::write(&rx, pcap(5)).unwrap();
    let prefix = format!("sbc-dp-{}", std::process::id());
    let pcap_vdev = format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        rx.display(),
        tx.display()
    );
    let eal = Eal::init(&[
        "--no-huge",
        "--no-pci",
        "-m",
        "256",
        "--no-shconf",
        "--file-prefix",
        &prefix,
        "-l",
        "0,1",
        "--vdev",
        "net_null0",
        "--vdev",
        &pcap_vdev,
        "--log-level",
        "*:warning",
    ])
    .unwrap();
    // A second init is refused with a clear error, not a crash.
    let again = Eal::init(&["--no-huge"]).unwrap_err();
    assert_eq!(again.call, "rte_eal_init");

    let pool = Mempool::new(&eal, "dp_test", 4095).unwrap();
    let err = Port::by_name(&eal, "net_nothing9").unwrap_err();
    assert_eq!(err.call, "rte_eth_dev_get_port_by_name");
    assert!(!err.text.is_empty(), "{err}");

    // net_null: a full burst in, our own packet out, counted by the driver.
    let mut null = Port::by_name(&eal, "net_null0").unwrap();
    null.start(1, 256, &pool).unwrap();
    null.set_promiscuous(true).unwrap();
    assert!(null.link().unwrap().up);
    assert_eq!(null.mac().unwrap().len(), 6);
    let mut burst = Burst::default();
    assert_eq!(null.rx_burst(0, &mut burst), dpdk::BURST);
    let mut m = pool.alloc().unwrap();
    m.append(64).unwrap().fill(0xab);
    assert_eq!(m.data(), &[0xab; 64][..]);
    m.data_mut()[0] = 1;
    let mut out = Burst::default();
    out.push(m).unwrap();
    assert_eq!(null.tx_burst(0, &mut out), 1);
    assert!(out.is_empty());
    drop(burst); // back to the pool
    let s = null.stats().unwrap();
    assert_eq!((s.rx_packets, s.tx_packets), (dpdk::BURST as u64, 1));

    // net_pcap: the frames of rx.pcap come in as written; what we send
    // (each frame with its first byte changed in place) lands in tx.pcap.
    let mut cap = Port::by_name(&eal, "net_pcap0").unwrap();
    cap.start(1, 256, &pool).unwrap();
    let mut got = Burst::default();
    for _ in 0..100 {
        cap.rx_burst(0, &mut got);
        if got.len() >= 5 {
            break;
        }
    }
    assert_eq!(got.len(), 5);
    // A look at the burst's frames first leaves them all in it, in order.
    let seen: Vec<Vec<u8>> = got.frames().map(<[u8]>::to_vec).collect();
    assert_eq!(seen, (0..5u8).map(|i| vec![i; 60]).collect::<Vec<_>>());
    assert_eq!(got.len(), 5);
    let mut out = Burst::default();
    for (i, mut m) in got.drain().enumerate() {
        assert_eq!(m.data(), &[i as u8; 60][..]);
        m.data_mut()[0] = 0xee;
        out.push(m).unwrap();
    }
    assert_eq!(cap.tx_burst(0, &mut out), 5);
    drop(cap); // stops the port: the pcap writer flushes
    let written = std::fs::read(&tx).unwrap();
    assert_eq!(written.len(), 24 + 5 * (16 + 60), "5 frames in tx.pcap");
    assert_eq!(written[24 + 16], 0xee);

    // A job on the worker lcore, its return value back.
    assert_eq!(eal.workers(), vec![1]);
    dpdk::launch(&eal, 1, || 42).unwrap();
    assert_eq!(dpdk::wait(&eal, 1), 42);
    drop(null);
    let _ = std::fs::remove_dir_all(&dir);
}
