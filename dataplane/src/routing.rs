//! The immutable routing snapshot the control plane builds from SQL and hands
//! to the SIP engine, and the routing decisions taken over it.
//!
//! The same functions answer the SIP engine and `POST /api/v1/route`, so the
//! API always tells what the engine would do.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::media::offer::Codec;
use crate::numbers::NumberRules;
use crate::side::Side;
use crate::sip::grammar::{parse_ipv4, SipUri};
use crate::transport::Transport;

/// A carrier allowlist entry (Kamailio's `address` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// Row id in the `carriers` table.
    pub id: i64,
    /// Network address of the allowed prefix.
    pub ip: Ipv4Addr,
    /// Prefix length in bits, 0..=32 (0 matches every address, 32 one host); above 32 counts as 32.
    pub mask: u8,
    /// Free-form label, as provisioned.
    pub name: String,
    /// Address group (Kamailio `address.grp`, the REST field `group`); kept and reported, routing
    /// does not read it.
    pub group: u32,
}

impl Carrier {
    /// Whether `ip` lies in this entry's `ip/mask` prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.mask == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.mask.min(32)))
        };
        (u32::from(ip) & mask) == (u32::from(self.ip) & mask)
    }
}

/// A dispatcher destination (Kamailio's `dispatcher` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Row id in the `gateways` table; breaks ties in the trying order (lower first).
    pub id: i64,
    /// The destination SIP URI as provisioned, e.g. `sip:203.0.113.10:5060`.
    pub destination: String,
    /// Where the destination URI points: one address for an IPv4 literal
    /// host (port 5060 by default); for a host name, what the control plane
    /// resolved (RFC 3263: SRV targets with their priority and weight, or the
    /// A records at the URI's port), lowest priority first; empty when the
    /// name does not resolve (the gateway is then never tried).
    pub targets: Vec<Resolved>,
    /// Dispatcher set this gateway belongs to (Kamailio `dispatcher.setid`).
    pub group: u32,
    /// Dispatcher priority: higher is tried first.
    pub priority: i32,
    /// Relative weight within one priority: its share of their total weight is its chance to be
    /// tried first among them; 0 puts it last.
    pub weight: u32,
    /// Free-form text, as provisioned.
    pub description: String,
    /// How the SBC speaks to it (the column's NULL resolved to the
    /// configured default by the control plane).
    pub profile: Profile,
    /// What the SBC answers its 401/407 challenges with, if it challenges.
    pub auth: Option<Arc<Credentials>>,
    /// Header lines (`Name: value\r\n`, `X-` names) added to every initial
    /// INVITE sent to it (a LiveKit trunk's `headers`, so one SBC serves
    /// several LiveKit projects); a caller's header of the same name is
    /// left out. Empty: none.
    pub headers: Arc<[u8]>,
    /// The transport its destination URI names (`;transport=`, `sips:`):
    /// every request toward it goes over it.
    pub transport: Transport,
    /// Whether its media is SRTP (SDES keys, RFC 4568; LiveKit's
    /// `media_encryption`).
    pub media_encryption: MediaEncryption,
}

/// Whether the media toward a gateway is encrypted (SRTP, RFC 3711, keyed
/// by SDES `a=crypto` lines, RFC 4568), by LiveKit's names for its trunks'
/// `media_encryption`. Whatever the gateway offers itself is answered in
/// kind (SRTP to an `a=crypto` offer) whatever this says, except that
/// `Require` refuses a plain one; the carrier side is always plain RTP.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum MediaEncryption {
    /// Plain RTP/AVP offers, no `a=crypto`.
    #[default]
    Disable,
    /// Offers carry `a=crypto` on `RTP/AVP` (best-effort SRTP, as LiveKit
    /// and Asterisk do it): SRTP when the answer takes a key, plain RTP
    /// when it takes none.
    Allow,
    /// Offers are `RTP/SAVP` with `a=crypto`: an answer (or an offer of the
    /// gateway's) without a key we gave or take ends the call (502, or 488
    /// to an offer).
    Require,
}

impl MediaEncryption {
    /// Every value, in the order of their names' documentation.
    pub const ALL: [MediaEncryption; 3] = [
        MediaEncryption::Disable,
        MediaEncryption::Allow,
        MediaEncryption::Require,
    ];

