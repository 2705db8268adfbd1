//! The JSON shapes of the REST API, defined once. The handlers read their
//! requests and write their answers with these types, `sbcctl` builds its
//! requests and reads the answers with them, and so do the API tests;
//! `openapi.json` describes the same shapes (a test holds it to these types'
//! field names and defaults).
//!
//! Requests are strict: a body must be one JSON object, unknown fields are
//! refused, and every error names its field as `field `NAME`: what is wrong`
//! (a nested field by its path, `headers.X-Tenant-ID`). Types are checked
//! while deserializing; ranges and formats serde cannot express are checked
//! by each request's [`Validate`] impl, one place each. String fields are
//! trimmed (header values are kept as given).
//!
//! Answers carry no extra checks: they are what the server wrote.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use sbc_dataplane::health::AdminState;

pub use crate::cdr::{CdrRow, FailureCount, WindowFigures};
use sbc_dataplane::media::offer::{codecs_text, parse_codecs};
use sbc_dataplane::numbers::{NumberFormat, NumberRules};
use sbc_dataplane::routing::{self, MediaEncryption, Profile};
use sbc_dataplane::sip::grammar::SipUri;
use sbc_dataplane::Side;
use serde::{Deserialize, Serialize, Serializer};

use super::body::{de, in_range};
pub use super::body::{
    from_json, parse_ipv4, parse_media_encryption, parse_number_format, parse_profile, BodyError,
    FieldError, Validate,
};
pub use crate::provisioning::{CarrierRow, GatewayHeaders, GatewayRow, TenantRow};

/// How many finished calls `GET /api/v1/calls` can show (the most kept).
pub const KEEP_RECORDS: usize = 1000;

/// The largest group number (groups are `u32` in the engine, `INT` in SQL).
const MAX_GROUP: i64 = i32::MAX as i64;

/// `POST /api/v1/carriers`: a carrier allowed to send INVITEs (OpenAPI
/// `CarrierIn`); answered 201 with the stored [`CarrierRow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierIn {
    /// Network address, dotted-quad IPv4 (required).
    #[serde(deserialize_with = "de::ipv4")]
    pub ip: Ipv4Addr,
    /// Prefix length, 0..=32 (default 32: one address).
    #[serde(default = "default_mask", deserialize_with = "de::int")]
    pub mask: i64,
    /// A name for people, not empty (required).
    #[serde(deserialize_with = "de::text")]
    pub name: String,
    /// Gateway group its INVITEs go to when no tenant applies,
    /// 0..=2147483647 (default 1).
    #[serde(default = "one", deserialize_with = "de::int")]
    pub group: i64,
}

fn default_mask() -> i64 {
    32
}
fn one() -> i64 {
    1
}

impl Validate for CarrierIn {
    fn validate(&self) -> Result<(), FieldError> {
        in_range("mask", self.mask, 0, 32)?;
        if self.name.is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        in_range("group", self.group, 0, MAX_GROUP)
    }
}

impl CarrierIn {
    /// The row to store; the database assigns its `id`.
    pub fn into_row(self) -> CarrierRow {
        CarrierRow {
            id: 0,
            ip: self.ip.to_string(),
            mask: self.mask,
            name: self.name,
            group: self.group,
        }
    }
}

