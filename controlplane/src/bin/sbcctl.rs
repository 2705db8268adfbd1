//! `sbcctl`: the command line for the SBC's REST API, with the argument
//! order of the old `kamctl-sbc.sh`.
//!
//! `--api URL` (or `SBC_API`) picks the SBC, `SBC_API_TOKEN` carries the
//! bearer token, `--json` prints the API's JSON instead of tables. Errors go to
//! stderr with the API's message; the exit code is 1 for a refused request and
//! 3 when the API cannot be reached (clap's usage errors exit 2).
//!
//! Requests are built and answers read with the API's own types
//! (`sbc_controlplane::api::model`), so the JSON shapes are defined once. An
//! IPv4 argument that is no address, or a profile or number format that does
//! not exist, is refused here, with the API's message.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sbc_controlplane::api::model::{
    self, Action, ActiveCallView, ActiveList, BanView, CallList, CallRecord, CallStats, CallsQuery,
    CarrierIn, CarrierRow, CdrList, CdrRow, Destination, Direction, DispatcherList, ErrorBody,
    GatewayIn, GatewayRow, PingRequest, RouteDecision, RouteQuery, StateRequest, Status, TenantIn,
    TenantRow, WindowFigures,
};
use sbc_controlplane::cluster::NodeState;
use sbc_dataplane::health::AdminState;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "sbcctl",
    version,
    about = "Provision and inspect the SBC over its REST API"
)]
struct Cli {
    /// Base URL of the SBC's API.
    #[arg(long, env = "SBC_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// For an `https://` API: the CA certificate(s) (PEM) its certificate
    /// must chain to, e.g. a self-signed `api.tls_cert` itself [default: the
    /// Mozilla roots].
    #[arg(long, env = "SBC_API_CA")]
    ca: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// add-gateway GROUP URI DESC PRIORITY WEIGHT [--profile transparent|livekit]
    /// [--auth-username U --auth-password P [--auth-realm R]]
    AddGateway {
        group: i64,
        uri: String,
        desc: String,
        priority: i64,
        weight: i64,
        /// How the SBC speaks to it: transparent or livekit [default: the
        /// SBC's routing.default_profile].
        #[arg(long)]
        profile: Option<String>,
        /// Digest username the SBC answers the gateway's 401/407 with.
        #[arg(long, requires = "auth_password")]
        auth_username: Option<String>,
        /// Its password (write-only: never listed); better from the
        /// environment than the command line.
        #[arg(long, env = "SBC_GATEWAY_AUTH_PASSWORD", hide_env_values = true)]
        auth_password: Option<String>,
        /// Answer only challenges of this realm.
        #[arg(long, requires = "auth_username")]
        auth_realm: Option<String>,
        /// A header added to every initial INVITE sent to it, `X-Name:
        /// value` (a LiveKit trunk's headers); repeat for more.
        #[arg(long = "header", value_name = "X-NAME: VALUE")]
        headers: Vec<String>,
        /// SRTP toward it: disable, allow or require (a TLS destination
        /// only; LiveKit's media_encryption).
        #[arg(long, default_value = "disable")]
        media_encryption: String,
    },
    /// List gateways.
    ListGateways,
    /// Remove a gateway by id.
    RemoveGateway { id: i64 },
    /// add-tenant ID SOURCE_IP GROUP MAX_CPS MAX_CONCURRENT [--number-format
    /// e164|digits|as_is [--country-code CC] [--strip-prefix P]]
    /// [--offer-codecs LIST] (adds, or replaces the whole tenant: unset flags
    /// clear its number rules and codecs)
    AddTenant {
        id: String,
        source_ip: String,
        group: i64,
        max_cps: i64,
        max_concurrent: i64,
        /// The form of its numbers toward its gateways: e164, digits or
        /// as_is [default: numbers pass as they come].
        #[arg(long)]
        number_format: Option<String>,
        /// e164 only: the country code of national numbers, e.g. 1 or 44.
        #[arg(long)]
        country_code: Option<String>,
        /// A prefix removed first when a number starts with it, e.g. 9.
        #[arg(long)]
        strip_prefix: Option<String>,
        /// The codecs of the SBC's own offer to its livekit gateways for a
        /// delayed offer, e.g. PCMA,PCMU,telephone-event [default: the SBC's
        /// routing.offer_codecs].
        #[arg(long)]
        offer_codecs: Option<String>,
    },
    /// List tenants.
    ListTenants,
    /// Remove a tenant by tenant id.
    RemoveTenant { id: String },
    /// add-carrier IP MASK NAME GROUP
    AddCarrier {
        ip: String,
        mask: i64,
        name: String,
        group: i64,
    },
    /// List carriers.
    ListCarriers,
    /// Remove a carrier by id.
    RemoveCarrier { id: i64 },
    /// Call statistics: outcomes by tenant since start, and per tenant and
    /// gateway over the last --since (ASR, ACD, setup, top failure codes),
    /// as `kamctl-sbc.sh stats` showed recent failures.
    Stats {
        /// The window, e.g. 15m, 1h, 1d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// The window's figures of every node writing to the same database
        /// (by tenant, gateway and node), not only this node's.
        #[arg(long)]
        cluster: bool,
    },
    /// Stored call records (CDRs), newest first.
    Cdrs {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Calls that started in the last ..., e.g. 1h.
        #[arg(long, default_value = "1d")]
        since: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The latest finished calls with their RTP figures (sums over media lines).
    Calls {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The calls in progress instead (tenant, direction, gateway,
        /// state, age, relay ports, RTP so far each way), as `kamcmd
        /// dlg.list` and `rtpengine-ctl list sessions` gave them.
        #[arg(long)]
        active: bool,
        /// With --active: only how many (`rtpengine-ctl list numsessions`).
        #[arg(long, requires = "active")]
        count: bool,
    },
    /// SBC status: version, backend, uptime, calls, gateways, database,
    /// snapshot, the largest drop counters (`--json`: the API's document).
    Status,
    /// Gateway health, as Kamailio's dispatcher.list / dispatcher.ping /
    /// dispatcher.set_state.
    Dispatcher {
        #[command(subcommand)]
        command: DispatcherCommand,
    },
    /// The flood guard's bans: ban list | ban remove IP.
    Ban {
        #[command(subcommand)]
        command: BanCommand,
    },
    /// Is the SBC's API answering?
    Ping,
    /// drain [--cancel]: this node takes no new call (INVITE and OPTIONS
    /// get 503, so carriers' probes move to the other nodes) while calls in
    /// progress finish; in a cluster it leaves the membership once the last
    /// one ended. --cancel takes new calls again.
    Drain {
        /// End the drain.
        #[arg(long)]
        cancel: bool,
    },
    /// capture --seconds N [--filter sip|rtp|all] > calls.pcap: SIP in and
    /// out, relayed media, or both, for N seconds as a pcap file (tshark,
    /// Wireshark, sngrep -I); works on the DPDK backend too, where tcpdump
    /// sees nothing.
    Capture {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// `sip`, `rtp` (RTP and RTCP the relay forwards) or `all`.
        #[arg(long, default_value = "sip")]
        filter: String,
    },
    /// The routing decision for an INVITE: route SOURCE_IP TO [--from URI] [--header NAME=VALUE]...
    Route {
        source_ip: String,
        to: String,
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// Its From URI: the caller's number, as the tenant's rules write it.
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BanCommand {
    /// The sources dropped before parsing (scanners, floods): address,
    /// reason, how long ago, how long still, messages dropped.
    List,
    /// remove IP: lift its ban now.
    Remove { ip: String },
}

#[derive(Debug, Subcommand)]
enum DispatcherCommand {
    /// Every gateway: group, URI, flags (A active, I inactive, D disabled,
    /// T trying; P probing, X not), priority, weight, latency, state.
    List,
    /// ping [GROUP]: probe the group's gateways (all without GROUP) now and
    /// print what they answered.
    Ping { group: Option<i64> },
    /// set-state ID active|inactive|disabled: active brings a gateway up now,
    /// inactive takes it down (probes may bring it back), disabled takes it
    /// out of probing and routing.
    SetState { id: i64, state: String },
}

/// Why a command failed.
enum Failure {
    /// The API (or this tool, for an argument) refused it: exit 1.
    Refused(String),
    /// No answer from the API: exit 3.
    Unreachable(String),
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// Sends a request (an optional JSON body, an optional timeout) and
    /// gives the answer when it is a 2xx; a refusal carries the API's
    /// message, a failure to connect says so.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
        wait: Option<std::time::Duration>,
    ) -> Result<(String, ureq::Response), Failure> {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let mut req = self.agent.request(method, &url);
        if let Some(w) = wait {
            req = req.timeout(w);
        }
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => Ok((url, r)),
            Err(ureq::Error::Status(code, r)) => {
                let msg = r
                    .into_json::<ErrorBody>()
                    .map(|b| b.error)
                    .unwrap_or_default();
                Err(Failure::Refused(format!("{code}: {msg}")))
            }
            Err(e) => Err(Failure::Unreachable(format!("cannot reach {url}: {e}"))),
        }
    }

    /// Sends a request with an optional JSON body; the answer's JSON (null
    /// for 204 No Content).
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Value, Failure> {
        let (url, r) = self.send(method, path, body, None)?;
        if r.status() == 204 {
            return Ok(Value::Null);
        }
        r.into_json()
            .map_err(|e| Failure::Refused(format!("bad answer from {url}: {e}")))
    }

    /// A GET.
    fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call("GET", path, None::<&()>)
    }

    /// A GET whose answer is bytes (a pcap file), waiting up to `wait`.
    fn get_bytes(&self, path: &str, wait: std::time::Duration) -> Result<Vec<u8>, Failure> {
        let (url, r) = self.send("GET", path, None::<&()>, Some(wait))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes)
            .map_err(|e| Failure::Unreachable(format!("reading {url}: {e}")))?;
        Ok(bytes)
    }
}