    /// The name in SQL, the API and `sbcctl`: `disable`, `allow` or `require`.
    pub fn name(self) -> &'static str {
        match self {
            MediaEncryption::Disable => "disable",
            MediaEncryption::Allow => "allow",
            MediaEncryption::Require => "require",
        }
    }

    /// The value named `name` (exactly as [`MediaEncryption::name`] writes it).
    pub fn parse(name: &str) -> Option<MediaEncryption> {
        MediaEncryption::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Digest credentials for a gateway that challenges (RFC 3261 §22; the
/// password never leaves the SBC: `Debug` hides it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
    /// Only challenges of this realm are answered, when set.
    pub realm: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// One address a gateway's destination resolved to (RFC 2782 fields for an
/// SRV target; 0 and 0 for an IPv4 literal or an A record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// The IPv4 address and port.
    pub addr: SocketAddrV4,
    /// SRV priority: lower is tried first.
    pub priority: u16,
    /// SRV weight: the share of tries among targets of one priority.
    pub weight: u16,
}

impl Resolved {
    /// An address with no SRV ranking (a literal or an A record).
    pub fn at(addr: SocketAddrV4) -> Resolved {
        Resolved {
            addr,
            priority: 0,
            weight: 0,
        }
    }
}

impl Gateway {
    /// A gateway at one address (`sip:ADDR`, as a `destination` of an IP and
    /// port resolves) in dispatcher group `group`, priority and weight 1,
    /// everything else at its default: transparent profile, UDP, no auth,
    /// headers or media encryption, no description.
    pub fn at(id: i64, addr: SocketAddrV4, group: u32) -> Gateway {
        Gateway {
            id,
            destination: format!("sip:{addr}"),
            targets: vec![Resolved::at(addr)],
            group,
            priority: 1,
            weight: 1,
            description: String::new(),
            profile: Profile::default(),
            auth: None,
            headers: Arc::default(),
            transport: Transport::default(),
            media_encryption: MediaEncryption::default(),
        }
    }

    /// The gateway's first address (the first SRV target): the one its
    /// health is listed under; `None` when its name does not resolve.
    pub fn addr(&self) -> Option<SocketAddrV4> {
        self.targets.first().map(|t| t.addr)
    }
}

/// How the SBC speaks to a gateway: which SIP features it bridges for it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Profile {
    /// Everything relayed end to end, as a proxy would.
    #[default]
    Transparent,
    /// The LiveKit shield: session timers, UPDATE, INFO, 100rel and the
    /// like are handled at the carrier's edge, and LiveKit sees only OPTIONS,
    /// INVITE, ACK, BYE, REFER and NOTIFY with an offer in every INVITE.
    Livekit,
}

impl Profile {
    /// Every profile, in the order of their names' documentation.
    pub const ALL: [Profile; 2] = [Profile::Transparent, Profile::Livekit];

    /// The profile's name in SQL, the API, `sbcctl` and the config:
    /// `transparent` or `livekit`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Transparent => "transparent",
            Profile::Livekit => "livekit",
        }
    }

    /// The profile named `name` (exactly as [`Profile::name`] writes it).
    pub fn parse(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A tenant (a customer of the SBC): how its calls are recognised, where they go and how many it
/// may place (the `tenants` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Key of the tenant, matched against `X-Tenant-ID` and against a `<tenant_id>_` prefix of the
    /// Request-URI user part.
    pub tenant_id: String,
    /// The tenant's trunk: identifies the tenant by source address on the private side when neither
    /// header nor prefix does, and is the destination (`sip:<source_ip>:5060`) of its calls from
    /// the public side.
    pub source_ip: Ipv4Addr,
    /// Dispatcher group its calls from the private side go to first (then [`BACKUP_GROUP`]).
    pub gateway_group: u32,
    /// New calls per second: the capacity and the refill rate (tokens per second) of its admission
    /// bucket.
    pub max_cps: u32,
    /// Live calls at most; a new INVITE beyond it is refused.
    pub max_concurrent: u32,
    /// The form its numbers take toward its gateways (the Request-URI user
    /// of an inbound call and its caller's From user); `None` leaves them as
    /// they come.
    pub numbers: Option<NumberRules>,
    /// The codecs, in order of preference, of the offer the SBC makes its
    /// `livekit` gateways when a carrier's INVITE has none; `None`: the
    /// configured default (`[routing] offer_codecs`).
    pub offer_codecs: Option<Vec<Codec>>,
}

/// Everything routing needs, built once per provisioning change.
#[derive(Debug, Clone, Default)]
pub struct RouteSnapshot {
    /// Version stamped by the control plane, one higher for each new snapshot; the engine reports
    /// it in its stats.
    pub version: u64,
    /// The carrier allowlist: sources allowed on the private side, and (host entries, mask 32) the
    /// destinations from the public side.
    pub carriers: Vec<Carrier>,
    /// Dispatcher gateways (public side).
    pub gateways: Vec<Gateway>,
    /// Provisioned tenants.
    pub tenants: Vec<Tenant>,
}

