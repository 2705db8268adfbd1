//! Gateway health end to end on loopback: the real `sbc` (socket backend)
//! probes a gateway that answers OPTIONS (a UDP responder in this test) and
//! one where nothing listens, and `sbcctl dispatcher list | ping | set-state`
//! shows and changes what it found.

mod common;
use common::{sbcctl, start_sbc};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Answers every OPTIONS on `sock` with `code`, copying Via, From, To (a
/// tag added), Call-ID and CSeq; counts them.
fn responder(sock: UdpSocket, code: u16, seen: Arc<AtomicU32>, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("OPTIONS ") {
            continue;
        }
        seen.fetch_add(1, Ordering::Relaxed);
        let mut resp = format!("SIP/2.0 {code} Whatever\r\n");
        for line in text.split("\r\n") {
            let name = line.split(':').next().unwrap_or("");
            if ["Via", "From", "Call-ID", "CSeq"].contains(&name) {
                resp.push_str(line);
                resp.push_str("\r\n");
            } else if name == "To" {
                resp.push_str(line);
                resp.push_str(";tag=gw\r\n");
            }
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        let _ = sock.send_to(resp.as_bytes(), src);
    }
}

fn dispatcher(api: &str) -> Value {
    let (code, out, err) = sbcctl(api, &["--json", "dispatcher", "list"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The destination of `list` whose URI is `uri`.
fn dest<'a>(list: &'a Value, uri: &str) -> &'a Value {
    list["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uri"] == uri)
        .unwrap_or_else(|| panic!("{uri} not in {list}"))
}

fn wait_for(what: &str, api: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = dispatcher(api);
        if ok(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}: {list:#}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn gateways_are_probed_judged_listed_pinged_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public, api_port) = (free_udp_port(), free_udp_port(), free_tcp_port());
    let metrics_port = free_tcp_port();
    let hep = UdpSocket::bind("127.0.0.1:0").unwrap();
    hep.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let hep_addr = hep.local_addr().unwrap();
    let live = UdpSocket::bind("127.0.0.1:0").unwrap();
    let live_uri = format!("sip:{}", live.local_addr().unwrap());
    let dead_uri = format!("sip:127.0.0.1:{}", free_udp_port());
    let config = dir.path().join("sbc.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nprivate = \"127.0.0.1:{private}\"\npublic = \"127.0.0.1:{public}\"\n\
             [media]\nport_min = 41000\nport_max = 41100\n\
             [database]\nurl = \"sqlite://{}\"\n\
             [journal]\nenabled = false\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [health]\ninterval_s = 1\ntimeout_ms = 300\nfailures_down = 2\nsuccesses_up = 1\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n\
             [hep]\ncollector = \"{hep_addr}\"\nnode_id = 77\npassword = \"pw\"\n",
            dir.path().join("sbc.db").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("sbc.log");
    let api = format!("http://127.0.0.1:{api_port}");
    let sbc = start_sbc(&config, &log, &api);
    let (seen, stop) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let responder_thread = {
        let (seen, stop) = (seen.clone(), stop.clone());
        thread::spawn(move || responder(live, 200, seen, stop))
    };
    for (uri, prio) in [(&live_uri, "10"), (&dead_uri, "20")] {
        let (code, _, err) = sbcctl(&api, &["add-gateway", "1", uri, "gw", prio, "1"]);
        assert_eq!(code, 0, "{err}");
    }

    // The silent one goes down after two timeouts; the live one stays up
    // with a latency.
    let list = wait_for("the dead gateway down", &api, |l| {
        dest(l, &dead_uri)["state"] == "down" && dest(l, &live_uri)["latency_last_ms"].is_number()
    });
    assert_eq!(list["probing"], true);
    assert_eq!(
        (list["up"].as_u64(), list["down"].as_u64()),
        (Some(1), Some(1))
    );
    let dead = dest(&list, &dead_uri);
    assert_eq!(
        (dead["flags"].as_str(), dead["reason"].as_str()),
        (Some("IP"), Some("OPTIONS timeout"))
    );
    let live_dest = dest(&list, &live_uri);
    assert_eq!(live_dest["flags"], "AP");
    assert_eq!(live_dest["reason"], "OPTIONS 200");
    assert!(seen.load(Ordering::Relaxed) >= 1);
    // The status counts them.
    let (code, text, err) = sbcctl(&api, &["status"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "(socket backend), up ",
        "calls: 0 up; 0 since start",
        "gateways: 1 up, 1 down\n",
        "database: sqlite ok",
        "provisioned: 0 carriers, 2 gateways, 0 tenants",
        "drops and errors: none",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let (_, out, _) = sbcctl(&api, &["--json", "status"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["gateways"]["up"], 1, "{status}");
    assert_eq!(status["gateways"]["down"], 1, "{status}");
    assert!(
        status["sip"]["probes_sent"].as_u64().unwrap() >= 3,
        "{status}"
    );

    // Prometheus: the text format parses; the gateways, probes and build info are there.
    let text = ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let (live_id, dead_id) = (
        dest(&list, &live_uri)["id"].to_string(),
        dest(&list, &dead_uri)["id"].to_string(),
    );
    assert_eq!(
        value("sbc_gateway_up", Some(("gateway", &live_id))),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("sbc_gateway_up", Some(("gateway", &dead_id))),
        Some(0.0),
        "{text}"
    );
    assert!(value(
        "sbc_gateway_probe_latency_seconds",
        Some(("gateway", &live_id))
    )
    .is_some());
    assert!(
        value("sbc_sip_probes_sent_total", None).unwrap() >= 3.0,
        "{text}"
    );
    assert_eq!(value("sbc_calls_up", None), Some(0.0), "{text}");
    assert_eq!(value("sbc_database_up", None), Some(1.0), "{text}");
    assert!(
        text.contains("sbc_build_info{version=\"") && text.contains("backend=\"socket\"}"),
        "{text}"
    );
    assert!(text.contains("# TYPE sbc_calls counter"), "{text}");
    // Ring fill and CPU per thread, as the status shows them.
    assert_eq!(value("sbc_ring_entries", Some(("ring", "rx"))), Some(0.0));
    assert!(value("sbc_ring_capacity_entries", Some(("ring", "media_cmds"))).unwrap() > 0.0);
    assert!(value(
        "sbc_thread_cpu_seconds_total",
        Some(("thread", "sip-engine"))
    )
    .is_some());
    assert!(status["rings"]["call_events"]["capacity"].as_u64().unwrap() > 0);
    assert!(
        status["threads_cpu_s"]["sip-engine"].as_f64().is_some(),
        "{status}"
    );
    // Every metric the Grafana dashboard graphs is one we export.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/dashboards/sbc.json"
    ))
    .unwrap();
    let mut graphed = std::collections::BTreeSet::new();
    for (at, _) in dashboard.match_indices("sbc_") {
        let name: String = dashboard[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        graphed.insert(name);
    }
    // The DPDK backend's own L2/L3 counters are not exported on sockets.
    let io = sbc_dataplane::stats::IoStats::default();
    let socket: Vec<_> = io.counters_of(false).iter().map(|(n, _)| *n).collect();
    let dpdk_only: Vec<String> = io
        .counters_of(true)
        .iter()
        .filter(|(n, _)| !socket.contains(n))
        .map(|(n, _)| format!("sbc_io_{n}_total"))
        .collect();
    for name in graphed
        .iter()
        .filter(|n| !n.ends_with('_') && !dpdk_only.contains(n))
    {
        let family = ["_total", "_bucket", "_count", "_sum", "_info"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard graphs {name}, which /metrics lacks"
        );
    }

    // HEP: the probes and their answers reached the collector, with our
    // public address, the node id, the password and the Call-ID.
    let mut hep_msgs = Vec::new();
    let mut buf = [0u8; 65_535];
    while let Ok(n) = hep.recv(&mut buf) {
        hep_msgs.push(sbc_controlplane::hep::decode(&buf[..n]).expect("HEP v3"));
        if hep_msgs.len() > 50 {
            break;
        }
    }
    let probe = hep_msgs
        .iter()
        .find(|m| m.payload.starts_with(b"OPTIONS ") && m.dst.to_string() == live_uri[4..])
        .unwrap_or_else(|| panic!("no probe in {} HEP messages", hep_msgs.len()));
    assert_eq!((probe.proto, probe.node_id), (1, 77));
    assert_eq!(probe.src.to_string(), format!("127.0.0.1:{public}"));
    assert_eq!(probe.password.as_deref(), Some("pw"));
    assert_eq!(
        probe.correlation,
        sbc_controlplane::hep::call_id_of(&probe.payload)
    );
    assert!(probe.ts_us > 1_600_000_000_000_000);
    assert!(hep_msgs
        .iter()
        .any(|m| m.payload.starts_with(b"SIP/2.0 200") && m.src.to_string() == live_uri[4..]));
    // A pcap of 2 s: the probes and answers of that time.
    let out = Command::new(env!("CARGO_BIN_EXE_sbcctl"))
        .args(["--api", &api, "capture", "--seconds", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = out.stdout;
    assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes());
    assert!(
        pcap.windows(8).any(|w| w == b"OPTIONS "),
        "{} bytes",
        pcap.len()
    );
    assert!(pcap.windows(11).any(|w| w == b"SIP/2.0 200"));
    let (code, _, err) = sbcctl(&api, &["capture", "--seconds", "1", "--filter", "video"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("field `filter`: \"video\" is not sip, rtp or all"),
        "{err}"
    );

    // No call in progress: the engine and the relay both answer.
    let (code, out, err) = sbcctl(&api, &["calls", "--active", "--count"]);
    assert_eq!((code, out.trim()), (0, "0"), "{err}");
    let (_, out, _) = sbcctl(&api, &["--json", "calls", "--active"]);
    let active: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&active["count"], &active["media"]),
        (&serde_json::json!(0), &serde_json::json!(true)),
        "{active}"
    );

    // The table, Kamailio's columns.
    let (code, out, err) = sbcctl(&api, &["dispatcher", "list"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.split_whitespace().eq([
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
            "reason"
        ]),
        "{out}"
    );
    // Higher priority first: the dead one (20) is listed first.
    assert!(out.lines().nth(1).unwrap().contains(&dead_uri), "{out}");

    // Ping now: the live one answers at once.
    let before = seen.load(Ordering::Relaxed);
    let (code, out, err) = sbcctl(&api, &["--json", "dispatcher", "ping", "1"]);
    assert_eq!(code, 0, "{err}");
    let pinged: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        pinged["destinations"].as_array().unwrap().len(),
        2,
        "{pinged}"
    );
    assert!(
        seen.load(Ordering::Relaxed) > before,
        "the ping reached the gateway"
    );
    let (code, _, err) = sbcctl(&api, &["dispatcher", "ping", "7"]);
    assert_eq!(
        (code, err.trim()),
        (1, "sbcctl: 404: field `group`: no gateway in that group")
    );

    // Maintenance: disabled is neither probed nor used.
    let live_id = dest(&list, &live_uri)["id"].as_i64().unwrap().to_string();
    let (code, out, err) = sbcctl(
        &api,
        &["--json", "dispatcher", "set-state", &live_id, "disabled"],
    );
    assert_eq!(code, 0, "{err}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(set["destinations"][0]["flags"], "DX", "{set}");
    assert_eq!(set["destinations"][0]["reason"], "set disabled", "{set}");
    thread::sleep(Duration::from_millis(300));
    let quiet = seen.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        seen.load(Ordering::Relaxed),
        quiet,
        "a disabled gateway is not probed"
    );
    let (code, _, err) = sbcctl(&api, &["dispatcher", "set-state", &live_id, "on"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "sbcctl: field `state`: unknown state \"on\" (active, inactive, disabled)"
    );
    let (code, _, err) = sbcctl(&api, &["dispatcher", "set-state", "999", "active"]);
    assert_eq!(
        (code, err.trim()),
        (1, "sbcctl: 404: field `id`: no gateway 999")
    );
    // Back to active: up now, and probed again.
    let (code, _, err) = sbcctl(&api, &["dispatcher", "set-state", &live_id, "active"]);
    assert_eq!(code, 0, "{err}");
    wait_for("the live gateway probed again", &api, |l| {
        dest(l, &live_uri)["state"] == "up" && seen.load(Ordering::Relaxed) > quiet
    });
    stop.store(true, Ordering::Relaxed);
    responder_thread.join().unwrap();
    // [log] format = "json": every line is one JSON object; the gateway
    // going down was logged with its address and reason.
    drop(sbc);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let dead_addr = dead_uri.trim_start_matches("sip:");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "destination down"
                && l["fields"]["gateway"] == dead_addr
                && l["fields"]["reason"] == "OPTIONS timeout"),
        "{text}"
    );
}
