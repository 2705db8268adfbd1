//! Several SBC nodes: membership and cluster-wide tenant limits in Redis or
//! Valkey (`[cluster] redis`), the store operators already run; no protocol
//! of our own.
//!
//! Keys (one hash tag, `{sbc}`, so a Redis Cluster keeps them on one shard):
//! - `sbc:{sbc}:nodes`: sorted set, node id → lease expiry (ms, the store's
//!   clock). A node renews its lease every third of `lease_s`; one whose
//!   lease passed is out, and its slots with it.
//! - `sbc:{sbc}:info`: hash, node id → JSON [`NodeInfo`] (state, addresses).
//! - `sbc:{sbc}:slots:<tenant>`: hash, node id → the tenant's live calls on
//!   that node. The admission script counts only live nodes' fields (and
//!   deletes the others').
//! - `sbc:{sbc}:cps:<tenant>`: hash `milli` (tokens × 1000), `ts` (ms): the
//!   tenant's `max_cps` token bucket shared by every node.
//!
//! The engine never waits on the store: it puts a limited tenant's INVITE
//! aside and asks ([`AdmissionAsk`]); [`serve_asks`] answers each, many at
//! once on one pipelined connection, with one atomic Lua script (a slot below `max_concurrent` across live
//! nodes and a token from the shared bucket, both or neither). When the
//! store cannot be reached the engine's deadline or the
//! [`Verdict::Unreachable`] answer lets the node's share decide (limit /
//! live nodes as last seen), and status and metrics say so. When the store
//! is reached again the node's counts are written afresh from the engine's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use sbc_dataplane::backend::Dataplane;
use sbc_dataplane::engine::{AdmissionAsk, Verdict};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::ClusterConfig;

/// The prefix of every key of ours.
const PREFIX: &str = "sbc:{sbc}:";

/// Takes a slot and a CPS token of a tenant across live nodes, both or
/// neither. KEYS: nodes, slots, cps. ARGV: node, max_concurrent, max_cps.
/// Returns 1 granted, 0 over `max_concurrent`, -1 over `max_cps`.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used = 0
local f = redis.call('HGETALL', KEYS[2])
for i = 1, #f, 2 do
  local exp = redis.call('ZSCORE', KEYS[1], f[i])
  if exp and tonumber(exp) > now then
    used = used + tonumber(f[i + 1])
  else
    redis.call('HDEL', KEYS[2], f[i])
  end
end
if used >= tonumber(ARGV[2]) then return 0 end
local rate = tonumber(ARGV[3])
local cap = rate * 1000
local b = redis.call('HMGET', KEYS[3], 'milli', 'ts')
local milli = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
milli = math.min(cap, milli + math.max(0, now - ts) * rate)
if milli < 1000 then
  redis.call('HSET', KEYS[3], 'milli', milli, 'ts', now)
  redis.call('PEXPIRE', KEYS[3], 60000)
  return -1
end
redis.call('HSET', KEYS[3], 'milli', milli - 1000, 'ts', now)
redis.call('PEXPIRE', KEYS[3], 60000)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
";

/// Gives a slot back (never below 0). KEYS: slots. ARGV: node.
const RELEASE: &str = r"
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if v <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
";

/// Renews this node's lease and info, drops nodes whose lease passed, and
/// lists the live ones. KEYS: nodes, info. ARGV: node, lease_ms, info JSON.
/// Returns [id, ms left, info JSON, ...].
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, n in ipairs(dead) do redis.call('HDEL', KEYS[2], n) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  table.insert(out, live[i])
  table.insert(out, tostring(math.floor(tonumber(live[i + 1]) - now)))
  table.insert(out, redis.call('HGET', KEYS[2], live[i]) or '{}')
end
return out
";

/// A member's state, as the membership says it (`active`, `draining`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Takes new calls.
    #[default]
    Active,
    /// Takes no new calls (`sbcctl drain`, SIGTERM): not counted in the
    /// others' share of the limits.
    Draining,
}

/// What a node says of itself in the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Whether it takes new calls.
    pub state: NodeState,
    /// Its SIP address on the private (carrier) side.
    pub sip_private: String,
    /// Its SIP address on the public (gateway) side.
    pub sip_public: String,
    /// Its API's listen address.
    pub api: String,
    /// Unix seconds it started at.
    pub started_unix_s: u64,
}

/// One live node as the last heartbeat saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its `[cluster] node_id`.
    pub node_id: String,
    /// Milliseconds its lease has left.
    pub lease_left_ms: i64,
    /// What it says of itself.
    #[serde(flatten)]
    pub info: NodeInfo,
}