/// `POST /api/v1/gateways`: a destination calls are dispatched to (OpenAPI
/// `GatewayIn`); answered 201 with the stored [`GatewayRow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayIn {
    /// `sip:IPv4[:port]`, port 5060 when absent (required).
    #[serde(deserialize_with = "de::text")]
    pub destination: String,
    /// Dispatcher group, 1..=2147483647 (default 1).
    #[serde(default = "one", deserialize_with = "de::int")]
    pub group: i64,
    /// Higher is tried first; any `i32` (default 0).
    #[serde(default, deserialize_with = "de::int")]
    pub priority: i64,
    /// Share of the calls among gateways of equal priority, 0..=1000000
    /// (default 1).
    #[serde(default = "one", deserialize_with = "de::int")]
    pub weight: i64,
    /// Free text for people (default empty).
    #[serde(default, deserialize_with = "de::text")]
    pub description: String,
    /// How the SBC speaks to it: `transparent` or `livekit` (default null:
    /// the SBC's `[routing] default_profile`, applied when routing, so
    /// changing that setting moves every gateway stored without one).
    #[serde(
        default,
        deserialize_with = "de::profile",
        serialize_with = "profile_name"
    )]
    pub profile: Option<Profile>,
    /// Digest username for the gateway's 401/407 challenges (default null:
    /// they go back to the caller); needs `auth_password`.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub auth_username: Option<String>,
    /// Its password, write-only: never in an answer
    /// (`auth_password_set` is).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub auth_password: Option<String>,
    /// Answer only challenges of this realm (default null: any).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub auth_realm: Option<String>,
    /// Headers added to every initial INVITE sent to it, as a LiveKit
    /// trunk's `headers`: an object of names (`X-` and token characters,
    /// at most 64; not `X-Tenant-ID`, which the SBC sets) to values (at
    /// most 256 characters, no control characters); at most 16 (default
    /// `{}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// SRTP toward it (LiveKit's `media_encryption`): `disable` (default),
    /// `allow` (keys offered, plain RTP when it takes none) or `require`;
    /// other than `disable` only toward a TLS destination (`sips:` or
    /// `;transport=tls`: the keys travel in the SDP, RFC 4568 section 8.3)
    /// and on an SBC that relays SRTP.
    #[serde(
        default,
        deserialize_with = "de::media_encryption",
        serialize_with = "media_encryption_name"
    )]
    pub media_encryption: MediaEncryption,
}

/// A media encryption as its name.
fn media_encryption_name<S: Serializer>(m: &MediaEncryption, s: S) -> Result<S::Ok, S::Error> {
    m.name().serialize(s)
}

/// A profile as its name, or null.
fn profile_name<S: Serializer>(profile: &Option<Profile>, s: S) -> Result<S::Ok, S::Error> {
    profile.map(Profile::name).serialize(s)
}

