//! The SBC's packet paths: no tokio, no SQL.
//!
//! ```text
//!  socket backend (recvmmsg) ──ring──► SIP engine thread ──sendmmsg──► wire
//!          ▲                               │  ▲
//!          └─ datagram buffers recycled ◄──┘  └── RouteSnapshot ring (control plane)
//! ```
//! - [`sip`]: zero-copy SIP scanner and message builder.
//! - [`engine`]: the transaction-stateful, dialog-aware proxy with topology hiding.
//! - [`routing`]: the immutable routing snapshot and the routing rule.
//! - [`socket`]: the kernel-UDP backend and the engine thread.
//! - [`stats`]: lock-free counters read by the control plane.
//! - `dpdk` (feature `dpdk`): safe wrappers over DPDK (EAL, mempools, mbufs, ports, lcores).
// Unsafe code lives only in `dpdk` (feature `dpdk`), each block with its
// SAFETY comment; scripts/test checks no other module has any.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod backend;
pub mod call;
#[cfg(feature = "dpdk")]
#[allow(unsafe_code)]
pub mod dpdk;
pub mod engine;
pub mod media;
pub mod net;
pub mod rng;
pub mod routing;
pub mod side;
pub mod sip;

pub mod stats;
pub mod time;

pub use engine::{EngineConfig, Outgoing, SipEngine};
pub use routing::RouteSnapshot;
pub use side::{BySide, Side};
pub use time::Ms;
