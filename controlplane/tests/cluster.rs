//! Several real `sbc` nodes on loopback sharing one real Redis
//! (`redis-server`, started by the test on a free port): a tenant's
//! `max_concurrent` holds to the call across the nodes, its `max_cps` is one
//! bucket for all, a node killed outright gives its slots back within the
//! lease, and with the store gone each node admits by its share.

mod common;
use common::{answer, free_port, header, loopback_sbc, sbcctl, LoopbackSbc};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own, killed at drop.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// A fresh `redis-server` (no data) on `port`.
    fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/install-deps installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node: the real `sbc` in a directory of its own.
struct Node {
    sbc: LoopbackSbc,
    _dir: tempfile::TempDir,
}

/// Starts node `id` of the cluster on `redis` (lease 2 s), provisioned with
/// the gateway at `gw`, the carrier 127.0.0.1/32 and tenant `acme`.
fn node(redis: &Redis, id: &str, media: (u16, u16), gw: SocketAddr, limits: (u32, u32)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sbc = loopback_sbc(
        dir.path(),
        media,
        "",
        &format!(
            "[cluster]\nnode_id = \"{id}\"\nredis = \"redis://127.0.0.1:{}\"\nlease_s = 2\n",
            redis.port
        ),
    );
    for args in [
        vec![
            "add-gateway".to_string(),
            "1".into(),
            format!("sip:{gw}"),
            "gw".into(),
            "1".into(),
            "1".into(),
        ],
        ["add-carrier", "127.0.0.1", "32", "carrier", "1"]
            .map(String::from)
            .to_vec(),
        vec![
            "add-tenant".into(),
            "acme".into(),
            "127.0.0.9".into(),
            "1".into(),
            limits.0.to_string(),
            limits.1.to_string(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = sbcctl(&sbc.api, &args);
        assert_eq!(code, 0, "{err}");
    }
    Node { sbc, _dir: dir }
}

/// The cluster object of a node's status.
fn cluster_status(api: &str) -> serde_json::Value {
    let (code, out, err) = sbcctl(api, &["--json", "status"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["cluster"].clone()
}

/// The ids of the live nodes in a node's status, in order.
fn members(api: &str) -> Vec<String> {
    cluster_status(api)["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["node_id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to 5 s until the node at `api` lists exactly `want` as members.
fn wait_members(api: &str, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = members(api);
        if m == want {
            return;
        }
        assert!(Instant::now() < deadline, "members {m:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` nodes `<prefix>0..` on `redis` (relay ports from `media`, 200 a
/// node), tenant acme at `limits` (max_cps, max_concurrent), the gateway at
/// `gw`; returned once the first lists every one as a member.
fn cluster(
    redis: &Redis,
    n: u16,
    prefix: &str,
    media: u16,
    gw: SocketAddr,
    limits: (u32, u32),
) -> Vec<Node> {
    let nodes: Vec<Node> = (0..n)
        .map(|i| {
            node(
                redis,
                &format!("{prefix}{i}"),
                (media + i * 200, media + 190 + i * 200),
                gw,
                limits,
            )
        })
        .collect();
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    wait_members(&nodes[0].sbc.api, &ids);
    nodes
}

/// The carrier and the gateway every node shares, and what the carrier got.
struct Peers {
    carrier: UdpSocket,
    gateway: UdpSocket,
    /// Call-ID → final status the carrier got.
    finals: BTreeMap<String, u16>,
    /// Call-IDs the gateway got an INVITE for.
    reached: BTreeSet<String>,
}

impl Peers {
    fn new() -> Peers {
        let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gateway = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&carrier, &gateway] {
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        }
        Peers {
            carrier,
            gateway,
            finals: BTreeMap::new(),
            reached: BTreeSet::new(),
        }
    }

    /// Sends a new INVITE of tenant `acme` with Call-ID `call` to the node
    /// whose private SIP port is `port`.
    fn invite(&self, call: &str, port: u16) {
        let me = self.carrier.local_addr().unwrap();
        let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
        let msg = format!(
            "INVITE sip:15551234567@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag={call}\r\nTo: <sip:15551234567@127.0.0.1>\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\nX-Tenant-ID: acme\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.carrier
            .send_to(msg.as_bytes(), ("127.0.0.1", port))
            .unwrap();
    }

    /// For `d`: the gateway answers every INVITE with `code` (200 with an
    /// SDP), the carrier ACKs every 200 and notes every final answer.
    fn pump(&mut self, d: Duration, code: u16) {
        let end = Instant::now() + d;
        let mut buf = [0u8; 65535];
        let gw = self.gateway.local_addr().unwrap();
        while Instant::now() < end {
            if let Ok((n, from)) = self.gateway.recv_from(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.starts_with("INVITE ") {
                    let sdp = "v=0\r\no=g 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n";
                    let (extra, body) = if code == 200 {
                        (
                            format!("Contact: <sip:gw@{gw}>\r\nContent-Type: application/sdp\r\n"),
                            sdp,
                        )
                    } else {
                        (String::new(), "")
                    };
                    let reply = answer(&msg, code, &extra, body);
                    self.gateway.send_to(reply.as_bytes(), from).unwrap();
                    // The carrier's Call-ID travels in the SDP-less headers
                    // only as our own: the gateway's view is counted by X-Tenant-ID.
                    self.reached
                        .insert(header(&msg, "Call-ID").unwrap_or("").to_string());
                }
            }
            if let Ok((n, from)) = self.carrier.recv_from(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some(status) = msg
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|s| s.get(..3))
                    .and_then(|s| s.parse::<u16>().ok())
                else {
                    continue;
                };
                if status < 200 || !msg.contains("CSeq: 1 INVITE") {
                    continue;
                }
                let call = header(&msg, "Call-ID").unwrap().to_string();
                if status == 200 {
                    let me = self.carrier.local_addr().unwrap();
                    let ack = format!(
                        "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}a\r\nMax-Forwards: 70\r\n\
                         From: <sip:100@{me}>;tag={call}\r\nTo: {}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\n\
                         Content-Length: 0\r\n\r\n",
                        header(&msg, "Contact").unwrap().trim_matches(['<', '>']),
                        header(&msg, "To").unwrap()
                    );
                    self.carrier.send_to(ack.as_bytes(), from).unwrap();
                }
                self.finals.insert(call, status);
            }
        }
    }

    fn count(&self, prefix: &str, status: u16) -> usize {
        self.finals
            .iter()
            .filter(|(c, s)| c.starts_with(prefix) && **s == status)
            .count()
    }
}

#[test]
fn max_concurrent_holds_to_the_call_across_three_nodes_and_a_killed_nodes_slots_return() {
    let redis = Redis::start();
    let mut peers = Peers::new();
    let gw = peers.gateway.local_addr().unwrap();
    // Every node sees the three in the membership.
    let mut nodes = cluster(&redis, 3, "n", 46000, gw, (1000, 5));
    // 12 calls, 4 to each node (the first three one by one, so that each
    // node carries one): exactly 5 connect across the cluster.
    for i in 0..12 {
        peers.invite(&format!("a{i}"), nodes[i % 3].sbc.private);
        if i < 3 {
            peers.pump(Duration::from_millis(200), 200);
        }
    }
    peers.pump(Duration::from_secs(2), 200);
    assert_eq!(peers.count("a", 200), 5, "{:?}", peers.finals);
    assert_eq!(peers.count("a", 503), 7, "{:?}", peers.finals);
    let st = cluster_status(&nodes[0].sbc.api);
    assert_eq!(st["store"], "up", "{st}");
    assert_eq!(st["limits"], "cluster", "{st}");
    // Node 2 killed outright: the calls it carried give their slots back
    // within the lease (2 s); the other nodes' calls still hold theirs.
    let on_n2 = (0..12)
        .filter(|i| i % 3 == 2 && peers.finals.get(&format!("a{i}")) == Some(&200))
        .count();
    assert!(
        on_n2 >= 1,
        "node n2 carries none of the calls: {:?}",
        peers.finals
    );
    eprintln!("calls on the node killed: {on_n2}");
    let _ = nodes[2].sbc.sbc.0.kill();
    let _ = nodes[2].sbc.sbc.0.wait();
    nodes.truncate(2);
    std::thread::sleep(Duration::from_millis(2_600));
    for i in 0..6 {
        peers.invite(&format!("b{i}"), nodes[i % 2].sbc.private);
    }
    peers.pump(Duration::from_secs(2), 200);
    assert_eq!(peers.count("b", 200), on_n2, "{:?}", peers.finals);
    let st = cluster_status(&nodes[1].sbc.api);
    assert_eq!(st["nodes"].as_array().map(Vec::len), Some(2), "{st}");
}

#[test]
fn max_cps_is_one_bucket_for_every_node() {
    let redis = Redis::start();
    let mut peers = Peers::new();
    let gw = peers.gateway.local_addr().unwrap();
    let nodes = cluster(&redis, 3, "c", 47000, gw, (10, 1000));
    // 60 INVITEs over about 2 s, spread over the three nodes; the gateway
    // refuses each (486) so that only the CPS limit counts.
    let start = Instant::now();
    for i in 0..60 {
        peers.invite(&format!("r{i}"), nodes[i % 3].sbc.private);
        peers.pump(Duration::from_millis(33), 486);
    }
    let elapsed = start.elapsed().as_secs_f64();
    peers.pump(Duration::from_millis(500), 486);
    let admitted = peers.count("r", 486);
    // A full bucket of 10, then 10 a second: one bucket across the nodes
    // (each node alone would have let in three times that).
    let expected = 10.0 + 10.0 * elapsed;
    eprintln!("{admitted} admitted in {elapsed:.2} s, {expected:.1} expected");
    assert!(
        (admitted as f64 - expected).abs() <= expected * 0.1 + 1.0,
        "{admitted} admitted in {elapsed:.2} s, {expected:.1} expected: {:?}",
        peers.finals
    );
    assert_eq!(admitted + peers.count("r", 503), 60, "{:?}", peers.finals);
}

#[test]
fn without_the_store_each_node_admits_its_share_and_says_so() {
    let mut redis = Redis::start();
    let mut peers = Peers::new();
    let gw = peers.gateway.local_addr().unwrap();
    let nodes = cluster(&redis, 2, "s", 48000, gw, (1000, 4));
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    // Four calls to each node: 4 / 2 nodes = 2 connect on each.
    for i in 0..8 {
        peers.invite(&format!("s{i}"), nodes[i % 2].sbc.private);
    }
    peers.pump(Duration::from_secs(3), 200);
    assert_eq!(peers.count("s", 200), 4, "{:?}", peers.finals);
    for n in &nodes {
        let st = cluster_status(&n.sbc.api);
        assert_eq!(st["store"], "down", "{st}");
        assert_eq!(st["limits"], "node-share", "{st}");
    }
    let metrics = ureq_get(nodes[0].sbc.metrics_port);
    assert!(metrics.contains("sbc_cluster_store_up 0"), "{metrics}");
    // A node started while the store is down says so in its log too.
    let late = node(&redis, "s9", (48400, 48590), gw, (1000, 4));
    assert_eq!(cluster_status(&late.sbc.api)["store"], "down");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let log = std::fs::read_to_string(&late.sbc.log).unwrap_or_default();
        if log.contains("cluster store unreachable") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ureq_get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_drained_node_refuses_new_calls_and_leaves_the_membership_until_the_drain_ends() {
    let redis = Redis::start();
    let mut peers = Peers::new();
    let gw = peers.gateway.local_addr().unwrap();
    let nodes = cluster(&redis, 2, "d", 49000, gw, (1000, 100));
    let wait_for = |want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        wait_members(&nodes[0].sbc.api, &want);
    };
    let (code, out, err) = sbcctl(&nodes[1].sbc.api, &["drain"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("draining"), "{out}");
    // No call on it: it leaves at once; new calls to it get 503.
    wait_for(&["d0"]);
    peers.invite("x1", nodes[1].sbc.private);
    peers.pump(Duration::from_millis(500), 200);
    assert_eq!(peers.finals.get("x1"), Some(&503), "{:?}", peers.finals);
    let (_, out, _) = sbcctl(&nodes[1].sbc.api, &["--json", "status"]);
    assert!(
        out.contains("\"draining\": true") || out.contains("\"draining\":true"),
        "{out}"
    );
    // The drain ends: it joins again and takes calls.
    let (code, _, err) = sbcctl(&nodes[1].sbc.api, &["drain", "--cancel"]);
    assert_eq!(code, 0, "{err}");
    wait_for(&["d0", "d1"]);
    peers.invite("x2", nodes[1].sbc.private);
    peers.pump(Duration::from_millis(500), 200);
    assert_eq!(peers.finals.get("x2"), Some(&200), "{:?}", peers.finals);
}

#[test]
fn a_call_that_ends_gives_its_slot_back_across_the_nodes() {
    let redis = Redis::start();
    let mut peers = Peers::new();
    let gw = peers.gateway.local_addr().unwrap();
    let nodes = cluster(&redis, 2, "e", 50000, gw, (1000, 1));
    // One slot for the whole cluster: each call, refused by the gateway,
    // frees it for the next, on either node.
    for i in 0..6 {
        peers.invite(&format!("e{i}"), nodes[i % 2].sbc.private);
        peers.pump(Duration::from_millis(300), 486);
    }
    assert_eq!(peers.count("e", 486), 6, "{:?}", peers.finals);
    assert_eq!(peers.reached.len(), 6, "{:?}", peers.reached);
}

#[test]
fn a_store_that_restarts_empty_gets_each_nodes_calls_again() {
    let mut redis = Redis::start();
    let port = redis.port;
    let mut peers = Peers::new();
    let gw = peers.gateway.local_addr().unwrap();
    let nodes = cluster(&redis, 2, "w", 50400, gw, (1000, 4));
    // Two calls up on node 0.
    for i in 0..2 {
        peers.invite(&format!("w{i}"), nodes[0].sbc.private);
    }
    peers.pump(Duration::from_millis(800), 200);
    assert_eq!(peers.count("w", 200), 2, "{:?}", peers.finals);
    // Redis restarts with nothing in it: node 0 writes its two calls again.
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    redis = Redis::start_on(port);
    std::thread::sleep(Duration::from_millis(2_500));
    wait_members(&nodes[1].sbc.api, &["w0".to_string(), "w1".to_string()]);
    // So node 1 has two slots left of four, not four.
    for i in 0..4 {
        peers.invite(&format!("x{i}"), nodes[1].sbc.private);
    }
    peers.pump(Duration::from_secs(1), 200);
    assert_eq!(peers.count("x", 200), 2, "{:?}", peers.finals);
    drop(redis);
}
