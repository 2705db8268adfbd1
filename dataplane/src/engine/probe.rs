//! Health probes: SIP OPTIONS to every gateway (and, with `probe_carriers`,
//! every host carrier) from our SIP address on its side, through the same
//! backend as the calls; answers and timeouts are judged by
//! [`crate::health::HealthTable`], which routing asks before it picks a
//! gateway. Each probe is one out-of-dialog OPTIONS (RFC 3261 11), resent on
//! Timer E (T1 doubling, capped at T2) until a final answer or the probe
//! timeout; its branch (`z9hG4bKsbcp<salt><probe number>`) never parses as
//! a transaction's, so its answers never reach the proxy core.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};

use super::{Incoming, Ms, Outgoing, SipEngine};
use crate::health::{HealthCmd, HealthReport};
use crate::side::Side;
use crate::sip::build::Builder;
use crate::sip::StartLine;
use crate::transport::Transport;

/// The branch prefix of our probes.
const PROBE_PREFIX: &[u8] = b"z9hG4bKsbcp";

/// One probe in flight.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    dest: SocketAddrV4,
    side: Side,
    transport: Transport,
    request: Vec<u8>,
    resend_at: Ms,
    every: Ms,
    /// When the health table gives it up (its timeout).
    until: Ms,
}

impl SipEngine {
    /// The destinations of the snapshot in force, each with the side it is
    /// probed from and the transport: gateways on the public side over
    /// their own, host carriers (mask 32) on the private side over UDP when
    /// `probe_carriers` is set.
    pub(super) fn probe_destinations(&mut self) {
        let mut sides = std::collections::HashMap::new();
        for g in &self.snapshot.gateways {
            for t in &g.targets {
                sides.insert(t.addr, (Side::Public, g.transport));
            }
        }
        if self.health.config().probe_carriers {
            for c in self.snapshot.carriers.iter().filter(|c| c.mask == 32) {
                sides
                    .entry(SocketAddrV4::new(c.ip, 5060))
                    .or_insert((Side::Private, Transport::Udp));
            }
        }
        self.health
            .set_destinations(sides.keys().copied(), self.now);
        self.probe_sides = sides;
    }

    /// Sends the probes that are due, resends those in flight, and fails
    /// the ones past their timeout.
    pub(super) fn probe_tick(&mut self, now: Ms, out: &mut Vec<Outgoing>) {
        self.health.expire(now);
        self.probes.retain(|_, p| now < p.until);
        let mut due = Vec::new();
        self.health.due(now, &mut due);
        for (dest, seq) in due {
            self.send_probe(dest, seq, now, out);
        }
        let t2 = self.cfg.t2;
        for p in self.probes.values_mut().filter(|p| now >= p.resend_at) {
            p.every = (p.every * 2).min(t2);
            p.resend_at = now + p.every;
            // Over TCP/TLS a request is not resent (RFC 3261 17.1.2.2).
            if p.transport.reliable() {
                continue;
            }
            out.push(Outgoing {
                side: p.side,
                dst: SocketAddr::V4(p.dest),
                transport: p.transport,
                data: p.request.clone(),
            });
        }
    }

    /// The earliest time a probe needs the engine: a send, resend or timeout.
    pub(super) fn next_probe_event(&self) -> Option<Ms> {
        let resend = self.probes.values().map(|p| p.resend_at).min();
        [resend, self.health.next_event()]
            .into_iter()
            .flatten()
            .min()
    }

