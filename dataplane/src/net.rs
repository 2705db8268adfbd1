//! L2/L3 for the DPDK backend, over frame bytes: Ethernet, ARP, IPv4, UDP and
//! ICMP echo, with checksums. Pure code (no DPDK here), so every rule is
//! unit-tested on byte arrays; the poll loop applies it to mbufs in place.
//!
//! - [`classify`] says what a received frame is, checking lengths, IPv4
//!   header checksum, version, and that it is for us.
//! - ARP requests for our address are answered in place ([`arp_reply`]);
//!   replies and requests teach the [`ArpCache`]; [`arp_request`] asks for a
//!   next hop.
//! - ICMP echo requests are answered in place ([`icmp_echo_reply`]).
//! - Relayed RTP is readdressed in place ([`readdress`]): MACs, IPs, ports,
//!   IPv4 checksum recomputed, UDP checksum updated incrementally (RFC 1624),
//!   the payload never touched.
//! - SIP leaves through [`build_udp`].

// Each function first takes the sub-slice of exactly the length it works on
// (`get_mut(..n)?`, after checking header lengths), so the fixed offsets
// inside it cannot be out of bounds: indexing reads as the RFC diagrams do.
#![allow(clippy::indexing_slicing)]

use std::net::{Ipv4Addr, SocketAddrV4};

pub type Mac = [u8; 6];

pub const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_UDP: u8 = 17;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Ethernet + IPv4 (no options) + UDP.
pub const UDP_HEADERS: usize = ETH_LEN + IP_LEN + UDP_LEN;
pub const BROADCAST: Mac = [0xff; 6];

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ARP packet (`request`: op 1) from `sender` asking for/telling `target`.
    Arp {
        request: bool,
        sender_mac: Mac,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    },
    /// A UDP datagram for us; the payload is at `payload` (offset, length).
    Udp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        src_mac: Mac,
        payload: (usize, usize),
    },
    /// An ICMP echo request for us.
    EchoRequest,
    /// A fragment of an IPv4 datagram for us (we do not reassemble yet).
    Fragment,
    /// Dropped, with the reason.
    Drop(Reason),
}

/// Why a frame is not handled; indexes the per-port drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Truncated = 0,
    NotForUs = 1,
    BadChecksum = 2,
    Unsupported = 3,
}

pub const REASONS: usize = 4;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(s))
}

fn mac_at(b: &[u8], at: usize) -> Option<Mac> {
    b.get(at..at + 6)?.try_into().ok()
}

/// One's-complement sum of `data` (odd length padded), folded not inverted.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The IPv4 header checksum of `hdr` (its checksum field counted as is).
fn ip_checksum(hdr: &[u8]) -> u16 {
    !fold(sum(0, hdr))
}

/// What `frame` is, for a port whose addresses are `ours`.
pub fn classify(frame: &[u8], ours: &[Ipv4Addr]) -> Kind {
    let Some(ethertype) = u16_at(frame, 12) else {
        return Kind::Drop(Reason::Truncated);
    };
    match ethertype {
        ETHERTYPE_ARP => classify_arp(frame).unwrap_or(Kind::Drop(Reason::Truncated)),
        ETHERTYPE_IPV4 => classify_ipv4(frame, ours).unwrap_or(Kind::Drop(Reason::Truncated)),
        _ => Kind::Drop(Reason::Unsupported),
    }
}

fn classify_arp(f: &[u8]) -> Option<Kind> {
    let a = ETH_LEN;
    // Ethernet/IPv4 ARP only.
    if u16_at(f, a)? != 1 || u16_at(f, a + 2)? != ETHERTYPE_IPV4 || f.get(a + 4..a + 6)? != [6, 4] {
        return Some(Kind::Drop(Reason::Unsupported));
    }
    let op = u16_at(f, a + 6)?;
    if op != 1 && op != 2 {
        return Some(Kind::Drop(Reason::Unsupported));
    }
    Some(Kind::Arp {
        request: op == 1,
        sender_mac: mac_at(f, a + 8)?,
        sender_ip: ip_at(f, a + 14)?,
        target_ip: ip_at(f, a + 24)?,
    })
}

