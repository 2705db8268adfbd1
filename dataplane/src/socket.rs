//! Kernel UDP backend.
