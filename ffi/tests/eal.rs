//! The bindings and the shim against a real EAL: `--no-huge --no-pci` with a
//! `net_null` vdev (rx hands out empty packets, tx frees them). One EAL per
//! process, so one test. Runs with `--features dpdk` (as root, like EAL).
#![cfg(feature = "dpdk")]
#![allow(clippy::undocumented_unsafe_blocks)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;

use dpdk_sys as d;

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
    unsafe { CStr::from_ptr(d::rte_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn eal_null_vdev_bursts_and_stats() {
    let prefix = format!("--file-prefix=sbc-ffi-{}", std::process::id());
    let args: Vec<CString> = [
        "sbc-ffi-test",
        "--no-huge",
        "--no-pci",
        "-m",
        "256",
        "--no-shconf",
        prefix.as_str(),
        "--vdev=net_null0",
        "--log-level=*:warning",
    ]
    .iter()
    .map(|a| CString::new(*a).unwrap())
    .collect();
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    let rc = unsafe { d::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    assert!(
        rc >= 0,
        "rte_eal_init: {}",
        strerror(unsafe { d::sbc_rte_errno() })
    );
    assert_eq!(unsafe { d::rte_eth_dev_count_avail() }, 1);

    let name = CString::new("ffi_pool").unwrap();
    let pool = unsafe {
        d::rte_pktmbuf_pool_create(
            name.as_ptr(),
            4095,
            0,
            0,
            d::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
            d::rte_socket_id() as i32,
        )
    };
    assert!(
        !pool.is_null(),
        "mempool: {}",
        strerror(unsafe { d::sbc_rte_errno() })
    );

    let port = 0u16;
    let conf = d::rte_eth_conf::default();
    unsafe {
        assert_eq!(d::rte_eth_dev_configure(port, 1, 1, &conf), 0);
        let socket = d::rte_eth_dev_socket_id(port) as u32;
        assert_eq!(
            d::rte_eth_rx_queue_setup(port, 0, 256, socket, ptr::null(), pool),
            0
        );
        assert_eq!(
            d::rte_eth_tx_queue_setup(port, 0, 256, socket, ptr::null()),
            0
        );
        assert_eq!(d::rte_eth_dev_start(port), 0);
    }

    // Receive a burst (net_null makes packets), write into one, send them all.
    let mut pkts = [ptr::null_mut::<d::rte_mbuf>(); 32];
    let n = unsafe { d::sbc_rx_burst(port, 0, pkts.as_mut_ptr(), 32) };
    assert!(n > 0, "net_null gave no packets");
    let m = unsafe { d::sbc_pktmbuf_alloc(pool) };
    assert!(!m.is_null());
    let data = unsafe { d::sbc_pktmbuf_append(m, 64) };
    assert!(!data.is_null());
    unsafe { ptr::write_bytes(data, 0xab, 64) };
    assert_eq!(unsafe { d::sbc_pktmbuf_data_len(m) }, 64);
    assert_eq!(unsafe { *d::sbc_pktmbuf_mtod(m) }, 0xab);
    let sent = unsafe { d::sbc_tx_burst(port, 0, &mut { m }, 1) };
    assert_eq!(sent, 1);
    let sent = unsafe { d::sbc_tx_burst(port, 0, pkts.as_mut_ptr(), n) };
    for p in &pkts[usize::from(sent)..usize::from(n)] {
        unsafe { d::sbc_pktmbuf_free(*p) };
    }

    let mut stats = d::rte_eth_stats::default();
    assert_eq!(unsafe { d::rte_eth_stats_get(port, &mut stats) }, 0);
    assert_eq!(stats.ipackets, u64::from(n));
    assert_eq!(stats.opackets, 1 + u64::from(sent));
    assert!(unsafe { d::sbc_rdtsc() } > 0);

    unsafe {
        d::rte_eth_dev_stop(port);
        d::rte_eth_dev_close(port);
        d::rte_eal_cleanup();
    }
}