/// An answer read as its model type.
fn typed<T: DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Refused(format!("unexpected answer: {e}")))
}

/// An IPv4 argument, refused with the API's message.
fn ipv4(field: &str, text: &str) -> Result<Ipv4Addr, Failure> {
    model::parse_ipv4(field, text).map_err(|e| Failure::Refused(e.to_string()))
}

/// The HTTP agent: 10 s timeout; with `ca`, TLS verified against it.
fn agent(ca: Option<&std::path::Path>) -> Result<ureq::Agent, Failure> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let builder = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(10));
    let Some(ca) = ca else {
        return Ok(builder.build());
    };
    let bad = |e: String| Failure::Refused(format!("--ca {}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(builder.tls_config(std::sync::Arc::new(tls)).build())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let agent = match agent(cli.ca.as_deref()) {
        Ok(a) => a,
        Err(Failure::Refused(m) | Failure::Unreachable(m)) => {
            eprintln!("sbcctl: {m}");
            return ExitCode::from(2);
        }
    };
    let client = Client {
        base: cli.api.clone(),
        token: std::env::var("SBC_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        agent,
    };
    match run(&client, &cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(m)) => {
            eprintln!("sbcctl: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!("sbcctl: {m}");
            ExitCode::from(3)
        }
    }
}

fn run(c: &Client, cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::AddGateway {
            group,
            uri,
            desc,
            priority,
            weight,
            profile,
            auth_username,
            auth_password,
            auth_realm,
            headers,
            media_encryption,
        } => {
            let mut extra = std::collections::BTreeMap::new();
            for h in headers {
                let Some((name, value)) = h.split_once(':') else {
                    return Err(Failure::Refused(format!(
                        "--header {h:?}: must be \"X-Name: value\""
                    )));
                };
                extra.insert(name.trim().to_string(), value.trim().to_string());
            }
            let gateway = GatewayIn {
                destination: uri.clone(),
                group: *group,
                priority: *priority,
                weight: *weight,
                description: desc.clone(),
                profile: profile
                    .as_deref()
                    .map(|p| model::parse_profile("profile", p))
                    .transpose()
                    .map_err(|e| Failure::Refused(e.to_string()))?,
                auth_username: auth_username.clone(),
                // The environment's password only goes with a username.
                auth_password: auth_username.as_ref().and(auth_password.clone()),
                auth_realm: auth_realm.clone(),
                headers: extra,
                media_encryption: model::parse_media_encryption(
                    "media_encryption",
                    media_encryption,
                )
                .map_err(|e| Failure::Refused(e.to_string()))?,
            };
            let v = c.call("POST", "/api/v1/gateways", Some(&gateway))?;
            show_rows::<GatewayRow>(cli, v)
        }
        Command::ListGateways => show_rows::<GatewayRow>(cli, c.get("/api/v1/gateways")?),
        Command::RemoveGateway { id } => removed(cli, c, &format!("/api/v1/gateways/{id}")),
        Command::AddTenant {
            id,
            source_ip,
            group,
            max_cps,
            max_concurrent,
            number_format,
            country_code,
            strip_prefix,
            offer_codecs,
        } => {
            let tenant = TenantIn {
                tenant_id: id.clone(),
                source_ip: ipv4("source_ip", source_ip)?,
                gateway_group: *group,
                max_cps: *max_cps,
                max_concurrent: *max_concurrent,
                number_format: number_format
                    .as_deref()
                    .map(|f| model::parse_number_format("number_format", f))
                    .transpose()
                    .map_err(|e| Failure::Refused(e.to_string()))?,
                country_code: country_code.clone(),
                strip_prefix: strip_prefix.clone(),
                offer_codecs: offer_codecs.clone(),
            };
            let v = c.call("POST", "/api/v1/tenants", Some(&tenant))?;
            show_rows::<TenantRow>(cli, v)
        }
        Command::ListTenants => show_rows::<TenantRow>(cli, c.get("/api/v1/tenants")?),
        Command::RemoveTenant { id } => removed(cli, c, &format!("/api/v1/tenants/{id}")),
        Command::AddCarrier {
            ip,
            mask,
            name,
            group,
        } => {
            let carrier = CarrierIn {
                ip: ipv4("ip", ip)?,
                mask: *mask,
                name: name.clone(),
                group: *group,
            };
            let v = c.call("POST", "/api/v1/carriers", Some(&carrier))?;
            show_rows::<CarrierRow>(cli, v)
        }
        Command::ListCarriers => show_rows::<CarrierRow>(cli, c.get("/api/v1/carriers")?),
        Command::RemoveCarrier { id } => removed(cli, c, &format!("/api/v1/carriers/{id}")),
        Command::Stats { since, cluster } => {
            let v = c.get(&format!(
                "/api/v1/stats/calls?since={}&cluster={cluster}",
                query_value(since)
            ))?;
            if cli.json {
                return print_json(&v);
            }
            let stats: CallStats = typed(v)?;
            println!(
                "calls up: {}   since start: {} s",
                stats.calls_up, stats.since_s
            );
            let rows: Vec<TenantCounts> = stats.by_tenant.iter().map(TenantCounts).collect();
            print_table(&rows);
            match &stats.window {
                None => println!("\n(no CDRs: [cdr] enabled = false)"),
                Some(w) => {
                    let mut groups = vec![("tenant", &w.by_tenant), ("gateway", &w.by_gateway)];
                    if *cluster {
                        groups.push(("node", &w.by_node));
                    }
                    for (what, map) in groups {
                        println!("\nlast {since} by {what} ({} calls):", w.scope);
                        let rows: Vec<Window> = map.iter().map(|(k, f)| Window(k, f)).collect();
                        print_table(&rows);
                    }
                }
            }
            Ok(())
        }
        Command::Cdrs {
            tenant,
            since,
            limit,
        } => {
            let mut path = format!("/api/v1/cdrs?since={}&limit={limit}", query_value(since));
            if let Some(t) = tenant {
                path += &format!("&tenant={}", query_value(t));
            }
            let v = c.get(&path)?;
            if cli.json {
                return print_json(&v);
            }
            print_table(&typed::<CdrList>(v)?.cdrs);
            Ok(())
        }
        Command::Calls {
            active: true,
            count,
            ..
        } => {
            let v = c.get("/api/v1/calls/active")?;
            if cli.json {
                return print_json(&v);
            }
            let list: ActiveList = typed(v)?;
            if *count {
                println!("{}", list.count);
            } else {
                print_table(&list.calls);
                if !list.media {
                    println!("(the relay did not answer in time: RTP figures missing)");
                }
            }
            Ok(())
        }
        Command::Calls { limit, .. } => {
            let query = CallsQuery { limit: *limit };
            let v = c.get(&format!("/api/v1/calls?{}", query.to_query()))?;
            if cli.json {
                return print_json(&v);
            }
            print_table(&typed::<CallList>(v)?.calls);
            Ok(())
        }
        Command::Status => {
            let v = c.get("/api/v1/status")?;
            if cli.json {
                return print_json(&v);
            }
            print!("{}", status_text(&typed(v)?));
            Ok(())
        }
        Command::Dispatcher { command } => {
            let v = match command {
                DispatcherCommand::List => c.get("/api/v1/dispatcher")?,
                DispatcherCommand::Ping { group } => c.call(
                    "POST",
                    "/api/v1/dispatcher/ping",
                    Some(&PingRequest { group: *group }),
                )?,
                DispatcherCommand::SetState { id, state } => {
                    let state = AdminState::parse(state).ok_or_else(|| {
                        let known: Vec<&str> = AdminState::ALL.iter().map(|s| s.name()).collect();
                        Failure::Refused(format!(
                            "field `state`: unknown state {state:?} ({})",
                            known.join(", ")
                        ))
                    })?;
                    c.call(
                        "POST",
                        "/api/v1/dispatcher/state",
                        Some(&StateRequest { id: *id, state }),
                    )?
                }
            };
            if cli.json {
                return print_json(&v);
            }
            let list: DispatcherList = typed(v)?;
            print_table(&list.destinations);
            if !list.probing {
                println!("(probing is off: [health] interval_s = 0)");
            }
            Ok(())
        }
        Command::Drain { cancel } => {
            let method = if *cancel { "DELETE" } else { "POST" };
            let v = c.call(method, "/api/v1/drain", None::<&()>)?;
            if cli.json {
                return print_json(&v);
            }
            let d: sbc_controlplane::api::model::Drain = typed(v)?;
            if d.draining {
                println!(
                    "draining: new calls refused 503; {} dialogs left ({} answered)",
                    d.dialogs, d.calls_up
                );
            } else {
                println!("drain ended: new calls taken");
            }
            Ok(())
        }
        Command::Ban { command } => match command {
            BanCommand::List => show_rows::<BanView>(cli, c.get("/api/v1/bans")?),
            BanCommand::Remove { ip } => {
                removed(cli, c, &format!("/api/v1/bans/{}", query_value(ip)))
            }
        },
        Command::Capture { seconds, filter } => {
            let path = format!(
                "/api/v1/capture?seconds={seconds}&filter={}",
                query_value(filter)
            );
            let pcap = c.get_bytes(&path, std::time::Duration::from_secs(seconds + 10))?;
            std::io::Write::write_all(&mut std::io::stdout(), &pcap)
                .map_err(|e| Failure::Refused(format!("writing the capture: {e}")))
        }
        Command::Ping => {
            let v = c.get("/api/v1/status")?;
            if cli.json {
                return print_json(&v);
            }
            let s: Status = typed(v)?;
            println!(
                "ok: sbc {} ({} backend), up {} s",
                s.version, s.backend, s.uptime_s
            );
            Ok(())
        }
        Command::Route {
            source_ip,
            to,
            headers,
            from,
        } => {
            let mut h = BTreeMap::new();
            for kv in headers {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    Failure::Refused(format!("--header {kv}: expected NAME=VALUE"))
                })?;
                h.insert(k.to_string(), v.to_string());
            }
            let query = RouteQuery {
                source_ip: ipv4("source_ip", source_ip)?,
                to: to.clone(),
                headers: h,
                from: from.clone(),
            };
            let v = c.call("POST", "/api/v1/route", Some(&query))?;
            if cli.json {
                return print_json(&v);
            }
            let d: RouteDecision = typed(v)?;
            match d.action {
                Action::Route => {
                    println!(
                        "route ({}) tenant={} group={} user={}",
                        direction(d.direction),
                        or_dash(d.tenant_id),
                        or_dash(d.gateway_group),
                        or_dash(d.user)
                    );
                    if let Some(caller) = d.caller_user {
                        println!("  caller={caller}");
                    }
                    for (i, c) in d.candidates.iter().enumerate() {
                        let profile = d.profiles.get(i).map_or("-", String::as_str);
                        println!("  {}. {c} ({profile})", i + 1);
                    }
                }
                Action::Reject => println!(
                    "reject {} {}",
                    or_dash(d.code),
                    d.reason.unwrap_or_default()
                ),
            }
            Ok(())
        }
    }
}

