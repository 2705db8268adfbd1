//! The engine's static settings: our SIP addresses, the RFC 3261 timer
//! values, the media relay's addresses and port ranges, and the routing
//! policy knobs of the contract (failover codes and timer, limit answer).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::health::HealthConfig;
use crate::media::offer::{Codec, DEFAULT_CODECS};
use crate::side::{BySide, Side};
use crate::time::Ms;
use crate::transport::Transport;

/// Static settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Our SIP address on each side (UDP).
    pub sip: BySide<SocketAddrV4>,
    /// Our TCP listener on each side, if any (`[sip] public_tcp`): what our
    /// Via, Record-Route and Contact say on a leg over TCP.
    pub tcp: BySide<Option<SocketAddrV4>>,
    /// Our TLS listener on each side, if any (`[sip] public_tls`).
    pub tls: BySide<Option<SocketAddrV4>>,
    /// RFC 3261 T1 (RTT estimate), 500 ms by default.
    pub t1: Ms,
    /// RFC 3261 T2 (cap of non-INVITE retransmissions), 4 s by default.
    pub t2: Ms,
    /// Timer C: how long an INVITE may ring before it is cancelled.
    pub timer_c: Ms,
    /// Seeds branch, tag and Call-ID generation.
    pub seed: u64,
    /// Failover, limits and unknown sources.
    pub policy: Policy,
    /// The media relay: our media address and port range per side. `None`:
    /// SDP addresses are only hidden and media does not cross the SBC.
    pub media: Option<MediaSettings>,
    /// Leave ISUP (`application/isup`, SIP-I/SIP-T) out of the bodies we
    /// forward: a multipart body left with one part becomes that part,
    /// Content-Type and all (`[sip] strip_isup`; default off: passed
    /// byte-exact).
    pub strip_isup: bool,
    /// The codecs of the SBC's own offer to a `livekit` gateway for a
    /// delayed offer, when the call's tenant names none (`[routing]
    /// offer_codecs`; default [`DEFAULT_CODECS`]).
    pub offer_codecs: Vec<Codec>,
    /// How gateways (and host carriers) are probed and judged (`[health]`).
    pub health: HealthConfig,
    /// The relay can protect media (SRTP with SDES keys, RFC 3711/4568):
    /// built with the `srtp` feature, on a backend that does it. Without
    /// it no keys are offered and an `RTP/SAVP` offer gets 488.
    pub srtp: bool,
    /// The flood and scanner guard in front of the engine (`[sip]
    /// max_message`, `[flood]`).
    pub guard: crate::guard::GuardConfig,
}

/// Where the media relay listens on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSettings {
    /// Our media address on each side.
    pub ip: BySide<Ipv4Addr>,
    /// Port range of each side, `[min, max)`.
    pub ports: BySide<(u16, u16)>,
    /// An answered call whose media stops this long is ended (ms).
    pub timeout: Ms,
    /// A media line either leg holds (`c=0.0.0.0`, `a=sendonly`,
    /// `a=recvonly`, `a=inactive`) carries no media that is due: it is ended
    /// only once it has been held and silent this long (ms); `None`: never
    /// (the liveness of a held call belongs to session timers). RTPEngine
    /// keeps held streams with a separate, longer timeout too.
    pub hold_timeout: Option<Ms>,
    /// The most media lines anchored at once (a port pair held on each side
    /// per line; RTPEngine's `max-sessions`). A new INVITE that would need
    /// more, or that finds a side's port range without a pair left, is
    /// answered 503 before it is routed: a call never connects without its
    /// media. `None`: what the port ranges hold.
    pub max_sessions: Option<u32>,
}

impl MediaSettings {
    /// The lowest and highest port of both sides' ranges (the relay's table).
    pub fn port_span(&self) -> (u16, u16) {
        let [(a, b), (c, d)] = self.ports.0;
        (a.min(c), b.max(d))
    }
}

impl EngineConfig {
    /// Settings with our SIP addresses and every default: T1 500 ms, T2 4 s,
    /// Timer C 180 s, [`Policy::default`], no media relay, [`DEFAULT_CODECS`],
    /// no health probing ([`HealthConfig::off`]).
    pub fn new(private: SocketAddrV4, public: SocketAddrV4) -> EngineConfig {
        EngineConfig {
            sip: BySide::new(private, public),
            tcp: BySide::new(None, None),
            tls: BySide::new(None, None),
            t1: 500,
            t2: 4000,
            timer_c: 180_000,
            seed: 0x5bc0_5bc0,
            policy: Policy::default(),
            media: None,
            strip_isup: false,
            offer_codecs: DEFAULT_CODECS.to_vec(),
            health: HealthConfig::off(),
            srtp: false,
            guard: crate::guard::GuardConfig::default(),
        }
    }

    /// Our SIP address on `side` (UDP).
    pub fn addr(&self, side: Side) -> SocketAddrV4 {
        self.sip[side]
    }

    /// Our address on `side` for `transport`: its listener, else (none
    /// configured) the UDP address.
    pub fn addr_on(&self, side: Side, transport: Transport) -> SocketAddrV4 {
        match transport {
            Transport::Udp => None,
            Transport::Tcp => self.tcp[side],
            Transport::Tls => self.tls[side],
        }
        .unwrap_or(self.sip[side])
    }

    /// Our SIP addresses on `side`, every transport's.
    pub fn addrs(&self, side: Side) -> impl Iterator<Item = SocketAddrV4> + '_ {
        [Some(self.sip[side]), self.tcp[side], self.tls[side]]
            .into_iter()
            .flatten()
    }
}

/// The routing policy knobs of the contract.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Final responses from a gateway that make the INVITE try the next one.
    pub failover_codes: Vec<u16>,
    /// How long a gateway may stay silent before the next one is tried (only
    /// while another candidate is left; the last one gets Timer B).
    pub failover_timeout: Ms,
    /// Answer to an INVITE over its tenant's CPS or concurrency limit.
    pub limit_code: u16,
    /// `Retry-After` of that answer, in seconds (RFC 3261 20.33).
    pub retry_after_s: u32,
    /// Drop INVITEs from unknown sources silently instead of answering 403.
    pub drop_unknown_sources: bool,
    /// Tenant limits hold across a cluster: a limited tenant's new INVITE
    /// waits for the control plane's verdict up to this many ms, then the
    /// node's share decides (`engine::admission`). `None`: one node counts
    /// alone.
    pub cluster_ask_ms: Option<Ms>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            failover_codes: vec![408, 500, 502, 503, 504],
            failover_timeout: 5_000,
            limit_code: 503,
            retry_after_s: 1,
            drop_unknown_sources: false,
            cluster_ask_ms: None,
        }
    }
}