impl Validate for GatewayIn {
    fn validate(&self) -> Result<(), FieldError> {
        routing::parse_destination(&self.destination)
            .map_err(|e| FieldError::new("destination", e))?;
        in_range("group", self.group, 1, MAX_GROUP)?;
        in_range(
            "priority",
            self.priority,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )?;
        in_range("weight", self.weight, 0, 1_000_000)?;
        if self.auth_username.is_some() != self.auth_password.is_some() {
            let missing = if self.auth_username.is_some() {
                "auth_password"
            } else {
                "auth_username"
            };
            return Err(FieldError::new(
                missing,
                "is required with auth_username and auth_password (both or neither)",
            ));
        }
        let tls = routing::parse_destination(&self.destination)
            .is_ok_and(|(_, t)| t == sbc_dataplane::Transport::Tls);
        if self.media_encryption != MediaEncryption::Disable && !tls {
            return Err(FieldError::new(
                "media_encryption",
                "allow and require need a TLS destination (sips: or ;transport=tls): SDES keys travel in the SDP",
            ));
        }
        if self.auth_realm.is_some() && self.auth_username.is_none() {
            return Err(FieldError::new("auth_realm", "needs auth_username"));
        }
        if self.headers.len() > 16 {
            return Err(FieldError::new("headers", "at most 16 headers"));
        }
        // The column holds 6,000 characters of JSON.
        if GatewayHeaders(self.headers.clone())
            .to_column()
            .is_some_and(|c| c.chars().count() > 6_000)
        {
            return Err(FieldError::new("headers", "at most 6000 characters in all"));
        }
        for (name, value) in &self.headers {
            let token = name.len() <= 64
                && name.len() > 2
                && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("X-"))
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if !token || name.eq_ignore_ascii_case("X-Tenant-ID") {
                return Err(FieldError::new(
                    format!("headers.{name}"),
                    "must be an X- header name (token characters, at most 64; not X-Tenant-ID)",
                ));
            }
            if value.len() > 256 || value.chars().any(char::is_control) {
                return Err(FieldError::new(
                    format!("headers.{name}"),
                    "must be at most 256 characters, none a control character",
                ));
            }
        }
        for (field, v) in [
            ("auth_username", &self.auth_username),
            ("auth_password", &self.auth_password),
            ("auth_realm", &self.auth_realm),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
                    return Err(FieldError::new(
                        field,
                        "must be 1 to 128 characters, none a control character",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl GatewayIn {
    /// The row to store; the database assigns its `id`.
    pub fn into_row(self) -> GatewayRow {
        GatewayRow {
            id: 0,
            transport: crate::provisioning::transport_of(&self.destination),
            destination: self.destination,
            group: self.group,
            priority: self.priority,
            weight: self.weight,
            description: self.description,
            profile: self.profile.map(|p| p.name().to_string()),
            auth_password_set: self.auth_password.is_some(),
            auth_username: self.auth_username,
            auth_password: self.auth_password,
            auth_realm: self.auth_realm,
            headers: GatewayHeaders(self.headers),
            media_encryption: self.media_encryption.name().to_string(),
            dns: None,
        }
    }
}

/// `POST /api/v1/tenants`: adds a tenant, or updates the one with this
/// `tenant_id` (OpenAPI `Tenant`); answered 201 (added) or 200 (updated)
/// with the stored [`TenantRow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantIn {
    /// 1 to 64 letters, digits, `-` or `.` (required); `_` is not allowed as
    /// it separates a tenant prefix from the number in a Request-URI.
    #[serde(deserialize_with = "de::text")]
    pub tenant_id: String,
    /// The address its INVITEs come from, dotted-quad IPv4 (required).
    #[serde(deserialize_with = "de::ipv4")]
    pub source_ip: Ipv4Addr,
    /// Gateway group its calls go to, 1..=2147483647 (default 1).
    #[serde(default = "one", deserialize_with = "de::int")]
    pub gateway_group: i64,
    /// New calls per second allowed, 1..=1000000 (required).
    #[serde(deserialize_with = "de::int")]
    pub max_cps: i64,
    /// Calls up at once allowed, 1..=10000000 (required).
    #[serde(deserialize_with = "de::int")]
    pub max_concurrent: i64,
    /// The form of its numbers toward its gateways (the Request-URI user of
    /// an inbound call and the caller's From user): `e164`, `digits` or
    /// `as_is` (default null: numbers pass as they come).
    #[serde(
        default,
        deserialize_with = "de::number_format",
        serialize_with = "number_format_name"
    )]
    pub number_format: Option<NumberFormat>,
    /// `e164` only: the country code of national numbers, 1 to 3 digits not
    /// starting with 0 (default null: numbers without `+` or `00` are
    /// taken for international ones).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub country_code: Option<String>,
    /// A prefix removed first when a number starts with it, 1 to 16 digits
    /// or `*` after at most one `+` (default null); needs a
    /// `number_format`.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub strip_prefix: Option<String>,
    /// The codecs of the SBC's own offer to its `livekit` gateways when a
    /// carrier's INVITE has none: encoding names separated by commas, in
    /// order of preference (`"PCMA,PCMU,telephone-event"`; known: PCMU,
    /// GSM, PCMA, G722, G729, opus, telephone-event; any case), stored
    /// as written canonically (`PCMA,PCMU,telephone-event`); default null:
    /// `[routing] offer_codecs`.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub offer_codecs: Option<String>,
}

/// A number format as its name, or null.
fn number_format_name<S: Serializer>(f: &Option<NumberFormat>, s: S) -> Result<S::Ok, S::Error> {
    f.map(NumberFormat::name).serialize(s)
}

impl Validate for TenantIn {
    fn validate(&self) -> Result<(), FieldError> {
        let id = &self.tenant_id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(FieldError::new(
                "tenant_id",
                "must be 1 to 64 letters, digits, '-' or '.' ('_' separates a tenant prefix from the number)",
            ));
        }
        in_range("gateway_group", self.gateway_group, 1, MAX_GROUP)?;
        in_range("max_cps", self.max_cps, 1, 1_000_000)?;
        in_range("max_concurrent", self.max_concurrent, 1, 10_000_000)?;
        NumberRules::from_settings(
            self.number_format,
            self.country_code.as_deref(),
            self.strip_prefix.as_deref(),
        )
        .map_err(|e| FieldError::new(e.field(), e.message()))?;
        if let Some(list) = &self.offer_codecs {
            parse_codecs(list).map_err(|m| FieldError::new("offer_codecs", m))?;
        }
        Ok(())
    }
}

