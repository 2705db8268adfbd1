//! The engine's intake: what the socket backend's engine thread reads from
//! its SIP sockets, the DPDK poll loop and the stream layer hand the SIP
//! engine, in two lanes and
//! with a share per source, so that neither a flood nor a slow engine
//! starves the calls already up (issue 15's overload control).
//!
//! - **Two lanes.** Responses and requests inside a transaction or dialog
//!   ([`continues_dialog`]: ACK, BYE, CANCEL, re-INVITE, ...) go on the
//!   priority lane, which the engine empties first; new requests on the
//!   normal lane, whose depth is what [`super::engine_thread`] reads as
//!   overload (new INVITEs then get 503 at once).
//! - **A share per source and lane.** No source (by IPv4 address, hashed
//!   into [`BUCKETS`] counters per lane) may have more than
//!   [`Intake::share`] new requests waiting, nor more than half the
//!   priority lane; more is dropped before the ring and counted
//!   (`io.rx_share_drops`). One sender cannot fill the ring that everyone
//!   else's messages cross, and a busy carrier's own new INVITEs never
//!   crowd out its ACKs and BYEs. Sources that share a bucket share the limit.
//! - **Waiting time.** Each message is stamped as it enters
//!   ([`Intake::waited_ms`]): the engine thread takes a long wait as overload.
//!
//! Lock-free: two `ArrayQueue`s and relaxed atomic counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use super::Datagram;
use crate::sip::lane::continues_dialog;
use crate::stats::IoStats;

/// Counters of messages waiting per source (by a hash of its address).
pub const BUCKETS: usize = 1_024;

/// The two lanes toward the engine and the per-source counts.
#[derive(Debug)]
pub struct Intake {
    priority: ArrayQueue<Datagram>,
    normal: ArrayQueue<Datagram>,
    /// Messages waiting per source bucket: the normal lane's, then the priority lane's.
    waiting: [Box<[AtomicU32]>; 2],
    /// Per lane (normal, priority): how many one source may have waiting.
    shares: [u32; 2],
    clock: Instant,
}

/// Why [`Intake::push`] refused a message (it comes back to the caller,
/// whose buffer goes back to the pool).
#[derive(Debug)]
pub enum Refused {
    /// Its lane is full.
    Full(Datagram),
    /// Its source has its share waiting already.
    Share(Datagram),
}

impl Refused {
    /// The message refused.
    pub fn into_inner(self) -> Datagram {
        match self {
            Refused::Full(d) | Refused::Share(d) => d,
        }
    }
}

fn bucket(src: &SocketAddr) -> usize {
    let ip = match src {
        SocketAddr::V4(a) => u32::from(*a.ip()),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    };
    // Fibonacci hashing: the top bits of the product.
    (ip.wrapping_mul(0x9E37_79B9) >> 22) as usize % BUCKETS
}

impl Intake {
    /// Lanes of `capacity` messages each; a source may have an eighth of
    /// that waiting (at least 64).
    pub fn new(capacity: usize) -> Intake {
        let counters = || (0..BUCKETS).map(|_| AtomicU32::new(0)).collect();
        Intake {
            priority: ArrayQueue::new(capacity),
            normal: ArrayQueue::new(capacity),
            waiting: [counters(), counters()],
            shares: [(capacity / 8).max(64) as u32, (capacity / 2).max(64) as u32],
            clock: Instant::now(),
        }
    }

    /// How many new requests one source may have waiting.
    pub fn share(&self) -> u32 {
        self.shares[0]
    }

    /// Milliseconds on the intake's clock.
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// How long `d` waited in the intake, ms (read when it is taken).
    pub fn waited_ms(&self, d: &Datagram) -> u64 {
        self.now_ms().saturating_sub(d.queued_ms)
    }

