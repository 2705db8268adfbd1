//! The call journal: what a confirmed call needs to go on after the SBC
//! restarts (a crash, `kill -9`, an upgrade) on the same host.
//!
//! The engine writes nothing itself. When a call is answered, and whenever
//! an in-dialog request or a committed offer/answer changes it, it queues a
//! [`JournalOp::Up`] with the call's [`CallImage`]; when the call ends, a
//! [`JournalOp::Down`]. The engine thread hands them to the control plane,
//! which keeps the latest image of each call on disk, off the packet path.
//! At start the control plane gives the images back, and
//! [`SipEngine::restore`] puts each call in again: its dialog with both legs
//! (so an in-dialog request, a BYE, routes as before), its ports, its relay
//! streams toward the addresses both SDPs gave (the relay latches again on
//! the first packet from each, RFC 4961's symmetric RTP), its SRTP keys,
//! its session timer and its tenant's slot.
//!
//! An image is the [`Dialog`] serialized (serde, `postcard`) with the
//! wall-clock time of the engine's time 0, so its times survive the new
//! engine's clock. Early dialogs are not journaled: a call still in setup
//! when the SBC dies is lost, and its carrier retries.

use std::cmp::Reverse;

use super::dialog::{Dialog, DialogState, LegRef};
use super::media::{install_line, line_desc};
use super::slab::Id;
use super::{Ms, SipEngine};
use crate::media::sdp::SdpRepr;
use crate::media::MediaCmd;

/// The format of [`CallImage::to_bytes`]: its first byte. An image of
/// another version is refused ([`RestoreError::Decode`]).
const FORMAT: u8 = 1;

/// A confirmed call as the journal keeps it: the dialog and the wall-clock
/// time (ms since the Unix epoch) of engine time 0 when it was taken.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallImage {
    epoch_unix_ms: u64,
    dialog: Box<Dialog>,
}

/// What the engine asks the journal to do.
#[derive(Debug, Clone)]
pub enum JournalOp {
    /// Keep this image of the call (it replaces the call's earlier one).
    Up(Box<CallImage>),
    /// The call (by [`CallImage::call`]) is over: forget it.
    Down(u64),
}

/// Why a call could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The bytes are not an image of this format.
    #[error("not a call image of format {FORMAT}: {0}")]
    Decode(String),
    /// The engine already has a call with one of its Call-IDs.
    #[error("a call with this Call-ID is already in progress")]
    Duplicate,
    /// One of its ports is taken or outside `[media] port_min..port_max` now.
    #[error("its media port {0} is taken or outside the configured range")]
    Port(u16),
    /// Not a confirmed call.
    #[error("not an answered call")]
    NotConfirmed,
}

impl CallImage {
    /// The call's number ([`crate::call::CallRecord::call`]): the journal's key.
    pub fn call(&self) -> u64 {
        self.dialog.call
    }

    /// The Call-ID of the caller's leg, for logs.
    pub fn caller_call_id(&self) -> String {
        String::from_utf8_lossy(&self.dialog.caller.call_id).into_owned()
    }

    /// The image as bytes: a format byte, then the `postcard` encoding.
    /// The bytes hold the call's SRTP master keys: store them readable by
    /// the SBC only.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        // Encoding into a Vec cannot fail for these types.
        if let Ok(body) = postcard::to_stdvec(self) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// An image from [`CallImage::to_bytes`]'s bytes.
    ///
    /// # Errors
    /// [`RestoreError::Decode`] for another format or bytes that do not decode.
    pub fn from_bytes(bytes: &[u8]) -> Result<CallImage, RestoreError> {
        match bytes.split_first() {
            Some((&FORMAT, body)) => {
                postcard::from_bytes(body).map_err(|e| RestoreError::Decode(e.to_string()))
            }
            Some((v, _)) => Err(RestoreError::Decode(format!("format {v}"))),
            None => Err(RestoreError::Decode("empty".into())),
        }
    }
}

impl SipEngine {
    /// Sets the wall-clock time (ms since the Unix epoch) of engine time 0,
    /// which images are stamped with: the engine thread's, before the first
    /// message.
    pub fn set_epoch(&mut self, epoch_unix_ms: u64) {
        self.epoch_unix_ms = epoch_unix_ms;
    }

    /// Moves the pending journal operations into `into`.
    pub fn take_journal(&mut self, into: &mut Vec<JournalOp>) {
        into.append(&mut self.journal);
    }

    /// Queues the image of dialog `did` when it is a confirmed call.
    pub(super) fn journal_up(&mut self, did: Id) {
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        if d.state != DialogState::Confirmed {
            return;
        }
        self.journal.push(JournalOp::Up(Box::new(CallImage {
            epoch_unix_ms: self.epoch_unix_ms,
            dialog: Box::new(d.clone()),
        })));
    }

    /// Queues the end of `d`'s call when it was journaled (confirmed).
    pub(super) fn journal_down(&mut self, d: &Dialog) {
        if d.state == DialogState::Confirmed {
            self.journal.push(JournalOp::Down(d.call));
        }
    }

