//! Identifiers we generate: Via branches that carry our transaction's slab
//! id (found again in O(1) with no hash), tags, Call-IDs, and the server
//! transaction key of RFC 3261 17.2.3.

use std::io::Write;

use super::slab::Id;
use super::SipEngine;
use crate::rng;
use crate::side::Side;
use crate::sip::SipMessage;

/// Our branches start with the RFC 3261 magic cookie and "sbc".
const BRANCH_PREFIX: &[u8] = b"z9hG4bKsbc";

/// What our Via branch carries: `z9hG4bKsbc<salt:8 hex><idx>.<gen>.<attempt>`
/// (hex). The slab id finds the client transaction in O(1) with no hash;
/// the per-boot salt keeps answers to an earlier run from matching; the
/// attempt number tells answers from a gateway we already failed over from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Branch {
    pub salt: u32,
    pub id: Id,
    pub attempt: u32,
}

impl Branch {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = BRANCH_PREFIX.to_vec();
        let _ = write!(
            b,
            "{:08x}{:x}.{:x}.{:x}",
            self.salt, self.id.idx, self.id.gen, self.attempt
        );
        b
    }

    /// The branch, if `branch` is one of ours (any salt).
    pub fn parse(branch: &[u8]) -> Option<Branch> {
        let rest = branch.strip_prefix(BRANCH_PREFIX)?;
        let salt = u32::from_str_radix(std::str::from_utf8(rest.get(..8)?).ok()?, 16).ok()?;
        let ids = std::str::from_utf8(rest.get(8..)?).ok()?;
        let mut parts = ids.split('.');
        let mut field = || parts.next().and_then(|p| u32::from_str_radix(p, 16).ok());
        let id = Id {
            idx: field()?,
            gen: field()?,
        };
        let attempt = field()?;
        parts
            .next()
            .is_none()
            .then_some(Branch { salt, id, attempt })
    }
}

impl SipEngine {
    pub(super) fn next_u64(&mut self) -> u64 {
        rng::next(&mut self.rng)
    }

    /// Our branch for attempt `attempt` of client transaction `id`.
    pub(super) fn branch_for(&self, id: Id, attempt: u32) -> Vec<u8> {
        Branch {
            salt: self.salt,
            id,
            attempt,
        }
        .encode()
    }

    /// Our transaction and attempt behind a branch this run generated.
    pub(super) fn parse_branch(&self, branch: &[u8]) -> Option<(Id, u32)> {
        Branch::parse(branch)
            .filter(|b| b.salt == self.salt)
            .map(|b| (b.id, b.attempt))
    }

    /// A branch for a stateless forward (ACK for 2xx); never parses as ours.
    pub(super) fn new_branch_stateless(&mut self) -> Vec<u8> {
        let mut b = BRANCH_PREFIX.to_vec();
        let _ = write!(b, "-{:016x}", self.next_u64());
        b
    }

    pub(super) fn new_call_id(&mut self) -> Vec<u8> {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!("{a:016x}{b:016x}").into_bytes()
    }
}

/// The key of a server transaction (RFC 3261 17.2.3; RFC 2543 fallback).
pub(super) fn server_key(side: Side, msg: &SipMessage<'_>, invite_class: bool) -> Box<[u8]> {
    let mut k = Vec::with_capacity(96);
    k.push(side as u8);
    k.push(u8::from(invite_class));
    match msg.via.rfc3261_branch() {
        Some(branch) => {
            k.extend_from_slice(branch);
            k.push(0);
            k.extend_from_slice(msg.via.host);
            let _ = write!(k, ":{}", msg.via.port.unwrap_or(5060));
        }
        None => {
            k.extend_from_slice(msg.call_id);
            let _ = write!(k, "\0{}\0", msg.cseq.seq);
            k.extend_from_slice(msg.from.tag().unwrap_or_default());
            k.push(0);
            k.extend_from_slice(msg.via.host);
            k.push(0);
            k.extend_from_slice(msg.via.branch.unwrap_or_default());
        }
    }
    k.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_round_trip_and_strangers_do_not_parse() {
        let b = Branch {
            salt: 0x0bad_cafe,
            id: Id { idx: 42, gen: 7 },
            attempt: 2,
        };
        let text = b.encode();
        assert_eq!(text, b"z9hG4bKsbc0badcafe2a.7.2");
        assert_eq!(Branch::parse(&text), Some(b));
        for other in [
            &b"z9hG4bK776asdhds"[..],
            b"z9hG4bKsbc-00000000000000ff",
            b"z9hG4bKsbc0badcafe2a.7",
            b"z9hG4bKsbc0badcafe2a.7.2.9",
            b"z9hG4bKsbc0badcafeZZ.7.2",
        ] {
            assert_eq!(
                Branch::parse(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
