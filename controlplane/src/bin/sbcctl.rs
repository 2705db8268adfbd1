//! `sbcctl`: the command line for the SBC's REST API, with the argument
//! order of the old `kamctl-sbc.sh`.
//!
//! `--api URL` (or `SBC_API`) picks the SBC, `SBC_API_TOKEN` carries the
//! bearer token, `--json` prints the API's JSON instead of tables. Errors go to
//! stderr with the API's message; the exit code is 1 for a refused request and
//! 3 when the API cannot be reached (clap's usage errors exit 2).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

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
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// add-gateway GROUP URI DESC PRIORITY WEIGHT
    AddGateway {
        group: i64,
        uri: String,
        desc: String,
        priority: i64,
        weight: i64,
    },
    /// List gateways.
    ListGateways,
    /// Remove a gateway by id.
    RemoveGateway { id: i64 },
    /// add-tenant ID SOURCE_IP GROUP MAX_CPS MAX_CONCURRENT (adds or updates)
    AddTenant {
        id: String,
        source_ip: String,
        group: i64,
        max_cps: i64,
        max_concurrent: i64,
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
    /// Call statistics by tenant.
    Stats,
    /// The latest finished calls with their RTP figures (sums over media lines).
    Calls {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// SBC status.
    Status,
    /// Is the SBC's API answering?
    Ping,
    /// The routing decision for an INVITE: route SOURCE_IP TO [--header NAME=VALUE]...
    Route {
        source_ip: String,
        to: String,
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
    },
}

enum Failure {
    Refused(String),
    Unreachable(String),
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) if r.status() == 204 => Ok(Value::Null),
            Ok(r) => r
                .into_json()
                .map_err(|e| Failure::Refused(format!("bad answer from {url}: {e}"))),
            Err(ureq::Error::Status(code, r)) => {
                let msg = r
                    .into_json::<Value>()
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_default();
                Err(Failure::Refused(format!("{code}: {msg}")))
            }
            Err(e) => Err(Failure::Unreachable(format!("cannot reach {url}: {e}"))),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = Client {
        base: cli.api.clone(),
        token: std::env::var("SBC_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        agent: ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(10))
            .build(),
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
    let (value, columns): (Value, &[&str]) = match &cli.command {
        Command::AddGateway {
            group,
            uri,
            desc,
            priority,
            weight,
        } => (
            c.call(
                "POST",
                "/api/v1/gateways",
                Some(
                    json!({"destination": uri, "group": group, "priority": priority,
                            "weight": weight, "description": desc}),
                ),
            )?,
            GATEWAY_COLUMNS,
        ),
        Command::ListGateways => (c.call("GET", "/api/v1/gateways", None)?, GATEWAY_COLUMNS),
        Command::RemoveGateway { id } => (
            c.call("DELETE", &format!("/api/v1/gateways/{id}"), None)?,
            &[],
        ),
        Command::AddTenant {
            id,
            source_ip,
            group,
            max_cps,
            max_concurrent,
        } => (
            c.call(
                "POST",
                "/api/v1/tenants",
                Some(
                    json!({"tenant_id": id, "source_ip": source_ip, "gateway_group": group,
                            "max_cps": max_cps, "max_concurrent": max_concurrent}),
                ),
            )?,
            TENANT_COLUMNS,
        ),
        Command::ListTenants => (c.call("GET", "/api/v1/tenants", None)?, TENANT_COLUMNS),
        Command::RemoveTenant { id } => (
            c.call("DELETE", &format!("/api/v1/tenants/{id}"), None)?,
            &[],
        ),
        Command::AddCarrier {
            ip,
            mask,
            name,
            group,
        } => (
            c.call(
                "POST",
                "/api/v1/carriers",
                Some(json!({"ip": ip, "mask": mask, "name": name, "group": group})),
            )?,
            CARRIER_COLUMNS,
        ),
        Command::ListCarriers => (c.call("GET", "/api/v1/carriers", None)?, CARRIER_COLUMNS),
        Command::RemoveCarrier { id } => (
            c.call("DELETE", &format!("/api/v1/carriers/{id}"), None)?,
            &[],
        ),
        Command::Stats => {
            let v = c.call("GET", "/api/v1/stats/calls", None)?;
            if cli.json {
                return print_json(&v);
            }
            let rows: Vec<Value> = v["by_tenant"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(t, counts)| {
                            let mut row = counts.clone();
                            row["tenant"] = json!(t);
                            row
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("calls up: {}   since: {} s", v["calls_up"], v["since_s"]);
            (Value::Array(rows), STATS_COLUMNS)
        }
        Command::Calls { limit } => {
            let v = c.call("GET", &format!("/api/v1/calls?limit={limit}"), None)?;
            if cli.json {
                return print_json(&v);
            }
            let sum = |call: &Value, dir: &str, field: &str| -> u64 {
                call["media"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m[dir][field].as_u64())
                    .sum()
            };
            let rows = v["calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|call| {
                    let mut row = call.clone();
                    row["rtp_from_caller"] = json!(sum(call, "from_caller", "packets"));
                    row["rtp_from_callee"] = json!(sum(call, "from_callee", "packets"));
                    row["lost"] =
                        json!(sum(call, "from_caller", "lost") + sum(call, "from_callee", "lost"));
                    row
                })
                .collect();
            (Value::Array(rows), CALL_COLUMNS)
        }
        Command::Status | Command::Ping => {
            let v = c.call("GET", "/api/v1/status", None)?;
            if matches!(cli.command, Command::Ping) && !cli.json {
                println!(
                    "ok: sbc {} ({} backend), up {} s",
                    v["version"], v["backend"], v["uptime_s"]
                );
                return Ok(());
            }
            return print_json(&v);
        }
        Command::Route {
            source_ip,
            to,
            headers,
        } => {
            let mut h = serde_json::Map::new();
            for kv in headers {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    Failure::Refused(format!("--header {kv}: expected NAME=VALUE"))
                })?;
                h.insert(k.to_string(), json!(v));
            }
            let v = c.call(
                "POST",
                "/api/v1/route",
                Some(json!({"source_ip": source_ip, "to": to, "headers": h})),
            )?;
            if cli.json {
                return print_json(&v);
            }
            if v["action"] == "route" {
                println!(
                    "route ({}) tenant={} group={} user={}",
                    cell(&v["direction"]),
                    cell(&v["tenant_id"]),
                    cell(&v["gateway_group"]),
                    cell(&v["user"])
                );
                for (i, c) in v["candidates"].as_array().into_iter().flatten().enumerate() {
                    println!("  {}. {}", i + 1, c.as_str().unwrap_or_default());
                }
            } else {
                println!(
                    "reject {} {}",
                    v["code"],
                    v["reason"].as_str().unwrap_or_default()
                );
            }
            return Ok(());
        }
    };
    if cli.json {
        return print_json(&value);
    }
    if value.is_null() {
        println!("removed");
        return Ok(());
    }
    let rows = match value {
        Value::Array(rows) => rows,
        one => vec![one],
    };
    print_table(columns, &rows);
    Ok(())
}

const CALL_COLUMNS: &[&str] = &[
    "call",
    "tenant",
    "direction",
    "result",
    "setup_ms",
    "duration_ms",
    "rtp_from_caller",
    "rtp_from_callee",
    "lost",
];

const GATEWAY_COLUMNS: &[&str] = &[
    "id",
    "group",
    "destination",
    "priority",
    "weight",
    "description",
];
const TENANT_COLUMNS: &[&str] = &[
    "tenant_id",
    "source_ip",
    "gateway_group",
    "max_cps",
    "max_concurrent",
];
const CARRIER_COLUMNS: &[&str] = &["id", "ip", "mask", "name", "group"];
const STATS_COLUMNS: &[&str] = &[
    "tenant",
    "answered",
    "failed",
    "cancelled",
    "rejected",
    "limit_exceeded",
];

fn print_json(v: &Value) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_table(columns: &[&str], rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    if r[*c].is_null() {
                        "0".into()
                    } else {
                        cell(&r[*c])
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
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
    line(columns.to_vec());
    for r in &cells {
        line(r.iter().map(String::as_str).collect());
    }
}
