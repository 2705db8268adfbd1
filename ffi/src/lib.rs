//! `dpdk-sys`: the only crate of the workspace that talks C.
//!
//! With the `dpdk` feature it will hold the bindgen bindings over the system
//! libdpdk (found by pkg-config) and a C shim for DPDK's static inline
//! functions (rx/tx burst, mbuf helpers). Without the feature it is empty, so
//! the default build needs no DPDK on the machine.
#![no_std]
