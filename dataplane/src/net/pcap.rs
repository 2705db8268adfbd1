//! Classic libpcap files (the format `tcpdump -w` writes), for the
//! `net_pcap` vdevs the DPDK tests and the relay benchmark replay.

/// A classic libpcap file (microsecond stamps, Ethernet) holding `frames`:
/// what the `net_pcap` vdevs of the tests and the relay benchmark replay.
pub fn pcap_file<F: AsRef<[u8]>>(frames: impl IntoIterator<Item = F>) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0xa1b2_c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    for v in [0u32, 0, 65_535, 1] {
        f.extend(v.to_le_bytes());
    }
    for fr in frames {
        let fr = fr.as_ref();
        let n = fr.len() as u32;
        f.extend([0u32, 0, n, n].iter().flat_map(|v| v.to_le_bytes()));
        f.extend(fr);
    }
    f
}