/// A DELETE: `removed` (or the API's JSON, null).
fn removed(cli: &Cli, c: &Client, path: &str) -> Result<(), Failure> {
    let v = c.call("DELETE", path, None::<&()>)?;
    if cli.json {
        return print_json(&v);
    }
    println!("removed");
    Ok(())
}

/// One row or a list of them, as the API's JSON or a table.
fn show_rows<T: DeserializeOwned + TableRow>(cli: &Cli, v: Value) -> Result<(), Failure> {
    if cli.json {
        return print_json(&v);
    }
    let rows: Vec<T> = match v {
        Value::Array(_) => typed(v)?,
        one => vec![typed(one)?],
    };
    print_table(&rows);
    Ok(())
}

fn print_json(v: &Value) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// A query string value: only letters, digits and `-._~` pass as they are
/// (RFC 3986 unreserved), anything else percent-encoded.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One tenant's or gateway's figures over the window.
struct Window<'a>(&'a String, &'a WindowFigures);

impl TableRow for Window<'_> {
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "attempts",
        "answered",
        "asr",
        "acd_s",
        "setup_ms",
        "top_failures",
    ];
    fn cells(&self) -> Vec<String> {
        let f = self.1;
        let top: Vec<String> = f
            .top_failures
            .iter()
            .map(|x| format!("{}x{}", x.code, x.count))
            .collect();
        vec![
            self.0.clone(),
            f.attempts.to_string(),
            f.answered.to_string(),
            format!("{:.1}%", f.asr * 100.0),
            format!("{:.1}", f.acd_s),
            format!("{:.0}", f.setup_avg_ms),
            if top.is_empty() {
                "-".into()
            } else {
                top.join(",")
            },
        ]
    }
}

