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

impl SipEngine {
    pub(super) fn next_u64(&mut self) -> u64 {
        rng::next(&mut self.rng)
    }

    pub(super) fn branch_for(&self, id: Id, attempt: u32) -> Vec<u8> {
        let mut b = BRANCH_PREFIX.to_vec();
        let _ = write!(
            b,
            "{:08x}{:x}.{:x}.{:x}",
            self.salt, id.idx, id.gen, attempt
        );
        b
    }

    /// Our transaction behind a branch we generated, if it is one.
    pub(super) fn parse_branch(&self, branch: &[u8]) -> Option<(Id, u32)> {
        let rest = branch.strip_prefix(BRANCH_PREFIX)?;
        let salt = std::str::from_utf8(rest.get(..8)?).ok()?;
        if u32::from_str_radix(salt, 16).ok()? != self.salt {
            return None;
        }
        let ids = std::str::from_utf8(rest.get(8..)?).ok()?;
        let mut parts = ids.split('.');
        let mut field = || parts.next().and_then(|p| u32::from_str_radix(p, 16).ok());
        let id = Id {
            idx: field()?,
            gen: field()?,
        };
        Some((id, field()?))
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
