//! Benchmarks and load tools for the SBC (see `perf/README.md`).

pub mod fixtures;
pub mod sipgen;