impl TenantIn {
    /// The row to store.
    pub fn into_row(self) -> TenantRow {
        TenantRow {
            tenant_id: self.tenant_id,
            source_ip: self.source_ip.to_string(),
            gateway_group: self.gateway_group,
            max_cps: self.max_cps,
            max_concurrent: self.max_concurrent,
            number_format: self.number_format.map(|f| f.name().to_string()),
            country_code: self.country_code,
            strip_prefix: self.strip_prefix,
            offer_codecs: self
                .offer_codecs
                .map(|list| parse_codecs(&list).map_or(list, |c| codecs_text(&c))),
        }
    }
}

/// `POST /api/v1/route`: the facts of an INVITE to route (OpenAPI
/// `RouteQuery`); answered with a [`RouteDecision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteQuery {
    /// Source address of the INVITE, dotted-quad IPv4 (required).
    #[serde(deserialize_with = "de::ipv4")]
    pub source_ip: Ipv4Addr,
    /// Its Request-URI, a `sip:` URI (required).
    #[serde(deserialize_with = "de::text")]
    pub to: String,
    /// Its headers by name, string values (default none); only
    /// `X-Tenant-ID` (any case) is looked at.
    #[serde(
        default,
        deserialize_with = "de::string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, String>,
    /// Its From URI, a `sip:` URI (default none): its user is the caller's
    /// number, which the tenant's number rules rewrite.
    #[serde(
        default,
        deserialize_with = "de::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<String>,
}

impl Validate for RouteQuery {
    fn validate(&self) -> Result<(), FieldError> {
        self.uri()?;
        self.from_uri().map(|_| ())
    }
}

impl RouteQuery {
    /// The Request-URI, parsed.
    pub fn uri(&self) -> Result<SipUri<'_>, FieldError> {
        SipUri::parse(self.to.as_bytes()).ok_or_else(|| FieldError::new("to", "must be a sip: URI"))
    }

    /// The From URI, parsed, when given.
    pub fn from_uri(&self) -> Result<Option<SipUri<'_>>, FieldError> {
        self.from
            .as_deref()
            .map(|f| {
                SipUri::parse(f.as_bytes())
                    .ok_or_else(|| FieldError::new("from", "must be a sip: URI"))
            })
            .transpose()
    }

    /// The `X-Tenant-ID` header, its name in any case.
    pub fn tenant_header(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("X-Tenant-ID"))
            .map(|(_, v)| v.as_str())
    }
}

/// What routing decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward the INVITE to the first candidate.
    Route,
    /// Answer it at once with `code`/`reason`.
    Reject,
}

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From a carrier (the private side) toward a gateway.
    Inbound,
    /// From a gateway (the public side) toward a carrier.
    Outbound,
}

impl Direction {
    /// The direction of a call whose INVITE arrived on `side`.
    pub fn of(side: Side) -> Direction {
        match side {
            Side::Private => Direction::Inbound,
            Side::Public => Direction::Outbound,
        }
    }

    /// `inbound` or `outbound`, as the JSON, CDRs, metrics and logs write it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The answer of `POST /api/v1/route` (OpenAPI `RouteDecision`): what the
/// SIP engine would do with that INVITE now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// `route` or `reject`.
    pub action: Action,
    /// `inbound` when the source is not a gateway, else `outbound`.
    pub direction: Direction,
    /// The tenant identified (null when none, or when rejected).
    pub tenant_id: Option<String>,
    /// The gateway group routed to (null for outbound calls and rejections).
    pub gateway_group: Option<u32>,
    /// The number for the Request-URI, tenant prefix stripped and, for an
    /// inbound call, in the tenant's number format (only when routed;
    /// absent when rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The caller's number for the From toward the gateway: the user of
    /// `from` in the tenant's number format (only for an inbound call of a
    /// tenant with a `number_format` and a `from` with a user; absent
    /// otherwise: the From goes as it came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_user: Option<String>,
    /// Destinations in the order they would be tried (empty when rejected).
    pub candidates: Vec<String>,
    /// The profile of each candidate, in the same order: the gateway's own
    /// (stored, or `[routing] default_profile`) for an inbound call, the
    /// calling gateway's for an outbound one (empty when rejected).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// SIP status of the rejection (null when routed).
    pub code: Option<u16>,
    /// Its reason phrase (null when routed).
    pub reason: Option<String>,
}