/// The group used when no tenant names one.
pub const DEFAULT_GROUP: u32 = 1;
/// The group tried after the tenant's own group.
pub const BACKUP_GROUP: u32 = 3;

/// What happens to a new INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The INVITE is forwarded to the first candidate; the later ones are tried on failover.
    Route {
        /// The tenant identified, if any.
        tenant_id: Option<String>,
        /// The dispatcher group routed to (the tenant's, else [`DEFAULT_GROUP`]); `None` for an
        /// INVITE from the public side.
        gateway_group: Option<u32>,
        /// The number to put in the Request-URI user part (and the To's): the
        /// tenant prefix stripped, then, for an inbound call of a tenant with
        /// number rules, in the tenant's form ([`NumberRules::normalise`]).
        user: Vec<u8>,
        /// The caller's number for the From user toward the gateway: the
        /// request's [`RouteRequest::from_user`] in the tenant's form, for an
        /// inbound call of a tenant with number rules and a From user
        /// (unchanged or not); `None` leaves the From user as it came.
        caller_user: Option<Vec<u8>>,
        /// Destinations in the order they would be tried.
        candidates: Vec<Target>,
    },
    /// The INVITE is answered at once with this final response: 403 when the source is not a
    /// carrier (private side) or not a gateway (public side), 503 when no destination is left. The
    /// engine drops a 403 case silently instead when its policy says so.
    Reject {
        /// SIP status code of the final response (RFC 3261 §21).
        code: u16,
        /// Reason phrase of the final response.
        reason: &'static str,
    },
}

/// One destination of a routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The destination as provisioned (a SIP URI).
    pub uri: String,
    /// Where to send the request: the URI's IPv4 host and port (5060 when the URI names none).
    pub addr: SocketAddrV4,
    /// The profile of the call's gateway through this target: the gateway's own for an
    /// inbound call, the calling gateway's ([`RouteSnapshot::gateway_profile`]) for an outbound one.
    pub profile: Profile,
    /// The gateway's credentials for its challenges (inbound calls; `None` toward carriers, whose
    /// challenges go back to the calling gateway).
    pub auth: Option<Arc<Credentials>>,
    /// The gateway's header lines for the initial INVITE ([`Gateway::headers`]; empty toward
    /// carriers).
    pub headers: Arc<[u8]>,
    /// How requests reach it ([`Gateway::transport`]; UDP toward carriers).
    pub transport: Transport,
    /// What the SBC offers it ([`Gateway::media_encryption`]; `Disable`
    /// toward carriers).
    pub media_encryption: MediaEncryption,
}

/// The facts of an INVITE that routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Source IPv4 address of the datagram that carried the INVITE.
    pub source: Ipv4Addr,
    /// User part of the Request-URI.
    pub user: &'a [u8],
    /// Value of an `X-Tenant-ID` header.
    pub tenant_header: Option<&'a [u8]>,
    /// User part of the From URI without its `;` parameters
    /// (`SipUri::user_number`), the caller's number; `None` when the From
    /// URI has no user or is no SIP URI.
    pub from_user: Option<&'a [u8]>,
}

impl RouteSnapshot {
    /// The carrier whose prefix matches, longest prefix first.
    pub fn carrier_for(&self, ip: Ipv4Addr) -> Option<&Carrier> {
        self.carriers
            .iter()
            .filter(|c| c.contains(ip))
            .max_by_key(|c| c.mask)
    }

    /// The profile of the gateway at `ip` (the first provisioned there), or the default
    /// profile when none is.
    pub fn gateway_profile(&self, ip: Ipv4Addr) -> Profile {
        self.gateways
            .iter()
            .find(|g| g.targets.iter().any(|t| *t.addr.ip() == ip))
            .map_or_else(Profile::default, |g| g.profile)
    }

    /// Whether `ip` is the address of a provisioned gateway (the port is not compared).
    pub fn is_gateway(&self, ip: Ipv4Addr) -> bool {
        self.gateways
            .iter()
            .any(|g| g.targets.iter().any(|t| *t.addr.ip() == ip))
    }

