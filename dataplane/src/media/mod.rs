//! Media relay building blocks (RTPEngine's job): SDP rewriting, the
//! stream table with its per-packet verdict, and port pair allocation.
//!
//! Not wired into the engine and the backends yet (the media relay issue
//! does that); tested on their own.

pub mod relay;
pub mod sdp;