impl TableRow for BanView {
    const COLUMNS: &'static [&'static str] =
        &["ip", "reason", "banned_for_s", "expires_in_s", "dropped"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.ip.clone(),
            self.reason.clone(),
            self.banned_for_s.to_string(),
            self.expires_in_s.to_string(),
            self.dropped.to_string(),
        ]
    }
}

impl TableRow for CdrRow {
    const COLUMNS: &'static [&'static str] = &[
        "start_utc",
        "tenant",
        "dir",
        "result",
        "code",
        "ended_by",
        "tries",
        "setup_ms",
        "duration_s",
        "gateway",
        "node",
        "caller_call_id",
    ];
    fn cells(&self) -> Vec<String> {
        let start = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(self.start_ms).unwrap_or(0));
        vec![
            humantime::format_rfc3339_seconds(start).to_string(),
            or_dash(self.tenant_id.as_ref()),
            self.direction.clone(),
            self.result.clone(),
            self.final_code.to_string(),
            or_dash(self.ended_by.as_ref()),
            self.attempts.to_string(),
            or_dash(self.answer_ms.map(|a| a - self.start_ms)),
            format!(
                "{:.1}",
                self.answer_ms.map_or(0, |a| self.end_ms - a) as f64 / 1000.0
            ),
            self.gateway().to_string(),
            if self.node_id.is_empty() {
                "-".into()
            } else {
                self.node_id.clone()
            },
            self.caller_call_id.clone(),
        ]
    }
}