    /// Tenant identification: `X-Tenant-ID`, else a `tenantid_number` user
    /// prefix (returns the stripped number), else `by_source`. A number that
    /// carries the prefix of the tenant the header named loses it too.
    fn identify<'a>(
        &'a self,
        req: &RouteRequest<'_>,
        by_source: bool,
    ) -> (Option<&'a Tenant>, Vec<u8>) {
        let user = req.user.to_vec();
        if let Some(h) = req.tenant_header {
            if let Some(t) = self.tenants.iter().find(|t| t.tenant_id.as_bytes() == h) {
                let own = req
                    .user
                    .strip_prefix(t.tenant_id.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"_"));
                return (Some(t), own.map_or(user, <[u8]>::to_vec));
            }
        }
        if let Some(us) = req.user.iter().position(|&b| b == b'_') {
            let (prefix, rest) = req.user.split_at(us);
            if let Some(t) = self
                .tenants
                .iter()
                .find(|t| t.tenant_id.as_bytes() == prefix)
            {
                return (Some(t), rest.get(1..).unwrap_or_default().to_vec());
            }
        }
        if by_source {
            if let Some(t) = self.tenants.iter().find(|t| t.source_ip == req.source) {
                return (Some(t), user);
            }
        }
        (None, user)
    }

    /// Gateways of a group in the order they are tried: higher priority first
    /// (as Kamailio's dispatcher sorts); within one priority a weighted random
    /// order (each gateway's chance to come first is its share of the weight;
    /// weight 0 comes last); `random` drives the draw.
    pub fn group_candidates(&self, group: u32, random: &mut u64) -> Vec<Target> {
        let mut gws: Vec<(&Gateway, f64)> = self
            .gateways
            .iter()
            .filter(|g| g.group == group)
            .map(|g| (g, weighted_key(g.weight, random)))
            .collect();
        gws.sort_by(|(a, ka), (b, kb)| {
            b.priority
                .cmp(&a.priority)
                .then(kb.total_cmp(ka))
                .then(a.id.cmp(&b.id))
        });
        // Each gateway stands for its resolved addresses, in RFC 2782 order.
        gws.into_iter()
            .flat_map(|(g, _)| {
                srv_order(&g.targets, random)
                    .into_iter()
                    .map(|addr| Target {
                        uri: g.destination.clone(),
                        addr,
                        profile: g.profile,
                        auth: g.auth.clone(),
                        headers: g.headers.clone(),
                        transport: g.transport,
                        media_encryption: g.media_encryption,
                    })
            })
            .collect()
    }

    /// An INVITE from the private side: carrier check, tenant, then the
    /// tenant's group followed by the backup group. The numbers toward the
    /// gateway (Request-URI user, caller's From user) take the tenant's
    /// number rules, when it has any.
    pub fn route_inbound(&self, req: &RouteRequest<'_>, random: &mut u64) -> Decision {
        if self.carrier_for(req.source).is_none() {
            return Decision::Reject {
                code: 403,
                reason: "Forbidden - source is not a carrier",
            };
        }
        let (tenant, user) = self.identify(req, true);
        let rules = tenant.and_then(|t| t.numbers.as_ref());
        let (user, caller_user) = match rules {
            Some(r) => (
                r.normalise(&user).into_owned(),
                req.from_user.map(|u| r.normalise(u).into_owned()),
            ),
            None => (user, None),
        };
        let group = tenant.map_or(DEFAULT_GROUP, |t| t.gateway_group);
        let mut candidates = self.group_candidates(group, random);
        if group != BACKUP_GROUP {
            candidates.extend(self.group_candidates(BACKUP_GROUP, random));
        }
        if candidates.is_empty() {
            return Decision::Reject {
                code: 503,
                reason: "Service Unavailable - no gateway",
            };
        }
        Decision::Route {
            tenant_id: tenant.map(|t| t.tenant_id.clone()),
            gateway_group: Some(group),
            user,
            caller_user,
            candidates,
        }
    }

    /// An INVITE from the public side: only from a provisioned gateway; to the
    /// tenant's trunk, else to the host carriers (mask 32) by lowest id. The
    /// numbers go on as they came (tenant prefix stripped): a tenant's number
    /// rules describe its gateways' form, not its carriers'.
    pub fn route_outbound(&self, req: &RouteRequest<'_>) -> Decision {
        if !self.is_gateway(req.source) {
            return Decision::Reject {
                code: 403,
                reason: "Forbidden - source is not a gateway",
            };
        }
        let (tenant, user) = self.identify(req, false);
        let profile = self.gateway_profile(req.source);
        let candidates: Vec<Target> = match tenant {
            Some(t) => vec![Target {
                uri: format!("sip:{}:5060", t.source_ip),
                addr: SocketAddrV4::new(t.source_ip, 5060),
                profile,
                auth: None,
                headers: Arc::default(),
                transport: Transport::Udp,
                media_encryption: MediaEncryption::Disable,
            }],
            None => {
                let mut hosts: Vec<&Carrier> =
                    self.carriers.iter().filter(|c| c.mask == 32).collect();
                hosts.sort_by_key(|c| c.id);
                hosts
                    .into_iter()
                    .map(|c| Target {
                        uri: format!("sip:{}:5060", c.ip),
                        addr: SocketAddrV4::new(c.ip, 5060),
                        profile,
                        auth: None,
                        headers: Arc::default(),
                        transport: Transport::Udp,
                        media_encryption: MediaEncryption::Disable,
                    })
                    .collect()
            }
        };
        if candidates.is_empty() {
            return Decision::Reject {
                code: 503,
                reason: "Service Unavailable - no carrier",
            };
        }
        Decision::Route {
            tenant_id: tenant.map(|t| t.tenant_id.clone()),
            gateway_group: None,
            user,
            caller_user: None,
            candidates,
        }
    }

    /// The decision for an INVITE arriving on `side`.
    pub fn route(&self, side: Side, req: &RouteRequest<'_>, random: &mut u64) -> Decision {
        match side {
            Side::Private => self.route_inbound(req, random),
            Side::Public => self.route_outbound(req),
        }
    }

    /// The tenant whose `tenant_id` is exactly `id`; `None` when no such tenant is provisioned.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.tenant_id == id)
    }
}