fn classify_ipv4(f: &[u8], ours: &[Ipv4Addr]) -> Option<Kind> {
    let ip = f.get(ETH_LEN..)?;
    let vihl = *ip.first()?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < IP_LEN {
        return Some(Kind::Drop(Reason::Unsupported));
    }
    let total = usize::from(u16_at(ip, 2)?);
    if total < ihl || ip.len() < total {
        return Some(Kind::Drop(Reason::Truncated));
    }
    if ip_checksum(ip.get(..ihl)?) != 0 {
        return Some(Kind::Drop(Reason::BadChecksum));
    }
    let to = ip_at(ip, 16)?;
    if !ours.contains(&to) {
        return Some(Kind::Drop(Reason::NotForUs));
    }
    let frag = u16_at(ip, 6)?;
    if frag & 0x3fff != 0 {
        // More fragments, or an offset: part of a larger datagram.
        return Some(Kind::Fragment);
    }
    let body = ip.get(ihl..total)?;
    match *ip.get(9)? {
        IPPROTO_UDP => {
            let len = usize::from(u16_at(body, 4)?);
            if len < UDP_LEN || len > body.len() {
                return Some(Kind::Drop(Reason::Truncated));
            }
            let src = SocketAddrV4::new(ip_at(ip, 12)?, u16_at(body, 0)?);
            let dst = SocketAddrV4::new(to, u16_at(body, 2)?);
            let off = ETH_LEN + ihl + UDP_LEN;
            // The UDP checksum is left to `udp_checksum_ok`: relayed RTP does
            // not need it (see there).
            Some(Kind::Udp {
                src,
                dst,
                src_mac: mac_at(f, 6)?,
                payload: (off, len - UDP_LEN),
            })
        }
        IPPROTO_ICMP if body.first() == Some(&8) => {
            if !fold(sum(0, body)) != 0 {
                return Some(Kind::Drop(Reason::BadChecksum));
            }
            Some(Kind::EchoRequest)
        }
        _ => Some(Kind::Drop(Reason::Unsupported)),
    }
}

/// Whether a UDP frame [`classify`] accepted has a right (or no) UDP
/// checksum. Only what we consume (SIP) is checked: relayed RTP is not, since
/// [`readdress`] updates its checksum incrementally and so keeps a wrong one
/// wrong for the receiver to drop, without reading the payload here.
pub fn udp_checksum_ok(frame: &[u8]) -> bool {
    let check = || -> Option<bool> {
        let ip = frame.get(ETH_LEN..)?;
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        let udp = ip.get(ihl..)?;
        let len = usize::from(u16_at(udp, 4)?);
        if u16_at(udp, 6)? == 0 {
            return Some(true);
        }
        Some(udp_checksum(ip_at(ip, 12)?, ip_at(ip, 16)?, udp.get(..len)?) == 0)
    };
    check().unwrap_or(false)
}

/// The UDP checksum over the pseudo-header and `udp` (header and payload);
/// 0 means the datagram checks (when computed over a filled-in checksum).
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc += u32::from(IPPROTO_UDP) + udp.len() as u32;
    !fold(sum(acc, udp))
}

/// Turns an ARP request for `our_ip` into our reply, in place.
pub fn arp_reply(frame: &mut [u8], our_mac: Mac, our_ip: Ipv4Addr) -> bool {
    let Some(Kind::Arp {
        request: true,
        sender_mac,
        sender_ip,
        target_ip,
    }) = classify_arp(frame)
    else {
        return false;
    };
    if target_ip != our_ip {
        return false;
    }
    let a = ETH_LEN;
    let Some(f) = frame.get_mut(..a + 28) else {
        return false;
    };
    f[0..6].copy_from_slice(&sender_mac);
    f[6..12].copy_from_slice(&our_mac);
    f[a + 6..a + 8].copy_from_slice(&2u16.to_be_bytes());
    f[a + 8..a + 14].copy_from_slice(&our_mac);
    f[a + 14..a + 18].copy_from_slice(&our_ip.octets());
    f[a + 18..a + 24].copy_from_slice(&sender_mac);
    f[a + 24..a + 28].copy_from_slice(&sender_ip.octets());
    true
}