/// `sbcctl status` for a person: a few lines instead of the JSON.
fn status_text(s: &Status) -> String {
    let up = s.uptime_s;
    let sip = |k: &str| s.sip.get(k).copied().unwrap_or(0);
    let mut out = format!(
        "sbc {} ({} backend), up {}d {:02}h {:02}m {:02}s\n",
        s.version,
        s.backend,
        up / 86_400,
        up / 3_600 % 24,
        up / 60 % 60,
        up % 60
    );
    out += &format!(
        "calls: {} up; {} since start: {} answered, {} failed, {} rejected, {} over limits\n",
        s.calls_up,
        sip("calls_total") + sip("calls_rejected") + sip("calls_limited"),
        sip("calls_answered"),
        sip("calls_failed"),
        sip("calls_rejected"),
        sip("calls_limited"),
    );
    out += &format!(
        "gateways: {} up, {} down{}\n",
        s.gateways.up,
        s.gateways.down,
        if s.gateways.probing {
            ""
        } else {
            " (probing off: [health] interval_s = 0)"
        }
    );
    let db = match s.database {
        model::DatabaseState::Ok => "ok",
        model::DatabaseState::Unavailable => "UNAVAILABLE (routing from the last snapshot)",
    };
    out += &format!("database: {} {db}\n", s.database_kind);
    if s.draining {
        out += "DRAINING: new calls refused 503 (sbcctl drain --cancel ends it)\n";
    }
    if let Some(c) = &s.cluster {
        let nodes: Vec<String> = c
            .nodes
            .iter()
            .map(|n| match n.info.state {
                NodeState::Active => n.node_id.clone(),
                NodeState::Draining => format!("{} (draining)", n.node_id),
            })
            .collect();
        out += &format!(
            "cluster: node {}, store {}, limits by {}; {} live: {}\n",
            c.node_id,
            c.store,
            c.limits,
            c.nodes.len(),
            nodes.join(", ")
        );
    }
    out += &format!(
        "provisioned: {} carriers, {} gateways, {} tenants (snapshot {}, built {} s ago)\n",
        s.provisioned.carriers,
        s.provisioned.gateways,
        s.provisioned.tenants,
        s.snapshot_version,
        s.snapshot_age_ms / 1000
    );
    // The largest drop and error counters of every group.
    let mut drops: Vec<(String, u64)> =
        [("sip", &s.sip), ("media", &s.media), ("io", &s.io.counters)]
            .into_iter()
            .flat_map(|(group, map)| {
                map.iter()
                    .filter(|(k, v)| {
                        **v > 0
                            && (k.starts_with("dropped")
                                || k.ends_with("errors")
                                || k.ends_with("_full")
                                || k.ends_with("timeouts")
                                || k.ends_with("_dropped"))
                    })
                    .map(move |(k, v)| (format!("{group}.{k}"), *v))
            })
            .collect();
    drops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let top: Vec<String> = drops
        .iter()
        .take(5)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    out += &format!(
        "drops and errors: {}\n",
        if top.is_empty() {
            "none".to_string()
        } else {
            top.join(", ")
        }
    );
    out
}