/// The cluster as this node sees it, for status and metrics.
#[derive(Debug)]
pub struct ClusterState {
    /// This node's id.
    pub node_id: String,
    /// Whether the store answered the latest command.
    pub store_up: AtomicBool,
    /// Admission verdicts by kind since start: granted, refused, and
    /// unanswerable (store down).
    pub granted: AtomicU64,
    /// Refused over a cluster-wide limit.
    pub refused: AtomicU64,
    /// Asks the store could not answer.
    pub store_errors: AtomicU64,
    /// Live nodes at the latest heartbeat.
    pub members: Mutex<Vec<Member>>,
    /// What this node says of itself (its state included).
    info: Mutex<NodeInfo>,
    /// The current outage was logged.
    down_logged: AtomicBool,
    lease_ms: u64,
    keys: Keys,
}

/// The status object of a node in a cluster (`GET /api/v1/status`
/// `cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: String,
    /// `up` when the store answers, else `down` (limits by share).
    pub store: String,
    /// `cluster` (counted in the store) or `node-share` (limit / live
    /// nodes, counted here: the store is down).
    pub limits: String,
    /// Live nodes (active and draining) at the latest heartbeat.
    pub nodes: Vec<Member>,
    /// Admission verdicts since start.
    pub granted: u64,
    /// Refused over a cluster-wide limit since start.
    pub refused: u64,
    /// Asks the store did not answer since start.
    pub store_errors: u64,
}

#[derive(Debug, Clone)]
struct Keys {
    nodes: String,
    info: String,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            nodes: format!("{PREFIX}nodes"),
            info: format!("{PREFIX}info"),
        }
    }

    fn slots(tenant: &str) -> String {
        format!("{PREFIX}slots:{tenant}")
    }

    fn cps(tenant: &str) -> String {
        format!("{PREFIX}cps:{tenant}")
    }
}

impl ClusterState {
    /// This node's state as it says it in the membership.
    pub fn node_state(&self) -> NodeState {
        self.info.lock().map(|i| i.state).unwrap_or_default()
    }

    /// The store did not answer (`e`): limits go by this node's share until
    /// the next heartbeat reaches it. Logged once per outage, a store
    /// unreachable from the start included.
    fn store_down(&self, e: &redis::RedisError) {
        self.store_up.store(false, Ordering::Relaxed);
        if !self.down_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "cluster store unreachable: tenant limits by this node's share");
        }
    }

    /// What `GET /api/v1/status` shows.
    pub fn status(&self) -> ClusterStatus {
        let up = self.store_up.load(Ordering::Relaxed);
        ClusterStatus {
            node_id: self.node_id.clone(),
            store: if up { "up" } else { "down" }.into(),
            limits: if up { "cluster" } else { "node-share" }.into(),
            nodes: self.members.lock().map(|m| m.clone()).unwrap_or_default(),
            granted: self.granted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
        }
    }
}

/// A running cluster membership: its state, and how to leave.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// What status and metrics read.
    pub state: Arc<ClusterState>,
    conn: Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
}

impl Cluster {
    /// Joins the cluster of `cfg.redis` (which must be set) as
    /// `cfg.node_id`: starts the heartbeat (every `lease_s / 3`) and the
    /// task that answers the engine's admission asks. A store down at start
    /// is tried again at every heartbeat; meanwhile the node's share decides.
    ///
    /// # Errors
    /// `cfg.redis` unset or not a Redis URL.
    pub fn start(
        cfg: &ClusterConfig,
        info: NodeInfo,
        dataplane: Arc<Dataplane>,
    ) -> anyhow::Result<Cluster> {
        let url = cfg
            .redis
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("cluster.redis is not set"))?;
        let client = redis::Client::open(url)?;
        let state = Arc::new(ClusterState {
            node_id: cfg.node_id.clone(),
            store_up: AtomicBool::new(false),
            granted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            members: Mutex::new(Vec::new()),
            info: Mutex::new(info),
            down_logged: AtomicBool::new(false),
            lease_ms: cfg.lease_s * 1_000,
            keys: Keys::new(),
        });
        let cluster = Cluster {
            state,
            conn: Arc::new(tokio::sync::Mutex::new(None)),
        };
        dataplane.stats.cluster_nodes.set(1);
        let notify = Arc::new(Notify::new());
        let waker = notify.clone();
        let _ = dataplane
            .stats
            .admission_waker
            .set(sbc_dataplane::stats::Waker(Box::new(move || {
                waker.notify_one()
            })));
        let timeout = Duration::from_millis(cfg.ask_timeout_ms.max(100) * 2);
        tokio::spawn(heartbeat(
            cluster.clone(),
            client,
            dataplane.clone(),
            timeout,
        ));
        tokio::spawn(serve_asks(cluster.clone(), dataplane, notify));
        Ok(cluster)
    }

    /// Draining (`sbcctl drain`, SIGTERM; `false`: drain ended): said in
    /// the membership at once; once the node's last call ended it leaves
    /// the membership, and joins again when the drain ends.
    pub fn set_draining(&self, on: bool) {
        if let Ok(mut i) = self.state.info.lock() {
            i.state = if on {
                NodeState::Draining
            } else {
                NodeState::Active
            };
        }
    }

    /// Leaves the membership (at exit): other nodes stop counting this
    /// node's share and its slots at once.
    pub async fn leave(&self) {
        let Some(mut conn) = self.conn.lock().await.clone() else {
            return;
        };
        let s = &self.state;
        let _: redis::RedisResult<()> = redis::pipe()
            .zrem(&s.keys.nodes, &s.node_id)
            .hdel(&s.keys.info, &s.node_id)
            .query_async(&mut conn)
            .await;
        tracing::info!(node_id = %s.node_id, "left the cluster");
    }
}