    /// Queues `d` on its lane, or refuses it.
    ///
    /// # Errors
    /// [`Refused`] with the message: its lane is full, or its source has
    /// its share waiting.
    pub fn push(&self, mut d: Datagram) -> Result<(), Refused> {
        let first = continues_dialog(d.buf.get(..d.len).unwrap_or_default());
        let (lane, which) = if first {
            (&self.priority, 1)
        } else {
            (&self.normal, 0)
        };
        let (Some(count), Some(&share)) = (
            self.waiting.get(which).and_then(|w| w.get(bucket(&d.src))),
            self.shares.get(which),
        ) else {
            return Err(Refused::Full(d));
        };
        if count.load(Ordering::Relaxed) >= share {
            return Err(Refused::Share(d));
        }
        d.queued_ms = self.now_ms();
        count.fetch_add(1, Ordering::Relaxed);
        lane.push(d).map_err(|d| {
            count.fetch_sub(1, Ordering::Relaxed);
            Refused::Full(d)
        })
    }

    /// Queues `d`, counting a refusal in `io` (`rx_ring_full` or
    /// `rx_share_drops`) and giving its buffer back to `free`; `true` when
    /// queued.
    pub fn push_counted(&self, d: Datagram, io: &IoStats, free: &ArrayQueue<Vec<u8>>) -> bool {
        match self.push(d) {
            Ok(()) => true,
            Err(r) => {
                match &r {
                    Refused::Full(_) => io.rx_ring_full.inc(),
                    Refused::Share(_) => io.rx_share_drops.inc(),
                }
                let d = r.into_inner();
                if d.transport == crate::transport::Transport::Udp {
                    let _ = free.push(d.buf);
                }
                false
            }
        }
    }

    /// The next message: the priority lane's first.
    pub fn pop(&self) -> Option<Datagram> {
        let (d, which) = match self.priority.pop() {
            Some(d) => (d, 1),
            None => (self.normal.pop()?, 0),
        };
        if let Some(c) = self.waiting.get(which).and_then(|w| w.get(bucket(&d.src))) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        Some(d)
    }

    /// New requests waiting (the normal lane): the overload signal.
    pub fn new_requests(&self) -> usize {
        self.normal.len()
    }

    /// Each lane's capacity.
    pub fn capacity(&self) -> usize {
        self.normal.capacity()
    }

    /// How full each lane is, for `GET /api/v1/status`'s rings.
    pub fn fills(&self) -> [crate::stats::RingFill; 2] {
        use crate::stats::RingFill;
        [
            RingFill::of("rx", &self.normal),
            RingFill::of("rx_priority", &self.priority),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::side::Side;
    use crate::transport::Transport;

    fn dg(src: &str, text: &[u8]) -> Datagram {
        Datagram {
            side: Side::Private,
            transport: Transport::Udp,
            src: src.parse().unwrap(),
            len: text.len(),
            buf: text.to_vec(),
            queued_ms: 0,
        }
    }

    #[test]
    fn in_dialog_messages_overtake_new_ones_and_a_source_gets_its_share() {
        let intake = Intake::new(512);
        assert_eq!(intake.share(), 64);
        let invite = b"INVITE sip:1@h SIP/2.0\r\nTo: <sip:1@h>\r\n\r\n";
        for _ in 0..64 {
            intake.push(dg("10.0.1.66:5060", invite)).unwrap();
        }
        // The 65th from the same source is refused; another source goes on,
        // and so do the first source's in-dialog requests (their own share).
        assert!(matches!(
            intake.push(dg("10.0.1.66:5061", invite)),
            Err(Refused::Share(_))
        ));
        intake
            .push(dg("10.0.1.66:5060", b"ACK sip:x SIP/2.0\r\n\r\n"))
            .unwrap();
        assert!(intake.pop().unwrap().buf.starts_with(b"ACK"));
        intake.push(dg("10.0.1.10:5060", invite)).unwrap();
        intake
            .push(dg("10.0.1.10:5060", b"BYE sip:x SIP/2.0\r\n\r\n"))
            .unwrap();
        assert_eq!(intake.new_requests(), 65);
        // The BYE comes first.
        assert!(intake.pop().unwrap().buf.starts_with(b"BYE"));
        // Once the flooder's messages are taken, it may queue again.
        while intake.pop().is_some() {}
        intake.push(dg("10.0.1.66:5060", invite)).unwrap();
    }
}
