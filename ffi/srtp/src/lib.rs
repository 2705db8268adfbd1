//! `srtp-sys`: bindgen bindings over the system libsrtp2 (pkg-config
//! `libsrtp2`, 2.5 is the reference; Debian's is built with a crypto
//! backend, so AES-GCM is there), restricted to `srtp_*`. Built only for
//! the data plane's `srtp` feature; the safe use of it is
//! `sbc_dataplane::srtp`.
#![no_std]

#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;
