//! One port's addressing and output in the poll loop: our addresses (one per
//! relay lane), the next-hop MACs ARP taught us, ARP requests rate-limited,
//! SIP from the engine framed (fragmented above the MTU) or parked until its
//! next hop answers ARP, and the TX burst.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::Poller;
use crate::dpdk::{Burst, Mbuf};
use crate::engine::Outgoing;
use crate::net::{self, ArpCache, Mac};
use crate::side::Side;
use crate::stats::IoStats;
use crate::time::Ms;

/// SIP datagrams waiting for their next hop's MAC, and for how long.
pub(super) const PENDING_MAX: usize = 1024;
const PENDING_MS: Ms = 1000;
/// An unanswered ARP request is repeated after this long.
const ARP_RETRY_MS: Ms = 200;
/// Next hops asked for at once (more wait for a slot).
const ASKED_MAX: usize = 64;

/// One port's addressing and output.
pub(super) struct SideIo {
    /// The SIP (and first media) address.
    pub ip: Ipv4Addr,
    /// Every address of the port: lane i of the relay table is `ips[i]`.
    pub ips: Vec<Ipv4Addr>,
    pub sip_port: u16,
    pub prefix: u8,
    pub next_hop: Option<Ipv4Addr>,
    pub mac: Mac,
    pub arp: ArpCache,
    /// Next hops we asked for lately: (ip, when).
    asked: Vec<(Ipv4Addr, Ms)>,
    pub tx: Burst,
}

impl SideIo {
    /// `ips[0]` is the SIP (and first media) address.
    pub fn new(
        ips: Vec<Ipv4Addr>,
        sip_port: u16,
        prefix: u8,
        next_hop: Option<Ipv4Addr>,
        mac: Mac,
        arp: ArpCache,
    ) -> SideIo {
        SideIo {
            ip: ips.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
            ips,
            sip_port,
            prefix,
            next_hop,
            mac,
            arp,
            asked: Vec::with_capacity(ASKED_MAX),
            tx: Burst::default(),
        }
    }

    /// The lane (index in `ips`) of our address `ip`; 0 when it is none of them.
    pub fn lane_of(&self, ip: &Ipv4Addr) -> u8 {
        self.ips.iter().position(|a| a == ip).unwrap_or(0) as u8
    }

    /// Where a frame for `ip` goes first: `ip` itself on our subnet, else the
    /// side's router (or `ip` when there is none: everything is on-link).
    pub fn next_hop(&self, ip: Ipv4Addr) -> Ipv4Addr {
        if net::on_link(ip, self.ip, self.prefix) {
            ip
        } else {
            self.next_hop.unwrap_or(ip)
        }
    }
}

impl Poller {
    /// The MAC to send to `ip` from `side`, asking ARP (rate-limited) when
    /// it is not known.
    pub(super) fn resolve(
        &mut self,
        side: Side,
        ip: Ipv4Addr,
        now: Ms,
        io: &IoStats,
    ) -> Option<Mac> {
        let s = &mut self.sides[side];
        let hop = s.next_hop(ip);
        let known = s.arp.get_aged(hop, now);
        // Past half its lifetime an entry is asked for again while still used,
        // so a busy next hop never expires under its traffic.
        if let Some((mac, age)) = known {
            if age < s.arp.ttl_ms() / 2 {
                return Some(mac);
            }
        }
        let found = known.map(|(mac, _)| mac);
        s.asked
            .retain(|(_, at)| now.saturating_sub(*at) < ARP_RETRY_MS);
        if s.asked.iter().any(|(a, _)| *a == hop) || s.asked.len() >= ASKED_MAX {
            return found;
        }
        s.asked.push((hop, now));
        let (mac, ours) = (s.mac, s.ip);
        let request = self.pool.alloc().and_then(|mut m| {
            net::arp_request(m.append(60)?, mac, ours, hop)?;
            Some(m)
        });
        if let Some(m) = request {
            io.arp_requests.inc();
            self.push(side, m, io);
        }
        found
    }