/// A row of a table: its column names and its cells.
trait TableRow {
    const COLUMNS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

impl TableRow for Destination {
    const COLUMNS: &'static [&'static str] = &[
        "set",
        "id",
        "uri",
        "address",
        "flags",
        "priority",
        "weight",
        "latency_ms",
        "state",
        "since_s",
        "reason",
    ];
    /// Latency: the mean of the answered probes, then the last (`avg/last`);
    /// address: where the URI points now (several for a name with SRV
    /// targets, `-` for a name that does not resolve).
    fn cells(&self) -> Vec<String> {
        let latency = match (self.latency_avg_ms, self.latency_last_ms) {
            (Some(avg), Some(last)) => format!("{avg:.1}/{last}"),
            _ => "-".to_string(),
        };
        vec![
            self.group.to_string(),
            self.id.to_string(),
            self.uri.clone(),
            if self.addresses.is_empty() {
                "-".to_string()
            } else {
                self.addresses.join(",")
            },
            self.flags.clone(),
            self.priority.to_string(),
            self.weight.to_string(),
            latency,
            self.state.clone(),
            or_dash(self.since_s),
            self.reason.clone(),
        ]
    }
}

impl TableRow for GatewayRow {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "group",
        "destination",
        "priority",
        "weight",
        "profile",
        "auth",
        "srtp",
        "description",
    ];
    /// A profile left to the SBC's default shows as `-`; auth is the
    /// digest username (never the password), `-` when none.
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.group.to_string(),
            self.destination.clone(),
            self.priority.to_string(),
            self.weight.to_string(),
            or_dash(self.profile.as_ref()),
            or_dash(self.auth_username.as_ref()),
            self.media_encryption.clone(),
            self.description.clone(),
        ]
    }
}