/// Renews the lease every `lease / 3`, keeps the member list, and on
/// (re)connection has the engine's counts written afresh.
async fn heartbeat(
    cluster: Cluster,
    client: redis::Client,
    dataplane: Arc<Dataplane>,
    timeout: Duration,
) {
    let state = &cluster.state;
    let script = Script::new(HEARTBEAT);
    let every = Duration::from_millis((state.lease_ms / 3).max(100));
    let mut left = false;
    loop {
        // Drained to the last call: out of the membership until the drain ends.
        if state.node_state() == NodeState::Draining && dataplane.stats.dialogs.get() == 0 {
            if !left {
                cluster.leave().await;
                left = true;
                if let Ok(mut m) = state.members.lock() {
                    m.retain(|m| m.node_id != state.node_id);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        left = false;
        let mut slot = cluster.conn.lock().await;
        if slot.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            match client.get_connection_manager_with_config(config).await {
                Ok(c) => *slot = Some(c),
                Err(e) => state.store_down(&e),
            }
        }
        let conn = slot.clone();
        drop(slot);
        let info = state.info.lock().map(|i| i.clone()).unwrap_or_default();
        if let Some(mut conn) = conn {
            let json = serde_json::to_string(&info).unwrap_or_default();
            let reply: redis::RedisResult<Vec<String>> = script
                .key(&state.keys.nodes)
                .key(&state.keys.info)
                .arg(&state.node_id)
                .arg(state.lease_ms)
                .arg(json)
                .invoke_async(&mut conn)
                .await;
            match reply {
                Ok(flat) => {
                    let members = members_of(&flat);
                    let active = members
                        .iter()
                        .filter(|m| m.info.state == NodeState::Active)
                        .count();
                    dataplane.stats.cluster_nodes.set(active.max(1) as u64);
                    if let Ok(mut m) = state.members.lock() {
                        *m = members;
                    }
                    state.down_logged.store(false, Ordering::Relaxed);
                    if !state.store_up.swap(true, Ordering::Relaxed) {
                        tracing::info!(node_id = %state.node_id, "cluster store reached: this node's counts written afresh");
                        dataplane
                            .stats
                            .admission_resync
                            .store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => state.store_down(&e),
            }
        }
        // The next beat comes at once when the state changes: a drain is
        // said at once.
        let next = tokio::time::Instant::now() + every;
        while tokio::time::Instant::now() < next && state.node_state() == info.state {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The heartbeat's reply, `[id, ms left, info JSON, ...]`, as members in
/// the order of their ids.
fn members_of(flat: &[String]) -> Vec<Member> {
    let mut members: Vec<Member> = flat
        .chunks_exact(3)
        .map(|c| Member {
            node_id: c[0].clone(),
            lease_left_ms: c[1].parse().unwrap_or(0),
            info: serde_json::from_str(&c[2]).unwrap_or_default(),
        })
        .collect();
    members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    members
}

/// Asks in flight toward the store at once, at most (one connection: the
/// client pipelines them).
const MAX_IN_FLIGHT: usize = 256;

/// The admission script and the release script, shared by the asks in
/// flight.
struct Scripts {
    admit: Script,
    release: Script,
}

/// Answers the engine's admission asks, each with one command or script,
/// up to [`MAX_IN_FLIGHT`] at once on the one connection (a release only
/// follows its own call's grant, so no order among them matters); counts
/// written afresh wait for every ask before them and go alone. With no
/// store an `Admit` is answered [`Verdict::Unreachable`] and the rest waits
/// for the counts written afresh on reconnection.
async fn serve_asks(cluster: Cluster, dataplane: Arc<Dataplane>, notify: Arc<Notify>) {
    let scripts = Arc::new(Scripts {
        admit: Script::new(ADMIT),
        release: Script::new(RELEASE),
    });
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            Some(_) = in_flight.join_next() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        while in_flight.try_join_next().is_some() {}
        let state = &cluster.state;
        // One look at the connection for every ask queued now.
        let conn = if state.store_up.load(Ordering::Relaxed)
            && !dataplane.stats.admission_asks.is_empty()
        {
            cluster.conn.lock().await.clone()
        } else {
            None
        };
        while let Some(ask) = dataplane.stats.admission_asks.pop() {
            let Some(conn) = conn.clone() else {
                if let AdmissionAsk::Admit { token, .. } = ask {
                    state.store_errors.fetch_add(1, Ordering::Relaxed);
                    dataplane.admission_verdict(token, Verdict::Unreachable);
                }
                continue;
            };
            let barrier = matches!(ask, AdmissionAsk::Counts(_));
            if barrier {
                while in_flight.join_next().await.is_some() {}
            }
            while in_flight.len() >= MAX_IN_FLIGHT {
                in_flight.join_next().await;
            }
            in_flight.spawn(serve_one(
                cluster.state.clone(),
                dataplane.clone(),
                scripts.clone(),
                conn,
                ask,
            ));
            if barrier {
                while in_flight.join_next().await.is_some() {}
            }
        }
    }
}

/// One ask answered (see [`serve_asks`]); a store error marks the store
/// down, which the next heartbeat checks again.
async fn serve_one(
    state: Arc<ClusterState>,
    dataplane: Arc<Dataplane>,
    scripts: Arc<Scripts>,
    mut conn: ConnectionManager,
    ask: AdmissionAsk,
) {
    let done: redis::RedisResult<()> = match ask {
        AdmissionAsk::Admit {
            token,
            tenant,
            max_concurrent,
            max_cps,
        } => {
            let r: redis::RedisResult<i64> = scripts
                .admit
                .key(&state.keys.nodes)
                .key(Keys::slots(&tenant))
                .key(Keys::cps(&tenant))
                .arg(&state.node_id)
                .arg(max_concurrent)
                .arg(max_cps)
                .invoke_async(&mut conn)
                .await;
            let verdict = match &r {
                Ok(1) => {
                    state.granted.fetch_add(1, Ordering::Relaxed);
                    Verdict::Granted
                }
                Ok(_) => {
                    state.refused.fetch_add(1, Ordering::Relaxed);
                    Verdict::Refused
                }
                Err(_) => {
                    state.store_errors.fetch_add(1, Ordering::Relaxed);
                    Verdict::Unreachable
                }
            };
            dataplane.admission_verdict(token, verdict);
            r.map(|_| ())
        }
        AdmissionAsk::Release { tenant } => scripts
            .release
            .key(Keys::slots(&tenant))
            .arg(&state.node_id)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ()),
        AdmissionAsk::Take { tenant } => conn
            .hincr::<_, _, _, i64>(Keys::slots(&tenant), &state.node_id, 1)
            .await
            .map(|_| ()),
        AdmissionAsk::Counts(counts) => write_counts(&mut conn, &state.node_id, &counts).await,
    };
    if let Err(e) = done {
        state.store_down(&e);
    }
}

/// This node's count of every tenant, written afresh: its field removed
/// from every tenant's slots, then set to the engine's live calls.
async fn write_counts(
    conn: &mut ConnectionManager,
    node: &str,
    counts: &[(String, u32)],
) -> redis::RedisResult<()> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}slots:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for k in &keys {
        pipe.hdel(k, node).ignore();
    }
    for (tenant, n) in counts.iter().filter(|(_, n)| *n > 0) {
        pipe.hset(Keys::slots(tenant), node, *n).ignore();
    }
    pipe.query_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_from_the_heartbeat_reply() {
        let flat: Vec<String> = ["a", "9000", r#"{"state":"active","sip_private":"10.0.0.101:5060","sip_public":"","api":"","started_unix_s":1}"#, "b", "12", "{}"]
            .map(String::from)
            .to_vec();
        let m = members_of(&flat);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].node_id, "a");
        assert_eq!(m[0].lease_left_ms, 9000);
        assert_eq!(m[0].info.sip_private, "10.0.0.101:5060");
        assert_eq!(m[1].info, NodeInfo::default());
    }
}