/// Writes an ARP request for `target` into `buf`; the frame length.
pub fn arp_request(
    buf: &mut [u8],
    our_mac: Mac,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Option<usize> {
    let f = buf.get_mut(..60)?;
    f.fill(0);
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&our_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = ETH_LEN;
    f[a..a + 8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[a + 8..a + 14].copy_from_slice(&our_mac);
    f[a + 14..a + 18].copy_from_slice(&our_ip.octets());
    f[a + 24..a + 28].copy_from_slice(&target.octets());
    Some(60)
}

/// Turns an ICMP echo request into its reply, in place (addresses and MACs
/// swapped, type 0, checksums updated).
pub fn icmp_echo_reply(frame: &mut [u8]) -> bool {
    let Some(ihl) = frame.get(ETH_LEN).map(|v| usize::from(v & 0x0f) * 4) else {
        return false;
    };
    let Some(total) = u16_at(frame, ETH_LEN + 2).map(usize::from) else {
        return false;
    };
    if ihl < IP_LEN || total < ihl + 8 {
        return false;
    }
    let Some(f) = frame.get_mut(..ETH_LEN + total) else {
        return false;
    };
    let (eth, ip) = f.split_at_mut(ETH_LEN);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&eth[0..6]);
    eth.copy_within(6..12, 0);
    eth[6..12].copy_from_slice(&mac);
    let mut addr = [0u8; 4];
    addr.copy_from_slice(&ip[12..16]);
    ip.copy_within(16..20, 12);
    ip[16..20].copy_from_slice(&addr);
    ip[8] = 64;
    ip[10..12].fill(0);
    let c = ip_checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let Some(icmp) = ip.get_mut(ihl..) else {
        return false;
    };
    icmp[0] = 0;
    icmp[2..4].fill(0);
    let c = !fold(sum(0, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    true
}

/// Readdresses a UDP frame (as [`classify`] accepted it) in place: from
/// `src_mac`/`src` to `dst_mac`/`dst`. The IPv4 checksum is recomputed, the
/// UDP checksum updated from the changed words (RFC 1624) so the payload is
/// never read; a zero UDP checksum (none) stays zero.
pub fn readdress(
    frame: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> bool {
    let Some(ihl) = frame.get(ETH_LEN).map(|v| usize::from(v & 0x0f) * 4) else {
        return false;
    };
    if ihl < IP_LEN {
        return false;
    }
    let u = ETH_LEN + ihl;
    let Some(f) = frame.get_mut(..u + UDP_LEN) else {
        return false;
    };
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    // The words the UDP checksum covers that change: addresses and ports.
    let old: [u8; 12] = {
        let mut o = [0u8; 12];
        o[..8].copy_from_slice(&f[ETH_LEN + 12..ETH_LEN + 20]);
        o[8..].copy_from_slice(&f[u..u + 4]);
        o
    };
    let mut new = [0u8; 12];
    new[..4].copy_from_slice(&src.ip().octets());
    new[4..8].copy_from_slice(&dst.ip().octets());
    new[8..10].copy_from_slice(&src.port().to_be_bytes());
    new[10..12].copy_from_slice(&dst.port().to_be_bytes());
    f[ETH_LEN + 12..ETH_LEN + 20].copy_from_slice(&new[..8]);
    f[u..u + 4].copy_from_slice(&new[8..]);
    f[ETH_LEN + 8] = 64;
    f[ETH_LEN + 10..ETH_LEN + 12].fill(0);
    let c = ip_checksum(&f[ETH_LEN..u]);
    f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
    let old_c = u16::from_be_bytes([f[u + 6], f[u + 7]]);
    if old_c != 0 {
        // HC' = ~(~HC + ~m + m') over each changed 16-bit word.
        let mut acc = u32::from(!old_c);
        for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
            acc += u32::from(!u16::from_be_bytes([o[0], o[1]]));
            acc += u32::from(u16::from_be_bytes([n[0], n[1]]));
        }
        let mut c = !fold(acc);
        if c == 0 {
            c = 0xffff;
        }
        f[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// The UDP header for `payload` from `src` to `dst`, its checksum computed
/// over the pseudo-header and the payload (RFC 768; 0 sent as 0xffff).
fn udp_header(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Option<[u8; UDP_LEN]> {
    let udp_len = u16::try_from(UDP_LEN + payload.len()).ok()?;
    if usize::from(udp_len) + IP_LEN > 65_535 {
        return None;
    }
    let mut udp = [0u8; UDP_LEN];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut acc = sum(0, &src.ip().octets());
    acc = sum(acc, &dst.ip().octets());
    acc += u32::from(IPPROTO_UDP) + u32::from(udp_len);
    let c = match !fold(sum(sum(acc, &udp), payload)) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Some(udp)
}

/// Writes the Ethernet and IPv4 headers of a UDP packet (or fragment) whose
/// IPv4 payload is `ip_payload` bytes at fragment field `frag` (offset/8 and
/// MF). DF stays clear: a router on a smaller-MTU path may fragment SIP (we
/// ignore ICMP "fragmentation needed").
#[allow(clippy::too_many_arguments)]
fn write_headers(
    f: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ip_payload: usize,
    ip_id: u16,
    frag: u16,
) {
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut f[ETH_LEN..ETH_LEN + IP_LEN];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((IP_LEN + ip_payload) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = ip_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes an Ethernet/IPv4/UDP frame carrying `payload` into `buf`; its
/// length, or `None` if it does not fit (or the payload exceeds an IPv4
/// datagram).
pub fn build_udp(
    buf: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ip_id: u16,
) -> Option<usize> {
    let udp = udp_header(src, dst, payload)?;
    let total = UDP_HEADERS + payload.len();
    let f = buf.get_mut(..total)?;
    let ip_payload = UDP_LEN + payload.len();
    write_headers(
        f,
        src_mac,
        dst_mac,
        *src.ip(),
        *dst.ip(),
        ip_payload,
        ip_id,
        0,
    );
    f[ETH_LEN + IP_LEN..UDP_HEADERS].copy_from_slice(&udp);
    f[UDP_HEADERS..].copy_from_slice(payload);
    Some(total)
}

/// The IPv4 MTU we send with.
pub const MTU: usize = 1500;

/// Sends a UDP datagram too large for one frame as IPv4 fragments of at
/// most [`MTU`] bytes: `out` receives each whole frame in turn (built in a
/// stack buffer). The UDP checksum covers the whole datagram, as RFC 768
/// wants; the receiver reassembles.
#[allow(clippy::too_many_arguments)]
pub fn udp_fragments(
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ip_id: u16,
    mut out: impl FnMut(&[u8]),
) -> Option<usize> {
    let udp = udp_header(src, dst, payload)?;
    let chunk = (MTU - IP_LEN) / 8 * 8;
    let total = UDP_LEN + payload.len();
    let mut frame = [0u8; ETH_LEN + MTU];
    let mut off = 0;
    let mut count = 0;
    while off < total {
        let n = chunk.min(total - off);
        let frag = (off / 8) as u16 | if off + n < total { 0x2000 } else { 0 };
        write_headers(
            &mut frame,
            src_mac,
            dst_mac,
            *src.ip(),
            *dst.ip(),
            n,
            ip_id,
            frag,
        );
        // This fragment's bytes of (UDP header ++ payload).
        let body = &mut frame[ETH_LEN + IP_LEN..ETH_LEN + IP_LEN + n];
        for (i, b) in body.iter_mut().enumerate() {
            let at = off + i;
            *b = if at < UDP_LEN {
                udp[at]
            } else {
                payload[at - UDP_LEN]
            };
        }
        out(&frame[..ETH_LEN + IP_LEN + n]);
        off += n;
        count += 1;
    }
    Some(count)
}

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

/// Next-hop MAC addresses learnt from ARP, a small open-addressed table with
/// no allocation after creation.
#[derive(Debug)]
pub struct ArpCache {
    slots: Vec<Option<(Ipv4Addr, Mac, u64)>>,
    ttl_ms: u64,
}

impl ArpCache {
    pub fn new(capacity: usize, ttl_ms: u64) -> ArpCache {
        ArpCache {
            slots: vec![None; capacity.next_power_of_two().max(8)],
            ttl_ms,
        }
    }

    fn home(&self, ip: Ipv4Addr) -> usize {
        (u32::from(ip).wrapping_mul(2_654_435_761) as usize) & (self.slots.len() - 1)
    }

    /// The slot holding `ip`, if any (probing stops at an empty slot).
    fn find(&self, ip: Ipv4Addr) -> Option<usize> {
        let n = self.slots.len();
        let h = self.home(ip);
        for i in 0..n {
            let at = (h + i) & (n - 1);
            match self.slots.get(at)? {
                Some((k, _, _)) if *k == ip => return Some(at),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// The MAC of `ip` if known and fresh at `now_ms`.
    pub fn get(&self, ip: Ipv4Addr, now_ms: u64) -> Option<Mac> {
        self.get_aged(ip, now_ms).map(|(mac, _)| mac)
    }

    /// The MAC of `ip` and its age, if known and fresh at `now_ms`.
    pub fn get_aged(&self, ip: Ipv4Addr, now_ms: u64) -> Option<(Mac, u64)> {
        let (_, mac, at) = (*self.slots.get(self.find(ip)?)?)?;
        let age = now_ms.saturating_sub(at);
        (age < self.ttl_ms).then_some((mac, age))
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// RFC 826's merge: an entry for `ip` already there takes `mac`; `true`
    /// if there was one.
    pub fn update(&mut self, ip: Ipv4Addr, mac: Mac, now_ms: u64) -> bool {
        match self.find(ip).and_then(|at| self.slots.get_mut(at)) {
            Some(slot) => {
                *slot = Some((ip, mac, now_ms));
                true
            }
            None => false,
        }
    }

    /// Adds or updates `ip` at `mac` (when we are the target of its ARP, or
    /// asked for it). Expired entries are reused; a table full of fresh ones
    /// replaces the entry at the home slot.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: Mac, now_ms: u64) {
        if self.update(ip, mac, now_ms) {
            return;
        }
        let n = self.slots.len();
        let h = self.home(ip);
        let ttl = self.ttl_ms;
        let free = (0..n).map(|i| (h + i) & (n - 1)).find(|&at| {
            self.slots
                .get(at)
                .is_some_and(|s| s.is_none_or(|(_, _, t)| now_ms.saturating_sub(t) >= ttl))
        });
        if let Some(slot) = self.slots.get_mut(free.unwrap_or(h)) {
            *slot = Some((ip, mac, now_ms));
        }
    }
}

/// A reassembled UDP datagram: addresses and the UDP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// One datagram being put together.
#[derive(Debug)]
struct Partial {
    key: (Ipv4Addr, Ipv4Addr, u16),
    data: Vec<u8>,
    /// Byte ranges received, as (start, end).
    have: Vec<(usize, usize)>,
    /// Known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    started: u64,
}

/// IPv4 reassembly of UDP datagrams for us (SIP larger than the MTU), with
/// a fixed number of datagrams in progress and a deadline for each, so a
/// flood of fragments costs bounded memory and nothing else. Overlapping
/// fragments are dropped with their datagram (RFC 5722's rule, for IPv4).
#[derive(Debug)]
pub struct Reassembler {
    slots: Vec<Option<Partial>>,
    timeout_ms: u64,
}

const MAX_FRAGMENTS: usize = 64;

impl Reassembler {
    pub fn new(slots: usize, timeout_ms: u64) -> Reassembler {
        Reassembler {
            slots: (0..slots.max(1)).map(|_| None).collect(),
            timeout_ms,
        }
    }

    /// Adds a fragment (a frame [`classify`] called [`Kind::Fragment`]);
    /// the whole datagram once its last missing piece arrives.
    pub fn push(&mut self, frame: &[u8], now: u64) -> Option<Datagram> {
        let ip = frame.get(ETH_LEN..)?;
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        let total_len = usize::from(u16_at(ip, 2)?);
        if ihl < IP_LEN || total_len < ihl || ip.len() < total_len || *ip.get(9)? != IPPROTO_UDP {
            return None;
        }
        let key = (ip_at(ip, 12)?, ip_at(ip, 16)?, u16_at(ip, 4)?);
        let flags = u16_at(ip, 6)?;
        let more = flags & 0x2000 != 0;
        let start = usize::from(flags & 0x1fff) * 8;
        let piece = ip.get(ihl..total_len)?;
        let end = start + piece.len();
        if end > 65_535 - IP_LEN || (more && piece.len() % 8 != 0) {
            return None;
        }
        // Expire old datagrams; find ours or a free slot.
        for slot in &mut self.slots {
            if slot
                .as_ref()
                .is_some_and(|p| now.saturating_sub(p.started) > self.timeout_ms)
            {
                *slot = None;
            }
        }
        let idx = match self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|p| p.key == key))
        {
            Some(i) => i,
            None => {
                // A free slot, else the oldest datagram in progress gives way.
                let i = self.slots.iter().position(Option::is_none).or_else(|| {
                    (0..self.slots.len()).min_by_key(|&i| {
                        self.slots
                            .get(i)
                            .and_then(|s| s.as_ref().map(|p| p.started))
                            .unwrap_or(0)
                    })
                })?;
                *self.slots.get_mut(i)? = Some(Partial {
                    key,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    started: now,
                });
                i
            }
        };
        let slot = self.slots.get_mut(idx)?;
        let p = slot.as_mut()?;
        let overlaps = p.have.iter().any(|&(a, b)| start < b && a < end);
        let bad_total = match (more, p.total) {
            (false, Some(t)) => t != end,
            (_, Some(t)) => end > t,
            (false, None) => p.have.iter().any(|&(_, b)| b > end),
            (true, None) => false,
        };
        if overlaps || bad_total || p.have.len() >= MAX_FRAGMENTS {
            *slot = None;
            return None;
        }
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data.get_mut(start..end)?.copy_from_slice(piece);
        p.have.push((start, end));
        if !more {
            p.total = Some(end);
        }
        let t = p.total?;
        if p.have.iter().map(|&(a, b)| b - a).sum::<usize>() != t {
            return None;
        }
        // Complete: check and strip the UDP header.
        let p = slot.take()?;
        let udp = p.data;
        let len = usize::from(u16_at(&udp, 4)?);
        if len != udp.len() || len < UDP_LEN {
            return None;
        }
        if u16_at(&udp, 6)? != 0 && udp_checksum(key.0, key.1, &udp) != 0 {
            return None;
        }
        Some(Datagram {
            src: SocketAddrV4::new(key.0, u16_at(&udp, 0)?),
            dst: SocketAddrV4::new(key.1, u16_at(&udp, 2)?),
            payload: udp.get(UDP_LEN..)?.to_vec(),
        })
    }
}

/// Whether `ip` is on the subnet `ours/prefix`.
pub fn on_link(ip: Ipv4Addr, ours: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(ip) & mask == u32::from(ours) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: Mac = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: Mac = [2, 0, 0, 0, 0, 2];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn rtp_frame() -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let payload: Vec<u8> = (0..172u8).collect();
        let n = build_udp(
            &mut buf,
            PEER_MAC,
            OUR_MAC,
            sa("10.0.1.10:40000"),
            sa("10.0.0.100:10000"),
            &payload,
            7,
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn udp_built_classified_and_checked() {
        let f = rtp_frame();
        let Kind::Udp {
            src,
            dst,
            src_mac,
            payload,
        } = classify(&f, &[ip("10.0.0.100")])
        else {
            panic!("{:?}", classify(&f, &[ip("10.0.0.100")]));
        };
        assert_eq!(
            (src, dst, src_mac),
            (sa("10.0.1.10:40000"), sa("10.0.0.100:10000"), PEER_MAC)
        );
        assert_eq!(
            &f[payload.0..payload.0 + payload.1],
            &(0..172u8).collect::<Vec<_>>()[..]
        );
        assert_eq!(
            classify(&f, &[ip("10.0.0.101")]),
            Kind::Drop(Reason::NotForUs)
        );
        assert!(udp_checksum_ok(&f));
        let mut bad = f.clone();
        bad[UDP_HEADERS + 3] ^= 1;
        assert!(matches!(
            classify(&bad, &[ip("10.0.0.100")]),
            Kind::Udp { .. }
        ));
        assert!(!udp_checksum_ok(&bad), "checked only where we consume it");
        let mut bad = f.clone();
        bad[ETH_LEN + 8] ^= 1; // TTL: the IPv4 header checksum no longer matches
        assert_eq!(
            classify(&bad, &[ip("10.0.0.100")]),
            Kind::Drop(Reason::BadChecksum)
        );
        assert_eq!(
            classify(&f[..40], &[ip("10.0.0.100")]),
            Kind::Drop(Reason::Truncated)
        );
        let mut frag = f.clone();
        frag[ETH_LEN + 6] = 0x20; // more fragments
        frag[ETH_LEN + 10..ETH_LEN + 12].fill(0);
        let c = ip_checksum(&frag[ETH_LEN..ETH_LEN + 20]);
        frag[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(classify(&frag, &[ip("10.0.0.100")]), Kind::Fragment);
    }

    #[test]
    fn readdress_keeps_both_checksums_right_and_the_payload() {
        let mut f = rtp_frame();
        let payload = f[UDP_HEADERS..].to_vec();
        let out_mac = [2, 0, 0, 0, 0, 3];
        let gw_mac = [2, 0, 0, 0, 0, 4];
        assert!(readdress(
            &mut f,
            out_mac,
            gw_mac,
            sa("203.0.113.50:20000"),
            sa("203.0.113.10:30000")
        ));
        let Kind::Udp {
            src, dst, src_mac, ..
        } = classify(&f, &[ip("203.0.113.10")])
        else {
            panic!(
                "checksums or headers broken: {:?}",
                classify(&f, &[ip("203.0.113.10")])
            );
        };
        assert_eq!(
            (src, dst, src_mac),
            (sa("203.0.113.50:20000"), sa("203.0.113.10:30000"), out_mac)
        );
        assert_eq!(&f[0..6], &gw_mac);
        assert_eq!(&f[UDP_HEADERS..], &payload[..]);
        // Same as a frame built from scratch (the IP id aside).
        let mut fresh = vec![0u8; 1500];
        let n = build_udp(&mut fresh, out_mac, gw_mac, src, dst, &payload, 7).unwrap();
        assert_eq!(&f[..], &fresh[..n]);
        assert!(udp_checksum_ok(&f));
        // A corrupted datagram stays detectably corrupted after readdressing.
        let mut bad = rtp_frame();
        bad[UDP_HEADERS + 5] ^= 0x10;
        assert!(readdress(
            &mut bad,
            out_mac,
            gw_mac,
            sa("203.0.113.50:20000"),
            sa("203.0.113.10:30000")
        ));
        assert!(!udp_checksum_ok(&bad));
    }

    /// Splits a built UDP frame into IPv4 fragments of `size` payload bytes.
    fn fragments(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
        let body = &frame[ETH_LEN + IP_LEN..];
        let mut out = Vec::new();
        for (i, chunk) in body.chunks(size).enumerate() {
            let mut f = frame[..ETH_LEN + IP_LEN].to_vec();
            f.extend_from_slice(chunk);
            let more = (i + 1) * size < body.len();
            let off = (i * size / 8) as u16 | if more { 0x2000 } else { 0 };
            let ip = &mut f[ETH_LEN..];
            ip[2..4].copy_from_slice(&((IP_LEN + chunk.len()) as u16).to_be_bytes());
            ip[6..8].copy_from_slice(&off.to_be_bytes());
            ip[10..12].fill(0);
            let c = ip_checksum(&ip[..IP_LEN]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            out.push(f);
        }
        out
    }

    #[test]
    fn fragments_reassemble_in_any_order_and_bad_ones_are_dropped() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0u8; 4000];
        let n = build_udp(
            &mut buf,
            PEER_MAC,
            OUR_MAC,
            sa("10.0.1.10:5060"),
            sa("10.0.0.100:5060"),
            &payload,
            99,
        )
        .unwrap();
        let frags = fragments(&buf[..n], 1480);
        assert_eq!(frags.len(), 3);
        assert_eq!(classify(&frags[1], &[ip("10.0.0.100")]), Kind::Fragment);
        let mut r = Reassembler::new(4, 2000);
        assert_eq!(r.push(&frags[2], 0), None);
        assert_eq!(r.push(&frags[0], 1), None);
        let d = r.push(&frags[1], 2).expect("complete");
        assert_eq!(
            (d.src, d.dst),
            (sa("10.0.1.10:5060"), sa("10.0.0.100:5060"))
        );
        assert_eq!(d.payload, payload);
        // A duplicate (overlapping) fragment drops the datagram.
        assert_eq!(r.push(&frags[0], 3), None);
        assert_eq!(r.push(&frags[0], 3), None);
        assert_eq!(r.push(&frags[1], 3), None);
        assert!(r.push(&frags[2], 3).is_none(), "dropped, not completed");
        // An old partial datagram expires.
        let mut r = Reassembler::new(4, 2000);
        assert_eq!(r.push(&frags[0], 10), None);
        assert_eq!(r.push(&frags[1], 5000), None);
        assert_eq!(r.push(&frags[2], 5001), None, "the first fragment expired");
        // A broken payload fails the UDP checksum once whole.
        let mut bad = frags.clone();
        let last = bad[1].len() - 1;
        bad[1][last] ^= 1;
        let mut r = Reassembler::new(4, 2000);
        r.push(&bad[0], 0);
        r.push(&bad[1], 0);
        assert_eq!(r.push(&bad[2], 0), None);
        // What we fragment, we reassemble.
        let mut sent = Vec::new();
        udp_fragments(
            OUR_MAC,
            PEER_MAC,
            sa("10.0.0.100:5060"),
            sa("10.0.1.10:5060"),
            &payload,
            7,
            |f| sent.push(f.to_vec()),
        )
        .unwrap();
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|f| f.len() <= ETH_LEN + MTU));
        let mut r = Reassembler::new(2, 2000);
        let got: Vec<_> = sent
            .iter()
            .rev()
            .filter_map(|f| {
                assert_eq!(classify(f, &[ip("10.0.1.10")]), Kind::Fragment);
                r.push(f, 0)
            })
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, payload);
        // At most `slots` datagrams in progress: a new one evicts the oldest.
        let mut r = Reassembler::new(1, 2000);
        assert_eq!(r.push(&frags[0], 0), None);
        let mut other = frags[1].clone();
        other[ETH_LEN + 4] ^= 1; // another IP id
        assert_eq!(r.push(&other, 1), None);
        assert_eq!(r.push(&frags[1], 2), None);
        assert!(
            r.push(&frags[2], 2).is_none(),
            "its first fragment was evicted"
        );
        assert!(r.push(&frags[0], 3).is_some());
    }

    #[test]
    fn arp_answered_learnt_and_asked() {
        let mut req = vec![0u8; 60];
        arp_request(&mut req, PEER_MAC, ip("10.0.1.10"), ip("10.0.0.100")).unwrap();
        assert_eq!(
            classify(&req, &[ip("10.0.0.100")]),
            Kind::Arp {
                request: true,
                sender_mac: PEER_MAC,
                sender_ip: ip("10.0.1.10"),
                target_ip: ip("10.0.0.100")
            }
        );
        let mut other = req.clone();
        assert!(
            !arp_reply(&mut other, OUR_MAC, ip("10.0.0.99")),
            "not our address"
        );
        assert!(arp_reply(&mut req, OUR_MAC, ip("10.0.0.100")));
        assert_eq!(&req[0..6], &PEER_MAC);
        assert_eq!(
            classify(&req, &[ip("10.0.1.10")]),
            Kind::Arp {
                request: false,
                sender_mac: OUR_MAC,
                sender_ip: ip("10.0.0.100"),
                target_ip: ip("10.0.1.10")
            }
        );
        let mut cache = ArpCache::new(4, 60_000);
        assert_eq!(cache.get(ip("10.0.1.10"), 0), None);
        cache.learn(ip("10.0.1.10"), PEER_MAC, 0);
        for i in 0..20u8 {
            cache.learn(Ipv4Addr::new(10, 0, 2, i), [i; 6], 0);
        }
        cache.learn(ip("10.0.1.10"), PEER_MAC, 1000);
        assert_eq!(cache.get(ip("10.0.1.10"), 1000), Some(PEER_MAC));
        assert_eq!(cache.get(ip("10.0.1.10"), 61_000), None, "expired");
        assert!(on_link(ip("10.0.255.1"), ip("10.0.0.100"), 16));
        assert!(!on_link(ip("10.1.0.1"), ip("10.0.0.100"), 16));
        assert!(on_link(ip("1.2.3.4"), ip("10.0.0.100"), 0));
    }

    #[test]
    fn icmp_echo_answered_in_place() {
        let mut f = vec![0u8; ETH_LEN + 20 + 12];
        f[0..6].copy_from_slice(&OUR_MAC);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ipb = &mut f[ETH_LEN..];
        ipb[0] = 0x45;
        ipb[2..4].copy_from_slice(&32u16.to_be_bytes());
        ipb[8] = 64;
        ipb[9] = IPPROTO_ICMP;
        ipb[12..16].copy_from_slice(&ip("10.0.1.10").octets());
        ipb[16..20].copy_from_slice(&ip("10.0.0.100").octets());
        let c = ip_checksum(&ipb[..20]);
        ipb[10..12].copy_from_slice(&c.to_be_bytes());
        ipb[20] = 8;
        ipb[24..32].copy_from_slice(b"ping1234");
        let c = !fold(sum(0, &ipb[20..]));
        ipb[22..24].copy_from_slice(&c.to_be_bytes());
        assert_eq!(classify(&f, &[ip("10.0.0.100")]), Kind::EchoRequest);
        assert!(icmp_echo_reply(&mut f));
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(&f[ETH_LEN + 16..ETH_LEN + 20], &ip("10.0.1.10").octets());
        assert_eq!(f[ETH_LEN + 20], 0, "echo reply");
        assert_eq!(ip_checksum(&f[ETH_LEN..ETH_LEN + 20]), 0);
        assert_eq!(fold(sum(0, &f[ETH_LEN + 20..])), 0xffff, "ICMP checksum");
        assert_eq!(&f[ETH_LEN + 24..], b"ping1234");
    }
}