/// The answer of `GET /api/v1/stats/calls`: finished call outcomes since
/// start. Results are `answered`, `failed`, `cancelled`, `rejected`,
/// `limit_exceeded` and `media_timeout`; a result not seen yet is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// Seconds since the SBC started.
    pub since_s: u64,
    /// Calls up now.
    pub calls_up: u64,
    /// Tenant (`-` for calls without one) → result → count.
    pub by_tenant: BTreeMap<String, BTreeMap<String, u64>>,
    /// Result → count, over all tenants.
    pub totals: BTreeMap<String, u64>,
    /// From the CDRs over `?since=` (default 1h); null when CDRs are off.
    #[serde(default)]
    pub window: Option<CallWindow>,
}

/// The `window` of [`CallStats`]: ASR, ACD, setup time and failure codes
/// per tenant and per gateway of the calls that started in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallWindow {
    /// Its length, seconds.
    pub since_s: u64,
    /// By tenant (`-`: none).
    pub by_tenant: BTreeMap<String, WindowFigures>,
    /// By gateway address (`ip:port`).
    pub by_gateway: BTreeMap<String, WindowFigures>,
    /// Whose calls: this node's (`node`) or every node's writing to the
    /// same database (`cluster`).
    #[serde(default)]
    pub scope: String,
    /// By SBC node (`[cluster] node_id`; `-`: rows from before nodes were
    /// named); with `scope` = `node`, only this one.
    #[serde(default)]
    pub by_node: BTreeMap<String, WindowFigures>,
}

/// One source the flood guard drops (`GET /api/v1/bans`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    /// The source's IPv4 address.
    pub ip: String,
    /// Why: `scanner` (its User-Agent) or `flood` (over `[flood] requests`
    /// per `window_s`).
    pub reason: String,
    /// Seconds since it was banned.
    pub banned_for_s: u64,
    /// Seconds until the ban ends (`[flood] ban_s` after it began).
    pub expires_in_s: u64,
    /// Messages dropped from it since.
    pub dropped: u64,
}

/// The answer of `GET /api/v1/calls/active`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveList {
    /// Calls in progress (`calls.len()`, as rtpengine's `list numsessions`).
    pub count: u64,
    /// Whether the RTP figures are in (the relay answered in time).
    pub media: bool,
    /// Oldest first.
    pub calls: Vec<ActiveCallView>,
}

/// One call in progress, as `kamcmd dlg.list` and `rtpengine-ctl list
/// sessions` showed it together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveCallView {
    /// The SBC's call number.
    pub call: u64,
    /// The tenant, if any.
    pub tenant: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Direction,
    /// The caller's Call-ID.
    pub call_id: String,
    /// The caller's address, `ip:port`.
    pub caller_addr: String,
    /// The callee leg's address (the gateway of an inbound call).
    pub callee_addr: String,
    /// `ringing` or `answered`.
    pub state: String,
    /// Seconds since its INVITE.
    pub age_s: f64,
    /// Our relay ports per media line: `[caller side, callee side]`.
    pub ports: Vec<[u16; 2]>,
    /// RTP from the caller so far (all media lines).
    pub from_caller: RtpFigures,
    /// RTP from the callee so far.
    pub from_callee: RtpFigures,
}

/// The answer of `GET /api/v1/cdrs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CdrList {
    /// Newest first.
    pub cdrs: Vec<CdrRow>,
}

/// `POST /api/v1/dispatcher/ping`: the group to probe now (default null:
/// every gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingRequest {
    /// Dispatcher group, 1..=2147483647; null or absent: all.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub group: Option<i64>,
}

impl Validate for PingRequest {
    fn validate(&self) -> Result<(), FieldError> {
        match self.group {
            Some(g) => in_range("group", g, 1, MAX_GROUP),
            None => Ok(()),
        }
    }
}

/// `POST /api/v1/dispatcher/state`: an operator's setting for one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    /// The gateway's id (required).
    #[serde(deserialize_with = "de::int")]
    pub id: i64,
    /// `active` (up now; probed), `inactive` (down now; probes may bring it
    /// back) or `disabled` (never probed or used) (required).
    #[serde(
        deserialize_with = "de::admin_state",
        serialize_with = "admin_state_name"
    )]
    pub state: AdminState,
}

fn admin_state_name<S: Serializer>(s: &AdminState, ser: S) -> Result<S::Ok, S::Error> {
    s.name().serialize(ser)
}

