//! Mempools and mbufs.

use std::ffi::CString;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::{DpdkError, Eal};

/// Packets per rx/tx burst.
pub const BURST: usize = 32;

/// A packet mbuf pool.
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe by design.
unsafe impl Send for Mempool {}
// SAFETY: as above: every operation on a mempool is thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `n` mbufs with the default data room, on the caller's NUMA socket.
    pub fn new(_eal: &Eal, name: &str, n: u32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError {
            call: "rte_pktmbuf_pool_create",
            code: 22,
            text: "pool name contains NUL".into(),
        })?;
        let room = u16::try_from(sys::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap_or(u16::MAX);
        // SAFETY: EAL is initialised; the name is a valid C string copied by DPDK.
        let raw = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                256,
                0,
                room,
                i32::try_from(sys::rte_socket_id()).unwrap_or(-1),
            )
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::last("rte_pktmbuf_pool_create"))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// An empty mbuf, or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for our lifetime.
        NonNull::new(unsafe { sys::sbc_pktmbuf_alloc(self.raw.as_ptr()) }).map(|raw| Mbuf { raw })
    }
}

// No Drop: a pool is never freed. Mbufs and port queues point into it with
// no lifetime Rust can check, and pools live as long as EAL anyway (they go
// with `rte_eal_cleanup`), so freeing one early could only be a bug.

/// One owned packet buffer (single segment).
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf; moving it between threads
// (lcores) is how DPDK passes packets over rings.
unsafe impl Send for Mbuf {}

/// Where the packet of a valid single-segment mbuf starts and its length.
fn span(raw: NonNull<sys::rte_mbuf>) -> (*mut u8, usize) {
    // SAFETY: callers pass an mbuf they own (an `Mbuf`, or one a `Burst`
    // holds); buf_addr + data_off is its first data byte, followed by
    // data_len initialised bytes.
    unsafe {
        let m = raw.as_ptr();
        let start = (*m).buf_addr.cast::<u8>().add(usize::from((*m).data_off));
        (start, usize::from((*m).data_len))
    }
}

impl Mbuf {
    /// Where the packet starts and its length: `rte_pktmbuf_mtod` and
    /// `rte_pktmbuf_data_len` read in Rust (inlined; the shim's versions
    /// cost a call each, several times per packet).
    fn span(&self) -> (*mut u8, usize) {
        span(self.raw)
    }

    /// The packet bytes.
    pub fn data(&self) -> &[u8] {
        let (p, n) = self.span();
        // SAFETY: `span` gives n initialised bytes owned by this mbuf, which
        // lives as long as `self`.
        unsafe { std::slice::from_raw_parts(p, n) }
    }

    /// The packet bytes, writable in place.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (p, n) = self.span();
        // SAFETY: as `data`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(p, n) }
    }

    /// The packet length in bytes (this single segment's `data_len`).
    pub fn len(&self) -> usize {
        self.span().1
    }

    /// Whether the packet holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the packet by `len` bytes at the end; the new bytes, or `None`
    /// if the buffer has no room.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: rte_pktmbuf_append returns NULL or `len` writable bytes
        // inside our mbuf's data room.
        unsafe {
            let p = sys::sbc_pktmbuf_append(self.raw.as_ptr(), len);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p, usize::from(len)))
        }
    }

    /// Shortens the packet to its first `len` bytes (`rte_pktmbuf_trim`
    /// from the end); nothing when it is not longer.
    pub fn truncate(&mut self, len: usize) {
        let Ok(len16) = u16::try_from(len) else {
            return;
        };
        if len >= self.len() {
            return;
        }
        // SAFETY: we own a valid single-segment mbuf; a shorter data_len
        // (and pkt_len, the same for one segment) stays within its data.
        unsafe {
            let m = self.raw.as_ptr();
            (*m).data_len = len16;
            (*m).pkt_len = u32::from(len16);
        }
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool once.
        unsafe { sys::sbc_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// Up to [`BURST`] mbufs for one rx or tx burst, without allocation.
#[derive(Debug)]
pub struct Burst {
    pub(crate) ptrs: [*mut sys::rte_mbuf; BURST],
    pub(crate) len: usize,
}

// SAFETY: the Burst owns the mbufs its first `len` pointers name.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            ptrs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl Burst {
    /// Mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst holds no mbuf.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a packet; gives it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        match self.ptrs.get_mut(self.len) {
            Some(slot) => {
                *slot = m.into_raw();
                self.len += 1;
                Ok(())
            }
            None => Err(m),
        }
    }

    /// Takes every packet out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = Mbuf> + '_ {
        let n = std::mem::take(&mut self.len);
        self.ptrs
            .iter()
            .take(n)
            .filter_map(|p| NonNull::new(*p).map(|raw| Mbuf { raw }))
    }

    /// The packet bytes of each mbuf held, in order, left in the burst (a
    /// poll loop's first look at a burst, e.g. to prefetch what each packet
    /// will need before handling any).
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.ptrs
            .iter()
            .take(self.len)
            .filter_map(|p| NonNull::new(*p))
            .map(|raw| {
                let (p, n) = span(raw);
                // SAFETY: the burst owns this mbuf while `self` is borrowed;
                // `span` gives its n initialised bytes.
                unsafe { std::slice::from_raw_parts(p.cast_const(), n) }
            })
    }

    /// Drops the first `sent` pointers (now owned by the driver) and moves
    /// the rest to the front.
    pub(crate) fn consumed(&mut self, sent: usize) {
        let sent = sent.min(self.len);
        self.ptrs.copy_within(sent..self.len, 0);
        self.len -= sent;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        for m in self.drain() {
            drop(m);
        }
    }
}