impl TableRow for TenantRow {
    const COLUMNS: &'static [&'static str] = &[
        "tenant_id",
        "source_ip",
        "gateway_group",
        "max_cps",
        "max_concurrent",
        "number_format",
        "country_code",
        "strip_prefix",
        "offer_codecs",
    ];
    /// Number rules and codecs not set show as `-`.
    fn cells(&self) -> Vec<String> {
        vec![
            self.tenant_id.clone(),
            self.source_ip.clone(),
            self.gateway_group.to_string(),
            self.max_cps.to_string(),
            self.max_concurrent.to_string(),
            or_dash(self.number_format.as_ref()),
            or_dash(self.country_code.as_ref()),
            or_dash(self.strip_prefix.as_ref()),
            or_dash(self.offer_codecs.as_ref()),
        ]
    }
}

impl TableRow for CarrierRow {
    const COLUMNS: &'static [&'static str] = &["id", "ip", "mask", "name", "group"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.ip.clone(),
            self.mask.to_string(),
            self.name.clone(),
            self.group.to_string(),
        ]
    }
}

/// One tenant's line of `stats`: its count of each result (0 when none).
struct TenantCounts<'a>((&'a String, &'a BTreeMap<String, u64>));

impl TableRow for TenantCounts<'_> {
    const COLUMNS: &'static [&'static str] = &[
        "tenant",
        "answered",
        "failed",
        "cancelled",
        "rejected",
        "limit_exceeded",
    ];
    fn cells(&self) -> Vec<String> {
        let (tenant, counts) = self.0;
        let mut cells = vec![tenant.clone()];
        for result in &Self::COLUMNS[1..] {
            cells.push(counts.get(*result).copied().unwrap_or(0).to_string());
        }
        cells
    }
}

