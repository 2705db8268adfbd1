//! SRTP toward gateways in the engine: SDES keys (RFC 4568) in the SDP of
//! the gateway leg, plain RTP on the carrier's.
//!
//! The SBC is the SRTP end point toward the gateway (RTPEngine's
//! `SDES-offer`/`SDES-only` and `RTP/AVP` toward the other side): every
//! offer it passes to the gateway carries keys of its own when the
//! gateway's `media_encryption` asks for it, every offer of the gateway's
//! with keys is answered with a key of ours, and the relay takes both keys
//! when the answer commits ([`MediaCmd::Srtp`]). The carrier never sees an
//! `a=crypto` line or an `RTP/SAVP` profile. Each new offer brings new keys
//! of ours (a rekey, RFC 4568 section 7.1.4); the relay keeps a session
//! whose key did not change, its rollover counter and replay list with it.

use super::dialog::LegRef;
use super::media::sdp_of;
use super::slab::Id;
use super::SipEngine;
use crate::media::sdes::{secure_proto, write_keys, Crypto, LineKeys, Suite};
use crate::media::sdp::{SdpError, SdpRepr};
use crate::media::{MediaCmd, SrtpKeys};
use crate::routing::MediaEncryption;
use crate::sip::SipMessage;

/// The SDES state of a call's gateway leg, per media line.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Sdes {
    /// What the next SDP toward the gateway says of SRTP on each media
    /// line: the keys of our offer (one per suite, [`Suite::ALL`] order,
    /// tags 1, 2, ...), or the one key of our answer to its offer.
    pub toward_gateway: Vec<LineKeys>,
    /// `toward_gateway` is an offer of ours the gateway has not answered.
    pub awaiting: bool,
    /// The gateway's key on each line of its pending offer.
    pub gateway_offer: Vec<Option<Crypto>>,
    /// The keys the relay does SRTP with on each line now (`None`: plain
    /// RTP), kept so that a call restored after a restart gets them again.
    pub in_force: Vec<Option<SrtpKeys>>,
}

impl SipEngine {
    /// A new offer (`sdp`) from leg `from` of dialog `did`: the keys the
    /// SDP toward the gateway will carry. From the carrier, an offer of
    /// ours per the gateway's `media_encryption`; from the gateway, for each
    /// line it keys (its first `a=crypto` with a suite we take), one key of
    /// ours of that suite and tag, in its profile - the one we offered in
    /// that slot when its SDP answers an offer of ours (our own offer for a
    /// delayed one), else a new one.
    pub(super) fn sdes_offer(&mut self, did: Id, from: LegRef, sdp: &SdpRepr) {
        let srtp = self.cfg.srtp;
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let from_gateway = d.leg(from).side == d.gateway_side();
        let mode = d.media_encryption;
        let mut toward = Vec::with_capacity(sdp.media.len());
        let mut theirs = Vec::with_capacity(sdp.media.len());
        for (i, m) in sdp.media.iter().enumerate() {
            let (line, their) = match (srtp && m.port != 0, from_gateway) {
                (false, _) => (LineKeys::default(), None),
                (true, true) => {
                    let ours_before = d
                        .sdes
                        .toward_gateway
                        .get(i)
                        .filter(|_| d.sdes.awaiting)
                        .map_or(&[][..], |l| &l.crypto);
                    let pick = m.crypto.first().and_then(|c| {
                        let ours = match ours_before.iter().find(|o| o.same_slot(c)) {
                            Some(o) => Some(o.clone()),
                            None => Crypto::generate(c.tag, c.suite).ok(),
                        };
                        Some((c.clone(), ours?))
                    });
                    match pick {
                        Some((c, ours)) => (
                            LineKeys {
                                proto: Some(m.proto.clone()),
                                crypto: vec![ours],
                            },
                            Some(c),
                        ),
                        None => (LineKeys::default(), None),
                    }
                }
                (true, false) if mode == MediaEncryption::Disable => (LineKeys::default(), None),
                (true, false) => {
                    let crypto = Suite::ALL
                        .iter()
                        .zip(1..)
                        .filter_map(|(s, tag)| Crypto::generate(tag, *s).ok())
                        .collect();
                    let proto = (mode == MediaEncryption::Require).then(|| secure_proto(&m.proto));
                    (LineKeys { proto, crypto }, None)
                }
            };
            toward.push(line);
            theirs.push(their);
        }
        d.sdes.awaiting = !from_gateway && toward.iter().any(|l| !l.crypto.is_empty());
        d.sdes.toward_gateway = toward;
        d.sdes.gateway_offer = theirs;
    }

