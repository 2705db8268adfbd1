//! Load tools for the SBC.