/// The sort key of a weighted random order (Efraimidis-Spirakis: u^(1/w),
/// larger first): sorting by it makes an item's chance to come first its
/// share of the total weight; weight 0 gets -1, after every other.
fn weighted_key(weight: u32, random: &mut u64) -> f64 {
    // Drawn for weight 0 too: every item takes one number.
    let u = ((crate::rng::next(random) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    if weight == 0 {
        return -1.0;
    }
    u.powf(1.0 / f64::from(weight))
}

/// The order in which `targets` are tried (RFC 2782): lower priority
/// first; within one priority, a weighted random order (a target's chance
/// to come first is its share of the weights; weight 0 ones last), `random`
/// drawing. One target is returned as is.
pub fn srv_order(targets: &[Resolved], random: &mut u64) -> Vec<SocketAddrV4> {
    if let [only] = targets {
        return vec![only.addr];
    }
    let mut keyed: Vec<(&Resolved, f64)> = targets
        .iter()
        .map(|t| (t, weighted_key(u32::from(t.weight), random)))
        .collect();
    keyed.sort_by(|(a, ka), (b, kb)| a.priority.cmp(&b.priority).then(kb.total_cmp(ka)));
    keyed.into_iter().map(|(t, _)| t.addr).collect()
}

/// Where a gateway's destination URI points before DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An IPv4 literal host: the address, with the transport's default
    /// port (5060, or 5061 for TLS) unless written.
    Literal(SocketAddrV4),
    /// A host name for the control plane to resolve (RFC 3263): the port
    /// when the URI writes one (then A records only, no SRV).
    Name {
        /// The host name, lower case, without a trailing dot.
        host: String,
        /// The URI's port, if written.
        port: Option<u16>,
    },
}

/// Parses a gateway destination: a `sip:` or `sips:` URI whose host is an
/// IPv4 literal or a host name (RFC 1123 labels), with the transport it
/// names: `;transport=udp|tcp|tls` (UDP when absent), and TLS for `sips:`
/// (RFC 3261 §19.1, §26.2; `sips:` with `;transport=udp` is refused).
/// The engine never resolves: names are the control plane's (`dns`).
/// Errors name what is wrong: no SIP URI, URI headers, IPv6, a bad host
/// name, an unknown transport.
pub fn parse_destination(uri: &str) -> Result<(Destination, Transport), &'static str> {
    let parsed = SipUri::parse(uri.as_bytes()).ok_or("not a sip: or sips: URI")?;
    if parsed.has_headers {
        return Err("URI headers are not allowed");
    }
    let sips = uri
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
    let named = match crate::sip::grammar::param(parsed.params, "transport") {
        None => None,
        Some(v) => Some(
            v.and_then(Transport::parse)
                .ok_or("transport must be udp, tcp or tls")?,
        ),
    };
    let transport = match (sips, named) {
        (true, Some(Transport::Udp)) => return Err("a sips: URI cannot name transport=udp"),
        // sips: over TCP is TLS (RFC 3261 26.2.2).
        (true, _) => Transport::Tls,
        (false, t) => t.unwrap_or_default(),
    };
    if let Some(ip) = parse_ipv4(parsed.host) {
        return Ok((
            Destination::Literal(SocketAddrV4::new(
                ip,
                parsed.port.unwrap_or(transport.default_port()),
            )),
            transport,
        ));
    }
    let host = std::str::from_utf8(parsed.host)
        .map_err(|_| "host must be an IPv4 address or a host name")?;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if host.len() > 253 || !host.split('.').all(label_ok) || last_numeric {
        return Err("host must be an IPv4 address or a host name");
    }
    Ok((
        Destination::Name {
            host,
            port: parsed.port,
        },
        transport,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> RouteSnapshot {
        let gw = |id, last, group, priority, weight| Gateway {
            id,
            destination: format!("sip:203.0.113.{last}:5060"),
            targets: vec![Resolved::at(SocketAddrV4::new(
                Ipv4Addr::new(203, 0, 113, last),
                5060,
            ))],
            group,
            priority,
            weight,
            description: String::new(),
            profile: Default::default(),
            auth: None,
            headers: Arc::default(),
            transport: Transport::Udp,
            media_encryption: MediaEncryption::Disable,
        };
        RouteSnapshot {
            version: 1,
            carriers: vec![
                Carrier {
                    id: 1,
                    ip: Ipv4Addr::new(10, 0, 1, 0),
                    mask: 24,
                    name: "net".into(),
                    group: 1,
                },
                Carrier {
                    id: 2,
                    ip: Ipv4Addr::new(10, 0, 1, 10),
                    mask: 32,
                    name: "c1".into(),
                    group: 1,
                },
            ],
            gateways: vec![gw(1, 10, 1, 1, 1), gw(2, 11, 1, 5, 1), gw(3, 12, 3, 1, 1)],
            tenants: vec![Tenant {
                tenant_id: "acme".into(),
                source_ip: Ipv4Addr::new(10, 0, 1, 50),
                gateway_group: 3,
                max_cps: 10,
                max_concurrent: 10,
                numbers: None,
                offer_codecs: None,
            }],
        }
    }

    #[test]
    fn inbound_needs_a_carrier_and_orders_by_priority() {
        let s = snap();
        let req = |ip, user| RouteRequest {
            source: ip,
            user,
            tenant_header: None,
            from_user: None,
        };
        assert!(matches!(
            s.route_inbound(&req(Ipv4Addr::new(10, 0, 2, 1), b"1"), &mut 1),
            Decision::Reject { code: 403, .. }
        ));
        let Decision::Route { candidates, .. } =
            s.route_inbound(&req(Ipv4Addr::new(10, 0, 1, 10), b"1"), &mut 1)
        else {
            panic!("expected a route")
        };
        assert_eq!(candidates[0].addr.ip(), &Ipv4Addr::new(203, 0, 113, 11));
        // Group 1 by priority, then the backup group 3.
        assert_eq!(candidates.len(), 3);
        assert_eq!(candidates[2].addr.ip(), &Ipv4Addr::new(203, 0, 113, 12));
        assert_eq!(s.carrier_for(Ipv4Addr::new(10, 0, 1, 10)).unwrap().id, 2);
    }

    #[test]
    fn weights_share_the_first_place() {
        let mut s = snap();
        s.gateways[0].priority = 5;
        s.gateways[0].weight = 3;
        let mut rnd = 42u64;
        let firsts = (0..4000)
            .filter(|_| {
                s.group_candidates(1, &mut rnd)[0].addr.ip() == &Ipv4Addr::new(203, 0, 113, 10)
            })
            .count();
        // weight 3 against 1: three quarters of the draws.
        assert!((2800..3200).contains(&firsts), "{firsts}");
    }

    #[test]
    fn tenant_prefix_is_stripped() {
        let s = snap();
        let req = RouteRequest {
            source: Ipv4Addr::new(10, 0, 1, 10),
            user: b"acme_919876543210",
            tenant_header: None,
            from_user: None,
        };
        let Decision::Route {
            tenant_id,
            user,
            gateway_group,
            ..
        } = s.route_inbound(&req, &mut 1)
        else {
            panic!("expected a route")
        };
        assert_eq!(tenant_id.as_deref(), Some("acme"));
        assert_eq!(user, b"919876543210");
        assert_eq!(gateway_group, Some(3));
    }

    /// `snap()` with acme on e164, country code 1, uk on e164, country code
    /// 44 and outside-line digit 9, and plain without number rules.
    fn snap_with_rules() -> RouteSnapshot {
        use crate::numbers::NumberFormat::E164;
        let mut s = snap();
        s.tenants[0].numbers = Some(NumberRules::new(E164, Some("1"), None).unwrap());
        s.tenants.push(Tenant {
            tenant_id: "uk".into(),
            source_ip: Ipv4Addr::new(10, 0, 9, 9),
            gateway_group: 1,
            max_cps: 10,
            max_concurrent: 10,
            numbers: Some(NumberRules::new(E164, Some("44"), Some("9")).unwrap()),
            offer_codecs: None,
        });
        s.tenants.push(Tenant {
            tenant_id: "plain".into(),
            source_ip: Ipv4Addr::new(10, 0, 9, 10),
            gateway_group: 1,
            max_cps: 10,
            max_concurrent: 10,
            numbers: None,
            offer_codecs: None,
        });
        s
    }

    /// The Request-URI user and the caller's number of an inbound call.
    fn numbers_of(
        s: &RouteSnapshot,
        source: Ipv4Addr,
        user: &[u8],
        header: Option<&[u8]>,
        from: Option<&[u8]>,
    ) -> (Option<String>, String, Option<String>) {
        let req = RouteRequest {
            source,
            user,
            tenant_header: header,
            from_user: from,
        };
        let Decision::Route {
            tenant_id,
            user,
            caller_user,
            ..
        } = s.route(Side::Private, &req, &mut 1)
        else {
            panic!("expected a route")
        };
        let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
        (tenant_id, text(user), caller_user.map(text))
    }

    #[test]
    fn inbound_numbers_take_the_tenants_form() {
        let s = snap_with_rules();
        let carrier = Ipv4Addr::new(10, 0, 1, 10);
        let acme = Some("acme".to_string());
        // The tenant prefix goes first, then the rules: 00 is international.
        assert_eq!(
            numbers_of(
                &s,
                carrier,
                b"acme_0014155550123",
                None,
                Some(b"4155550199")
            ),
            (
                acme.clone(),
                "+14155550123".into(),
                Some("+14155550199".into())
            )
        );
        assert_eq!(
            numbers_of(
                &s,
                carrier,
                b"acme_4155550123",
                None,
                Some(b"1-415-555-0199")
            ),
            (
                acme.clone(),
                "+14155550123".into(),
                Some("+14155550199".into())
            )
        );
        // By header, and by source (acme's trunk is a carrier address too).
        assert_eq!(
            numbers_of(
                &s,
                carrier,
                b"(415) 555-0123",
                Some(b"acme"),
                Some(b"alice")
            ),
            (acme.clone(), "+14155550123".into(), Some("alice".into()))
        );
        // The header and the same tenant's prefix: the prefix goes too. Another
        // tenant's prefix is part of the number (the header decides).
        assert_eq!(
            numbers_of(&s, carrier, b"acme_4155550123", Some(b"acme"), None),
            (acme.clone(), "+14155550123".into(), None)
        );
        assert_eq!(
            numbers_of(&s, carrier, b"plain_4155550123", Some(b"acme"), None),
            (acme.clone(), "plain_4155550123".into(), None)
        );
        assert_eq!(
            numbers_of(&s, Ipv4Addr::new(10, 0, 1, 50), b"14155550123", None, None),
            (acme.clone(), "+14155550123".into(), None)
        );
        // A number the rules cannot complete goes as it came.
        assert_eq!(
            numbers_of(&s, carrier, b"acme_911", None, Some(b"+14155550199")),
            (acme, "911".into(), Some("+14155550199".into()))
        );
        // uk: the outside-line 9, then the trunk 0 gives way to +44.
        assert_eq!(
            numbers_of(
                &s,
                carrier,
                b"uk_907700900123",
                None,
                Some(b"020 7946 0958")
            ),
            (
                Some("uk".into()),
                "+447700900123".into(),
                Some("+442079460958".into())
            )
        );
        // No rules (a tenant without them, or no tenant): nothing changes.
        assert_eq!(
            numbers_of(
                &s,
                carrier,
                b"plain_0014155550123",
                None,
                Some(b"415-555-0199")
            ),
            (Some("plain".into()), "0014155550123".into(), None)
        );
        assert_eq!(
            numbers_of(&s, carrier, b"4155550123", None, Some(b"4155550199")),
            (None, "4155550123".into(), None)
        );
    }

    #[test]
    fn outbound_numbers_go_as_they_came() {
        let s = snap_with_rules();
        let req = RouteRequest {
            source: Ipv4Addr::new(203, 0, 113, 10),
            user: b"acme_4155550123",
            tenant_header: None,
            from_user: Some(b"+14155550199"),
        };
        let Decision::Route {
            tenant_id,
            user,
            caller_user,
            ..
        } = s.route(Side::Public, &req, &mut 1)
        else {
            panic!("expected a route")
        };
        assert_eq!(tenant_id.as_deref(), Some("acme"));
        assert_eq!(user, b"4155550123");
        assert_eq!(caller_user, None);
    }

    #[test]
    fn outbound_goes_to_host_carriers() {
        let s = snap();
        let req = RouteRequest {
            source: Ipv4Addr::new(203, 0, 113, 10),
            user: b"1",
            tenant_header: None,
            from_user: None,
        };
        let Decision::Route { candidates, .. } = s.route_outbound(&req) else {
            panic!("expected a route")
        };
        assert_eq!(
            candidates[0].addr,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10), 5060)
        );
        let req = RouteRequest {
            source: Ipv4Addr::new(198, 51, 100, 1),
            user: b"1",
            tenant_header: None,
            from_user: None,
        };
        assert!(matches!(
            s.route_outbound(&req),
            Decision::Reject { code: 403, .. }
        ));
    }

    #[test]
    fn destinations_name_literals_or_hosts_with_their_transport() {
        let lit = |a: &str| Destination::Literal(a.parse().unwrap());
        assert_eq!(
            parse_destination("sip:203.0.113.10"),
            Ok((lit("203.0.113.10:5060"), Transport::Udp))
        );
        assert_eq!(
            parse_destination("sip:LiveKit-GW1.Example.com.:5080;transport=UDP"),
            Ok((
                Destination::Name {
                    host: "livekit-gw1.example.com".into(),
                    port: Some(5080)
                },
                Transport::Udp
            ))
        );
        assert_eq!(
            parse_destination("sip:p.sip.livekit.cloud;transport=tcp"),
            Ok((
                Destination::Name {
                    host: "p.sip.livekit.cloud".into(),
                    port: None
                },
                Transport::Tcp
            ))
        );
        // TLS: sips: or ;transport=tls, port 5061 unless written.
        assert_eq!(
            parse_destination("sips:203.0.113.10"),
            Ok((lit("203.0.113.10:5061"), Transport::Tls))
        );
        assert_eq!(
            parse_destination("sip:203.0.113.10:5071;transport=TLS"),
            Ok((lit("203.0.113.10:5071"), Transport::Tls))
        );
        assert_eq!(
            parse_destination("sips:203.0.113.10;transport=tcp"),
            Ok((lit("203.0.113.10:5061"), Transport::Tls))
        );
        for bad in [
            "sip:bad_host.example.com",
            "sip:-x.example.com",
            "sip:1.2.3",
            "sip:[2001:db8::1]",
            "sip:a..b",
            "sip:203.0.113.10;transport=sctp",
            "sips:203.0.113.10;transport=udp",
        ] {
            assert!(parse_destination(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_destination("sip:1.2.3"),
            Err("host must be an IPv4 address or a host name")
        );
        assert_eq!(
            parse_destination("sip:gw?x=1"),
            Err("URI headers are not allowed")
        );
    }

    #[test]
    fn srv_targets_go_by_priority_then_weight() {
        let t = |last, priority, weight| Resolved {
            addr: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, last), 5060),
            priority,
            weight,
        };
        // Priority 10: .1 (weight 60) and .2 (weight 20) and .3 (weight 0); priority 20: .4.
        let targets = [t(4, 20, 5), t(3, 10, 0), t(2, 10, 20), t(1, 10, 60)];
        let mut random = 7;
        let mut first_is_1 = 0;
        for _ in 0..4_000 {
            let order = srv_order(&targets, &mut random);
            let lasts: Vec<u8> = order.iter().map(|a| a.ip().octets()[3]).collect();
            assert_eq!(lasts.len(), 4);
            assert_eq!(
                lasts[2..],
                [3, 4],
                "weight 0 last in its priority, then priority 20"
            );
            first_is_1 += usize::from(lasts[0] == 1);
        }
        // .1 holds 60 of the 80 weight: first about 75% of the time.
        assert!((2_800..3_200).contains(&first_is_1), "{first_is_1}");
        assert_eq!(srv_order(&targets[..1], &mut random), vec![targets[0].addr]);
        assert!(srv_order(&[], &mut random).is_empty());
    }
}