    fn send_probe(&mut self, dest: SocketAddrV4, seq: u64, now: Ms, out: &mut Vec<Outgoing>) {
        let (side, transport) = self
            .probe_sides
            .get(&dest)
            .copied()
            .unwrap_or((Side::Public, Transport::Udp));
        let ours = self.ours(side, transport);
        let mut branch = PROBE_PREFIX.to_vec();
        let _ = write!(branch, "{:08x}{seq:x}", self.salt);
        let tag = format!("{:016x}", self.next_u64());
        let call_id = self.new_call_id();
        let uri = match transport {
            Transport::Udp => format!("sip:{dest}"),
            t => format!("sip:{dest};transport={t}"),
        };
        let mut b = Builder::request(b"OPTIONS", uri.as_bytes());
        b.header("Via", &[&ours.via_start(), &branch, b";rport"])
            .header("Max-Forwards", &[b"70"])
            .header(
                "From",
                &[
                    b"<sip:sbc@",
                    ours.addr.to_string().as_bytes(),
                    b">;tag=",
                    tag.as_bytes(),
                ],
            )
            .header("To", &[b"<", uri.as_bytes(), b">"])
            .header("Call-ID", &[&call_id])
            .header("CSeq", &[b"1 OPTIONS"])
            .header("Accept", &[b"application/sdp"]);
        let request = b.finish(b"");
        let t1 = self.cfg.t1;
        self.probes.insert(
            seq,
            Probe {
                dest,
                side,
                transport,
                request: request.clone(),
                resend_at: now + t1,
                every: t1,
                until: now + self.health.config().timeout,
            },
        );
        self.stats.probes_sent.inc();
        out.push(Outgoing {
            side,
            dst: SocketAddr::V4(dest),
            transport,
            data: request,
        });
    }

    /// An answer to one of our probes: a final one is judged (a provisional
    /// only stops the resending). `false` when `rx` is no probe answer.
    pub(super) fn on_probe_answer(&mut self, rx: &Incoming<'_, '_>) -> bool {
        let Some(seq) = rx
            .msg
            .via
            .branch
            .and_then(|b| b.strip_prefix(PROBE_PREFIX))
            .and_then(|rest| {
                let salt =
                    u32::from_str_radix(std::str::from_utf8(rest.get(..8)?).ok()?, 16).ok()?;
                let seq =
                    u64::from_str_radix(std::str::from_utf8(rest.get(8..)?).ok()?, 16).ok()?;
                (salt == self.salt).then_some(seq)
            })
        else {
            return false;
        };
        let StartLine::Response { code, .. } = rx.msg.start else {
            return false;
        };
        let Some(p) = self.probes.get_mut(&seq) else {
            return true;
        };
        if code < 200 {
            p.resend_at = p.until;
            return true;
        }
        let dest = p.dest;
        self.probes.remove(&seq);
        self.stats.probe_answers.inc();
        self.health.answered(dest, seq, code, rx.now);
        true
    }

    /// An operator's request from the control plane: probe a destination
    /// now, or set its state.
    pub fn health_command(&mut self, now: Ms, cmd: HealthCmd, out: &mut Vec<Outgoing>) {
        self.now = now;
        match cmd {
            HealthCmd::Probe(dest) => {
                if let Some(seq) = self.health.probe_now(dest, now) {
                    self.send_probe(dest, seq, now, out);
                }
            }
            HealthCmd::SetState(dest, state) => {
                self.health.set_admin(dest, state, now);
            }
        }
    }

    /// Moves the health reports (probe results, changes of state) since the
    /// last call into `into`.
    pub fn take_health_reports(&mut self, into: &mut Vec<HealthReport>) {
        self.health.take_reports(into);
    }

    /// The final outcome of an initial INVITE sent to `dest`: a failure
    /// (`Some(code)`: a failover code, 408 for no answer) counts toward
    /// taking it down, anything else shows it takes calls. Only gateways
    /// (and probed carriers) are judged.
    pub(super) fn invite_outcome(&mut self, dest: SocketAddr, failure: Option<u16>, now: Ms) {
        let SocketAddr::V4(dest) = dest else {
            return;
        };
        match failure {
            Some(code) => self.health.invite_failed(dest, code, now),
            None => self.health.invite_answered(dest),
        }
    }

    /// Whether routing may send a new call to `addr` now.
    pub fn usable(&self, addr: SocketAddrV4) -> bool {
        self.health.usable(addr)
    }
}