    /// Frames a datagram from the engine and queues it, or parks it until
    /// ARP finds its next hop.
    pub(super) fn send_sip(&mut self, o: Outgoing, now: Ms, io: &IoStats) {
        let side = o.side;
        let SocketAddr::V4(dst) = o.dst else {
            io.tx_errors.inc();
            return;
        };
        let Some(dmac) = self.resolve(side, *dst.ip(), now, io) else {
            if self.pending.len() < PENDING_MAX {
                self.pending.push_back((o, now + PENDING_MS));
            } else {
                io.arp_unresolved.inc();
            }
            return;
        };
        let s = &self.sides[side];
        let (src, mac) = (SocketAddrV4::new(s.ip, s.sip_port), s.mac);
        let frame_len = net::UDP_HEADERS + o.data.len();
        if frame_len > net::ETH_LEN + net::MTU {
            // SIP over UDP larger than the MTU leaves in IPv4 fragments.
            io.tx_fragmented.inc();
            self.ip_id = self.ip_id.wrapping_add(1);
            let mut frames: [Option<Mbuf>; 48] = std::array::from_fn(|_| None);
            let mut k = 0;
            let pool = &self.pool;
            let done = net::udp_fragments((mac, dmac), src, dst, &o.data, self.ip_id, |f| {
                let m = u16::try_from(f.len()).ok().and_then(|len| {
                    let mut m = pool.alloc()?;
                    m.append(len)?.copy_from_slice(f);
                    Some(m)
                });
                if let Some(slot) = frames.get_mut(k) {
                    *slot = m;
                }
                k += 1;
            });
            if done.is_none() || frames.iter().take(k).any(Option::is_none) || k > frames.len() {
                io.tx_errors.inc();
                return;
            }
            for m in frames.into_iter().flatten() {
                self.push(side, m, io);
            }
            return;
        }
        let built = u16::try_from(frame_len).ok().and_then(|len| {
            let mut m = self.pool.alloc()?;
            net::build_udp(m.append(len)?, mac, dmac, src, dst, &o.data, 0)?;
            Some(m)
        });
        match built {
            Some(m) => self.push(side, m, io),
            // No mbuf left.
            None => io.tx_errors.inc(),
        }
    }

    /// Sends `payload` (at most an MTU) from our `port` of media address
    /// `lane` on `side` to `dst`, when ARP knows the next hop; otherwise
    /// ARP is asked and the payload dropped (`arp_unresolved`). For what
    /// the poll loop sends itself: injected DTMF. `true` when queued.
    pub(super) fn send_from(
        &mut self,
        (side, lane, port): (Side, u8, u16),
        dst: SocketAddrV4,
        payload: &[u8],
        now: Ms,
        io: &IoStats,
    ) -> bool {
        let Some(dmac) = self.resolve(side, *dst.ip(), now, io) else {
            io.arp_unresolved.inc();
            return false;
        };
        let s = &self.sides[side];
        let ip = s.ips.get(usize::from(lane)).copied().unwrap_or(s.ip);
        let (src, mac) = (SocketAddrV4::new(ip, port), s.mac);
        let built = u16::try_from(net::UDP_HEADERS + payload.len())
            .ok()
            .and_then(|len| {
                let mut m = self.pool.alloc()?;
                net::build_udp(m.append(len)?, mac, dmac, src, dst, payload, 0)?;
                Some(m)
            });
        match built {
            Some(m) => {
                self.push(side, m, io);
                true
            }
            None => {
                io.tx_errors.inc();
                false
            }
        }
    }

    /// Sends what waited for ARP once its next hop is known; drops what
    /// waited past its deadline (counted).
    pub(super) fn retry_pending(&mut self, now: Ms, io: &IoStats) {
        for _ in 0..self.pending.len() {
            let Some((o, deadline)) = self.pending.pop_front() else {
                break;
            };
            if now > deadline {
                io.arp_unresolved.inc();
                continue;
            }
            let known = match o.dst {
                SocketAddr::V4(d) => {
                    let s = &self.sides[o.side];
                    s.arp.get(s.next_hop(*d.ip()), now).is_some()
                }
                SocketAddr::V6(_) => false,
            };
            if known {
                self.send_sip(o, now, io);
            } else {
                self.pending.push_back((o, deadline));
            }
        }
    }
}
