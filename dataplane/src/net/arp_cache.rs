//! The next-hop MAC table the DPDK poll loop resolves with: what ARP taught
//! us (RFC 826's merge rule is applied by the caller), with an age so busy
//! entries are asked again before they expire.

use std::net::Ipv4Addr;

use super::ethernet::Mac;
use crate::time::Ms;

/// Next-hop MAC addresses learnt from ARP, a small open-addressed table with
/// no allocation after creation.
#[derive(Debug)]
pub struct ArpCache {
    slots: Vec<Option<(Ipv4Addr, Mac, Ms)>>,
    ttl_ms: Ms,
}

impl ArpCache {
    /// A table of `capacity` entries, rounded up to a power of two and at least 8; an entry stays
    /// fresh for `ttl_ms` after it was learnt or updated.
    pub fn new(capacity: usize, ttl_ms: Ms) -> ArpCache {
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
    pub fn get(&self, ip: Ipv4Addr, now_ms: Ms) -> Option<Mac> {
        self.get_aged(ip, now_ms).map(|(mac, _)| mac)
    }

    /// The MAC of `ip` and its age, if known and fresh at `now_ms`.
    pub fn get_aged(&self, ip: Ipv4Addr, now_ms: Ms) -> Option<(Mac, Ms)> {
        let (_, mac, at) = (*self.slots.get(self.find(ip)?)?)?;
        let age = now_ms.saturating_sub(at);
        (age < self.ttl_ms).then_some((mac, age))
    }

    /// How long an entry stays fresh after it was learnt or updated (ms).
    pub fn ttl_ms(&self) -> Ms {
        self.ttl_ms
    }

    /// RFC 826's merge: an entry for `ip` already there takes `mac`; `true`
    /// if there was one.
    pub fn update(&mut self, ip: Ipv4Addr, mac: Mac, now_ms: Ms) -> bool {
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
    pub fn learn(&mut self, ip: Ipv4Addr, mac: Mac, now_ms: Ms) {
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
