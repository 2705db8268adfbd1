//! The SBC's control plane (tokio): configuration, SQL provisioning, the REST
//! API, and the `sbc` binary that starts the data plane and wires them.
//!
//! Provisioning writes go to SQL in one transaction; then the whole routing
//! state is re-read into an immutable `RouteSnapshot` and handed to the SIP
//! engine over its ring, so a change applies to the next call and never
//! touches calls in progress.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod calllog;
pub mod cdr;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod hep;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod provisioning;
pub mod run;
pub mod stream;
pub mod threads;
