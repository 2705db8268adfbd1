//! The SBC's packet paths: no tokio, no SQL.
//!
//! ```text
//!            ┌──────────── backend::socket (recvmmsg/sendmmsg) ─┐  or  backend::dpdk (poll lcore)
//!  wire ───► │ SIP datagrams ─► Shared.intake ─► engine thread ─► EngineIo ─► wire
//!            │ RTP ─► media::RelayTable::verdict ─► readdressed out of the other side
//!            └──────────────────────────────────────────────────┘
//!  engine thread: engine::SipEngine::{handle, tick} (pure: bytes and time in, datagrams out)
//!     ├── routing::RouteSnapshot::route   (the snapshot ring from the control plane)
//!     ├── media::MediaCmd ──ring──► the relay (install, move a peer, release + call record)
//!     └── call::{CallEvent, CallRecord} ──rings in stats::EngineStats──► control plane
//! ```
//! - [`side`], [`time`], [`call`], [`stats`]: the shared vocabulary at the bottom
//!   (`Side`/`BySide`, milliseconds, call records, lock-free counters).
//! - [`sip`]: the zero-copy SIP scanner and message builder.
//! - [`routing`]: the immutable routing snapshot and the routing rule;
//!   [`health`]: destination health (OPTIONS probes, dispatcher semantics);
//!   [`numbers`]: the per-tenant number rules it applies.
//! - [`media`]: SDP rewriting, the relay table and its verdict, RTP views and statistics.
//! - [`net`]: Ethernet/ARP/IPv4/UDP/ICMP over frame bytes for the DPDK backend.
//! - [`engine`]: the transaction-stateful, dialog-aware proxy with topology hiding.
//! - [`backend`]: the socket and DPDK backends around one engine thread.
//! - `dpdk` (feature `dpdk`): safe wrappers over DPDK (EAL, mempools, mbufs, ports, lcores).
// Unsafe code lives only in `dpdk` (feature `dpdk`), each block with its
// SAFETY comment; scripts/test checks no other module has any.
#![deny(unsafe_code)]
#![warn(missing_docs)]
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
pub mod guard;
pub mod health;
pub mod media;
pub mod net;
pub mod numbers;
pub mod rng;
pub mod routing;
pub mod side;
pub mod sip;
#[cfg(feature = "srtp")]
#[allow(unsafe_code)]
pub mod srtp;
pub mod stats;
pub mod time;
pub mod transport;

pub use engine::{EngineConfig, Outgoing, SipEngine};
pub use routing::RouteSnapshot;
pub use side::{BySide, Side};
pub use time::Ms;
pub use transport::Transport;
