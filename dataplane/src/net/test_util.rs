//! What the protocol tests share: two MACs and address parsing.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::Mac;

/// The SBC port's MAC in the tests.
pub const OUR_MAC: Mac = [2, 0, 0, 0, 0, 1];
/// A neighbour's MAC in the tests.
pub const PEER_MAC: Mac = [2, 0, 0, 0, 0, 2];

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}