/// A finished call, its RTP packets summed over its media lines.
impl TableRow for ActiveCallView {
    const COLUMNS: &'static [&'static str] = &[
        "call",
        "tenant",
        "direction",
        "state",
        "age_s",
        "gateway",
        "ports",
        "rtp_in",
        "lost_in",
        "rtp_out",
        "lost_out",
        "call_id",
    ];
    /// `in`: from the caller; `out`: from the callee.
    fn cells(&self) -> Vec<String> {
        let gateway = match self.direction {
            Direction::Inbound => &self.callee_addr,
            Direction::Outbound => &self.caller_addr,
        };
        let ports: Vec<String> = self.ports.iter().map(|[a, b]| format!("{a}/{b}")).collect();
        vec![
            self.call.to_string(),
            or_dash(self.tenant.as_ref()),
            direction(self.direction).to_string(),
            self.state.clone(),
            format!("{:.0}", self.age_s),
            gateway.clone(),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(",")
            },
            self.from_caller.packets.to_string(),
            self.from_caller.lost.to_string(),
            self.from_callee.packets.to_string(),
            self.from_callee.lost.to_string(),
            self.call_id.clone(),
        ]
    }
}

impl TableRow for CallRecord {
    const COLUMNS: &'static [&'static str] = &[
        "call",
        "tenant",
        "direction",
        "result",
        "setup_ms",
        "duration_ms",
        "rtp_from_caller",
        "rtp_from_callee",
        "lost",
        "dtmf",
    ];
    fn cells(&self) -> Vec<String> {
        let sum = |f: fn(&model::MediaFigures) -> u64| self.media.iter().map(f).sum::<u64>();
        vec![
            self.call.to_string(),
            or_dash(self.tenant.as_ref()),
            direction(self.direction).to_string(),
            self.result.clone(),
            or_dash(self.setup_ms),
            self.duration_ms.to_string(),
            sum(|m| m.from_caller.packets).to_string(),
            sum(|m| m.from_callee.packets).to_string(),
            sum(|m| m.from_caller.lost + m.from_callee.lost).to_string(),
            sum(|m| m.from_caller.dtmf_events + m.from_callee.dtmf_events).to_string(),
        ]
    }
}

fn print_table<T: TableRow>(rows: &[T]) {
    let cells: Vec<Vec<String>> = rows.iter().map(TableRow::cells).collect();
    let widths: Vec<usize> = T::COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(T::COLUMNS.to_vec());
    for r in &cells {
        line(r.iter().map(String::as_str).collect());
    }
}
