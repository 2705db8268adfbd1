//! `dpdk-sys`: the only crate of the workspace that talks C.
//!
//! With the `dpdk` feature it holds the bindgen bindings over the system
//! libdpdk (found by pkg-config; DPDK 22.11 is the reference) restricted to
//! `rte_*`, and the `sbc_*` functions of `src/shim.c`, which export DPDK's
//! static inline functions and macros (rx/tx burst, mbuf alloc/free/mtod,
//! `rte_errno`, lcore id, TSC). Without the feature it is empty, so the
//! default build needs no DPDK on the machine.
#![no_std]

#[cfg(feature = "dpdk")]
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

#[cfg(feature = "dpdk")]
pub use bindings::*;