impl Validate for StateRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `GET /api/v1/dispatcher` and the answers of ping and state: the
/// gateways with their health, as Kamailio's `dispatcher.list` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatcherList {
    /// Whether the SBC probes (`[health] interval_s` > 0).
    pub probing: bool,
    /// Gateways up.
    pub up: u64,
    /// Gateways down (inactive, disabled).
    pub down: u64,
    /// Every gateway by group, priority (highest first), id.
    pub destinations: Vec<Destination>,
}

/// One gateway and its health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    /// The gateway's id.
    pub id: i64,
    /// Its dispatcher group (Kamailio's set).
    pub group: i64,
    /// Its destination URI.
    pub uri: String,
    /// Kamailio's flags: `A` active, `I` inactive, `D` disabled, `T` trying
    /// (failures counted, still up); then `P` probing or `X` not.
    pub flags: String,
    /// `up` (routing uses it) or `down`.
    pub state: String,
    /// The operator's setting: `active`, `inactive` or `disabled`.
    pub admin: String,
    /// Its priority (higher first).
    pub priority: i64,
    /// Its weight.
    pub weight: i64,
    /// Round trip of the last answered probe, ms.
    pub latency_last_ms: Option<u64>,
    /// Mean round trip of the answered probes, ms.
    pub latency_avg_ms: Option<f64>,
    /// Failures counted toward down now.
    pub failures: u32,
    /// Why it is in its state: `OPTIONS 200`, `OPTIONS timeout`, `INVITE
    /// 503`, `set disabled`, `new`, or `not probed yet`.
    pub reason: String,
    /// Seconds since its state last changed (null before any report).
    pub since_s: Option<u64>,
    /// Probes sent to it.
    pub probes: u64,
    /// Probes that failed.
    pub probe_failures: u64,
    /// Where it is sent, `IPv4:port` in the order tried: the literal, or
    /// what its host name resolves to now (RFC 3263); empty when the name
    /// does not resolve.
    pub addresses: Vec<String>,
}

/// `GET /api/v1/calls?limit=N`: how many of the latest finished calls to
/// show, 1..=[`KEEP_RECORDS`] (default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallsQuery {
    /// At most this many calls, newest first.
    pub limit: usize,
}

impl Default for CallsQuery {
    fn default() -> Self {
        CallsQuery { limit: 100 }
    }
}

impl CallsQuery {
    /// Reads the query parameters: `limit` only.
    pub fn from_pairs(pairs: &BTreeMap<String, String>) -> Result<CallsQuery, FieldError> {
        if let Some(k) = pairs.keys().find(|k| k.as_str() != "limit") {
            return Err(FieldError::new(k.as_str(), "unknown query parameter"));
        }
        let Some(v) = pairs.get("limit") else {
            return Ok(CallsQuery::default());
        };
        match v.parse::<usize>() {
            Ok(limit) if (1..=KEEP_RECORDS).contains(&limit) => Ok(CallsQuery { limit }),
            _ => Err(FieldError::new(
                "limit",
                format!("must be a number from 1 to {KEEP_RECORDS}"),
            )),
        }
    }

    /// The query string, `limit=N`.
    pub fn to_query(&self) -> String {
        format!("limit={}", self.limit)
    }
}

/// The answer of `GET /api/v1/calls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallList {
    /// Newest first.
    pub calls: Vec<CallRecord>,
}

/// One finished call (OpenAPI `CallRecord`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The engine's call number, unique while the SBC runs.
    pub call: u64,
    /// The tenant the call was routed for (null when none).
    pub tenant: Option<String>,
    /// How it ended: `answered`, `failed`, `cancelled`, `rejected`,
    /// `limit_exceeded` or `media_timeout`.
    pub result: String,
    /// Which way it went.
    pub direction: Direction,
    /// Call-ID of the caller's leg, as the caller sent it.
    pub caller_call_id: String,
    /// Call-ID of our leg toward the callee.
    pub callee_call_id: String,
    /// Milliseconds from the INVITE to the 2xx (null when not answered).
    pub setup_ms: Option<u64>,
    /// Milliseconds from the 2xx to the end (0 when not answered).
    pub duration_ms: u64,
    /// One entry per relayed media line, in SDP order.
    pub media: Vec<MediaFigures>,
}