    /// Puts a call from the journal in again at `now` (engine ms; the engine
    /// epoch set with [`SipEngine::set_epoch`]): its dialog and both legs,
    /// its port pairs, its relay streams pointed at both SDPs' addresses
    /// (with the hold and telephone-event each negotiated, and its SRTP
    /// keys), its session timer (due no sooner than a full wait from now) and
    /// its tenant's slot. Its times are moved onto this engine's clock.
    ///
    /// # Errors
    /// [`RestoreError`]: nothing of the call is kept.
    pub fn restore(&mut self, image: CallImage, now: Ms) -> Result<(), RestoreError> {
        self.now = now;
        let CallImage {
            epoch_unix_ms,
            dialog,
        } = image;
        let mut d = *dialog;
        if d.state != DialogState::Confirmed {
            return Err(RestoreError::NotConfirmed);
        }
        for leg in [&d.caller, &d.callee] {
            if self
                .dialog_index
                .contains_key(&(leg.side, Box::from(leg.call_id.as_slice())))
            {
                return Err(RestoreError::Duplicate);
            }
        }
        // The image's times on this engine's clock (wall clock in between).
        let (old, new) = (epoch_unix_ms, self.epoch_unix_ms);
        let shift = |t: Ms| t.saturating_add(old).saturating_sub(new);
        d.started = shift(d.started);
        d.answered = d.answered.map(shift);
        for (_, since) in &mut d.held {
            *since = since.map(shift);
        }
        self.take_ports(&d)?;
        let (caller_side, callee_side) = (d.caller.side, d.callee.side);
        let call = d.call;
        if let Some(s) = d.session.as_mut() {
            s.due = shift(s.due).max(now + s.wait());
        }
        let session_due = d.session.map(|s| s.due);
        let tenant = d.tenant_id.clone();
        let keys: Vec<_> = d.sdes.in_force.clone();
        let sdps = (d.last_sdp.0.clone(), d.last_sdp.1.clone());
        let media = d.media.clone();
        let (gateway_side, gateway) = (d.gateway_side(), d.leg_on(d.gateway_side()));
        let fix = d.direction_fix.clone();
        let call_id = d.caller.call_id.clone();
        let keys_idx = [
            (caller_side, Box::from(d.caller.call_id.as_slice())),
            (callee_side, Box::from(d.callee.call_id.as_slice())),
        ];
        let did = self.dialogs.insert(d);
        for k in keys_idx {
            self.dialog_index.insert(k, did);
        }
        for pair in media.iter().filter(|p| p[0] != 0) {
            install_line(
                &mut self.media_cmds,
                [(caller_side, pair[0]), (callee_side, pair[1])],
            );
            self.media_index.insert((caller_side, pair[0]), did);
            self.stats
                .media_call([(caller_side, pair[0]), (callee_side, pair[1])], &call_id);
        }
        // Keys before peers, as when the answer committed.
        for (i, k) in keys.into_iter().enumerate() {
            let port = media
                .get(i)
                .and_then(|p| p.get(gateway.index()).copied())
                .unwrap_or(0);
            if let (Some(k), true) = (k, port != 0) {
                self.media_cmds.push(MediaCmd::Srtp {
                    side: gateway_side,
                    port,
                    keys: Some(Box::new(k)),
                });
            }
        }
        for (leg, sdp) in [(LegRef::Caller, &sdps.0), (LegRef::Callee, &sdps.1)] {
            let Ok(sdp) = SdpRepr::parse(sdp) else {
                continue;
            };
            let mut lines: Vec<_> = sdp.media.iter().map(line_desc).collect();
            if leg == gateway {
                for (line, fixed) in lines.iter_mut().zip(&fix) {
                    if let Some(dir) = fixed {
                        line.direction = *dir;
                        line.holds |= *dir != crate::media::sdp::Direction::SendRecv;
                    }
                }
            }
            self.apply_lines(did, leg, &lines);
        }
        if let Some(due) = session_due {
            self.dialog_timers.push(Reverse((due, did.idx, did.gen)));
        }
        if let Some(t) = tenant.as_deref() {
            self.restore_slot(t, now);
        }
        self.next_call = self.next_call.max(call + 1);
        self.stats.calls_up.inc();
        self.stats.calls_restored.inc();
        self.stats.dialogs.set(self.dialogs.len() as u64);
        Ok(())
    }

    /// Takes every port pair of `d`'s media lines, or none.
    fn take_ports(&mut self, d: &Dialog) -> Result<(), RestoreError> {
        let Some(ports) = self.ports.as_mut() else {
            return Ok(());
        };
        let sides = [d.caller.side, d.callee.side];
        let mut taken: Vec<(crate::side::Side, u16)> = Vec::new();
        for pair in d.media.iter().filter(|p| p[0] != 0) {
            for (side, port) in sides.into_iter().zip(*pair) {
                if !ports[side].take_exact(port) {
                    for (s, p) in taken {
                        ports[s].give(p);
                    }
                    return Err(RestoreError::Port(port));
                }
                taken.push((side, port));
            }
        }
        Ok(())
    }
}
