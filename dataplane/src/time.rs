//! The crate's one time type.
//!
//! Everything in the dataplane that keeps time (the SIP engine's timers, the
//! relay's activity stamps and media timeout, the DPDK poll loop's ARP and
//! reassembly deadlines) counts milliseconds on a monotonic clock that the
//! caller passes in, from an `Instant` taken when the backend started. Pure
//! code never reads a clock, so tests run on a virtual one.

/// Milliseconds on a monotonic clock chosen by the caller (the backends:
/// since they started; tests: whatever they like).
pub type Ms = u64;