/// What one media line carried each way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MediaFigures {
    /// What the caller sent.
    pub from_caller: RtpFigures,
    /// What the callee sent.
    pub from_callee: RtpFigures,
}

/// RTP figures of one direction (OpenAPI `RtpFigures`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RtpFigures {
    /// Datagrams received.
    pub packets: u64,
    /// Their UDP payload bytes, RTP header included.
    pub bytes: u64,
    /// Expected from the sequence numbers minus received.
    pub lost: u64,
    /// Interarrival jitter in milliseconds, two decimals.
    pub jitter_ms: f64,
    /// RFC 4733 telephone events (DTMF digits) seen; never the digits.
    pub dtmf_events: u64,
}

/// Is the provisioning database answering?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseState {
    /// It answered a `SELECT 1` within a second.
    Ok,
    /// It did not; routing goes on with the last snapshot.
    Unavailable,
}

/// The answer of `GET /api/v1/status`. Counters are named as the data plane
/// lists them (`EngineStats::sip_counters`, `MediaStats::counters`,
/// `IoStats::counters`, `PortCounters::counters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The SBC's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// `socket` or `dpdk`.
    pub backend: String,
    /// Calls up now.
    pub calls_up: u64,
    /// Version of the routing snapshot the engine uses.
    pub snapshot_version: u64,
    /// Milliseconds since the API built its latest snapshot.
    pub snapshot_age_ms: u64,
    /// Rows in that snapshot.
    pub provisioned: Provisioned,
    /// Whether the database answers now.
    pub database: DatabaseState,
    /// `sqlite`, `mysql` or `postgres`.
    pub database_kind: String,
    /// Gateways up and down (`GET /api/v1/dispatcher` has each one).
    pub gateways: GatewayHealth,
    /// SIP engine counters by name.
    pub sip: BTreeMap<String, u64>,
    /// Media relay counters by name.
    pub media: BTreeMap<String, u64>,
    /// I/O counters, with each port's.
    pub io: IoStatus,
    /// How full each ring between threads is now, by name.
    pub rings: BTreeMap<String, RingStatus>,
    /// CPU seconds used so far by each kind of thread, by thread name
    /// (`sip-engine`, `media-relay`, `tokio-runtime-w`, ...).
    pub threads_cpu_s: BTreeMap<String, f64>,
    /// SIP over TCP/TLS: connections and messages by name
    /// (`crate::stream::StreamStats`; `open` is the connections open now).
    #[serde(default)]
    pub streams: BTreeMap<String, u64>,
    /// This node in its cluster (`[cluster] redis` set): its id, whether
    /// the store answers, how limits are counted, the live nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterStatus>,
    /// Whether this node drains (`sbcctl drain`, SIGTERM): new calls 503.
    #[serde(default)]
    pub draining: bool,
}

/// The answer to `POST`/`DELETE /api/v1/drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Whether the node drains now.
    pub draining: bool,
    /// Calls up (answered) now.
    pub calls_up: u64,
    /// Dialogs held now (answered and in setup): the drain is over at 0.
    pub dialogs: u64,
}

/// One ring of [`Status::rings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingStatus {
    /// Entries in it now.
    pub len: u64,
    /// Entries it holds at most.
    pub capacity: u64,
}

/// The `gateways` object of [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayHealth {
    /// Whether the SBC probes them (`[health] interval_s` > 0).
    pub probing: bool,
    /// Gateways routing uses.
    pub up: u64,
    /// Gateways down or disabled.
    pub down: u64,
}

/// How many rows the routing snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// Carriers.
    pub carriers: u64,
    /// Gateways.
    pub gateways: u64,
    /// Tenants.
    pub tenants: u64,
}

/// The `io` object of [`Status`]: the backend's counters by name, and
/// `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStatus {
    /// Counter name → value, only the backend in use's (`rx_packets`,
    /// `tx_errors`, ...; DPDK adds its L2/L3 ones: `dropped_bad_checksum`,
    /// `reassembled`, `polls`, ...).
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
    /// Each DPDK port's driver counters, private side first; empty on the
    /// socket backend, which has none.
    pub ports: Vec<PortStatus>,
}

/// One port's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// `private` or `public`.
    pub side: String,
    /// Counter name → value (`rx_missed`, ...).
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
}

/// The body of every error answer (OpenAPI `Error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, naming the field for a 400.
    pub error: String,
}