    /// An inbound call fails over to another gateway, whose
    /// `media_encryption` may differ: the offer it gets (the carrier's in
    /// `invite`, or our own for a delayed offer) is keyed anew for it.
    pub(super) fn sdes_offer_again(&mut self, did: Id, invite: &SipMessage<'_>) {
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        if d.caller.side == d.gateway_side() {
            return;
        }
        let offer = d
            .sbc_offer
            .clone()
            .or_else(|| sdp_of(invite).map(<[u8]>::to_vec));
        if let Some(sdp) = offer.and_then(|o| SdpRepr::parse(&o).ok()) {
            self.sdes_offer(did, LegRef::Caller, &sdp);
        }
    }

    /// The answer `sdp` from leg `from` commits: each media line whose
    /// answer and offer agree on a key gets SRTP in the relay (the
    /// gateway's key for what it sends, ours for what we send it), a line
    /// that had SRTP and now has none loses it. Sent before the lines'
    /// new peers, so no packet crosses between them unprotected.
    pub(super) fn sdes_answer(&mut self, did: Id, from: LegRef, sdp: &SdpRepr) {
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let side = d.gateway_side();
        let gateway = d.leg_on(side);
        let from_gateway = from == gateway;
        if from_gateway {
            d.sdes.awaiting = false;
        }
        for (i, m) in sdp.media.iter().enumerate() {
            let port = d
                .media
                .get(i)
                .and_then(|p| p.get(gateway.index()).copied())
                .unwrap_or(0);
            if port == 0 {
                continue;
            }
            let ours = d.sdes.toward_gateway.get(i).map_or(&[][..], |l| &l.crypto);
            let keys = match (m.port, from_gateway) {
                (0, _) => None,
                (_, true) => m.crypto.iter().find_map(|c| {
                    let o = ours.iter().find(|o| o.same_slot(c))?;
                    Some(SrtpKeys {
                        inbound: c.clone(),
                        outbound: o.clone(),
                    })
                }),
                (_, false) => match (d.sdes.gateway_offer.get(i), ours.first()) {
                    (Some(Some(c)), Some(o)) => Some(SrtpKeys {
                        inbound: c.clone(),
                        outbound: o.clone(),
                    }),
                    _ => None,
                },
            };
            if d.sdes.in_force.len() <= i {
                d.sdes.in_force.resize(i + 1, None);
            }
            let Some(in_force) = d.sdes.in_force.get_mut(i) else {
                continue;
            };
            if keys.is_none() && in_force.is_none() {
                continue;
            }
            in_force.clone_from(&keys);
            if keys.is_some() {
                self.stats.srtp_lines.inc();
            }
            self.media_cmds.push(MediaCmd::Srtp {
                side,
                port,
                keys: keys.map(Box::new),
            });
        }
    }

    /// Why `sdp`, from leg `from` of dialog `did`, cannot be taken when the
    /// gateway's `media_encryption` is `require`: an enabled media line of
    /// the gateway's without a key (in an answer, one of the keys we
    /// offered). `None` when it can, and for every other call or leg.
    pub(super) fn srtp_refusal(&self, did: Id, from: LegRef, sdp: &[u8]) -> Option<SdpError> {
        let d = self.dialogs.get(did)?;
        if d.media_encryption != MediaEncryption::Require
            || d.leg(from).side != d.gateway_side()
            || self.cfg.media.is_none()
        {
            return None;
        }
        let sdp = SdpRepr::parse(sdp).ok()?;
        let keyed = sdp.media.iter().enumerate().all(|(i, m)| {
            let ours = d.sdes.toward_gateway.get(i).map_or(&[][..], |l| &l.crypto);
            m.port == 0
                || if d.sdes.awaiting {
                    m.crypto.iter().any(|c| ours.iter().any(|o| o.same_slot(c)))
                } else {
                    !m.crypto.is_empty()
                }
        });
        (!keyed).then_some(SdpError::SrtpRequired)
    }

    /// `sdp` (already anchored and hidden) as leg `to` of dialog `did`
    /// gets it: toward the gateway with our keys per [`Sdes`], toward the
    /// carrier plain (`RTP/AVP`, no `a=crypto`). Unchanged when media is
    /// not relayed (keys then pass end to end, the SBC not being in the
    /// media path).
    pub(super) fn sdp_keys_for(&self, did: Id, to: LegRef, sdp: Vec<u8>) -> Vec<u8> {
        let Some(d) = self.dialogs.get(did).filter(|_| self.cfg.media.is_some()) else {
            return sdp;
        };
        if d.leg(to).side == d.gateway_side() {
            write_keys(&sdp, &d.sdes.toward_gateway, false)
        } else {
            write_keys(&sdp, &[], true)
        }
    }
}
