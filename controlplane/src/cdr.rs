//! Call detail records in SQL (table `cdrs`, migration 0005) and the
//! statistics read from them: ASR, ACD, setup time and failure codes per
//! tenant and per gateway over a window.
//!
//! The engine's call records reach the control plane over a ring; the API's
//! drain hands each one to the [`CdrWriter`] queue (bounded; a full queue
//! is a counted drop), whose task writes them in batches (every second, or
//! 500 at a time) in one transaction, never on the packet path. Rows older
//! than `[cdr] keep_days` are deleted once an hour.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sbc_dataplane::call::{CallRecord, RtpSummary};
use sbc_dataplane::sip::build::reason;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::mpsc;

use crate::provisioning::{DbError, Provisioning};

/// One call as stored (OpenAPI `Cdr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CdrRow {
    /// Assigned by the database.
    pub id: i64,
    /// Call-ID of the caller's leg, as the caller sent it.
    pub caller_call_id: String,
    /// Call-ID of our leg toward the callee.
    pub callee_call_id: String,
    /// The tenant the call was routed for, if any.
    pub tenant_id: Option<String>,
    /// `inbound` (from a carrier) or `outbound` (from a gateway).
    pub direction: String,
    /// The caller's address, `ip:port` (the carrier's for an inbound call).
    pub caller_addr: String,
    /// The callee leg's address: the last gateway (or carrier) tried.
    pub callee_addr: String,
    /// When the INVITE arrived, UTC ms since the Unix epoch.
    pub start_ms: i64,
    /// When the 2xx came, if answered.
    pub answer_ms: Option<i64>,
    /// When the call ended.
    pub end_ms: i64,
    /// `answered`, `failed`, `cancelled` or `media_timeout`.
    pub result: String,
    /// The final status the caller got (200 when answered; 0: none).
    pub final_code: i64,
    /// Its reason phrase as the SBC names the code.
    pub reason: String,
    /// `caller`, `callee` or `sbc`; null when unknown.
    pub ended_by: Option<String>,
    /// INVITEs sent toward the callee side (1 + failovers).
    pub attempts: i64,
    /// RTP from the caller: packets, bytes, lost, jitter (ms, the largest
    /// of its media lines).
    pub caller_packets: i64,
    /// See `caller_packets`.
    pub caller_bytes: i64,
    /// See `caller_packets`.
    pub caller_lost: i64,
    /// See `caller_packets`.
    pub caller_jitter_ms: f64,
    /// RTP from the callee, as for the caller.
    pub callee_packets: i64,
    /// See `callee_packets`.
    pub callee_bytes: i64,
    /// See `callee_packets`.
    pub callee_lost: i64,
    /// See `callee_packets`.
    pub callee_jitter_ms: f64,
    /// The SBC node that carried the call (`[cluster] node_id`; '' for
    /// rows written before nodes were named).
    #[serde(default)]
    pub node_id: String,
}

fn sum(media: impl Iterator<Item = RtpSummary>) -> (i64, i64, i64, f64) {
    media.fold((0, 0, 0, 0.0), |(p, b, l, j), x| {
        (
            p + x.packets as i64,
            b + x.bytes as i64,
            l + x.lost as i64,
            f64::max(j, x.jitter_ms),
        )
    })
}

impl CdrRow {
    /// The row of a finished call; `epoch_ms` is the wall-clock time of
    /// engine time 0 (`EngineStats::epoch_unix_ms`).
    pub fn from_record(r: &CallRecord, epoch_ms: u64) -> CdrRow {
        let at = |ms: u64| (epoch_ms + ms) as i64;
        let (cp, cb, cl, cj) = sum(r.media.iter().map(|m| m.from_caller));
        let (ep, eb, el, ej) = sum(r.media.iter().map(|m| m.from_callee));
        CdrRow {
            id: 0,
            caller_call_id: r.caller_call_id.clone(),
            callee_call_id: r.callee_call_id.clone(),
            tenant_id: r.tenant.clone(),
            direction: crate::api::model::Direction::of(r.caller_side)
                .name()
                .to_string(),
            caller_addr: r.caller_addr.to_string(),
            callee_addr: r.callee_addr.to_string(),
            start_ms: at(r.started_ms),
            answer_ms: r.setup_ms.map(|s| at(r.started_ms + s)),
            end_ms: at(r.ended_ms),
            result: r.result.name().to_string(),
            final_code: i64::from(r.final_code),
            reason: if r.final_code == 0 {
                String::new()
            } else {
                reason(r.final_code).to_string()
            },
            ended_by: r.ended_by.map(|e| e.name().to_string()),
            attempts: i64::from(r.attempts),
            caller_packets: cp,
            caller_bytes: cb,
            caller_lost: cl,
            caller_jitter_ms: cj,
            callee_packets: ep,
            callee_bytes: eb,
            callee_lost: el,
            callee_jitter_ms: ej,
            node_id: String::new(),
        }
    }

    /// The gateway of the call: the callee's address for an inbound call,
    /// the caller's for an outbound one.
    pub fn gateway(&self) -> &str {
        if self.direction == "inbound" {
            &self.callee_addr
        } else {
            &self.caller_addr
        }
    }
}

const COLUMNS: &str = "caller_call_id, callee_call_id, tenant_id, direction, caller_addr, \
    callee_addr, start_ms, answer_ms, end_ms, result, final_code, reason, ended_by, attempts, \
    caller_packets, caller_bytes, caller_lost, caller_jitter_ms, callee_packets, callee_bytes, \
    callee_lost, callee_jitter_ms, node_id";

/// Which CDRs to list (`GET /api/v1/cdrs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrQuery {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only calls that started at or after this time (UTC ms).
    pub since_ms: i64,
    /// At most this many, newest first.
    pub limit: i64,
}

impl Provisioning {
    /// Stores `rows` in one transaction.
    pub async fn insert_cdrs(&self, rows: &[CdrRow]) -> Result<(), DbError> {
        let mut tx = self.write_tx().await?;
        let sql = self.sql(&format!(
            "INSERT INTO cdrs ({COLUMNS}) VALUES \
             (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        for r in rows {
            sqlx::query(&sql)
                .bind(&r.caller_call_id)
                .bind(&r.callee_call_id)
                .bind(r.tenant_id.clone())
                .bind(&r.direction)
                .bind(&r.caller_addr)
                .bind(&r.callee_addr)
                .bind(r.start_ms)
                .bind(r.answer_ms)
                .bind(r.end_ms)
                .bind(&r.result)
                .bind(r.final_code)
                .bind(&r.reason)
                .bind(r.ended_by.clone())
                .bind(r.attempts)
                .bind(r.caller_packets)
                .bind(r.caller_bytes)
                .bind(r.caller_lost)
                .bind(r.caller_jitter_ms)
                .bind(r.callee_packets)
                .bind(r.callee_bytes)
                .bind(r.callee_lost)
                .bind(r.callee_jitter_ms)
                .bind(&r.node_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The CDRs `q` asks for, newest first.
    pub async fn cdrs(&self, q: &CdrQuery) -> Result<Vec<CdrRow>, DbError> {
        let tenant = if q.tenant.is_some() {
            " AND tenant_id = ?"
        } else {
            ""
        };
        let sql = self.sql(&format!(
            "SELECT id, {COLUMNS} FROM cdrs WHERE start_ms >= ?{tenant} \
             ORDER BY start_ms DESC, id DESC LIMIT {}",
            q.limit.max(0)
        ));
        let mut query = sqlx::query_as::<_, CdrRow>(&sql).bind(q.since_ms);
        if let Some(t) = &q.tenant {
            query = query.bind(t.clone());
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// Deletes the CDRs of calls that started before `before_ms`; how many.
    pub async fn purge_cdrs(&self, before_ms: i64) -> Result<u64, DbError> {
        let sql = self.sql("DELETE FROM cdrs WHERE start_ms < ?");
        Ok(sqlx::query(&sql)
            .bind(before_ms)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// ASR, ACD, setup time and failure codes per tenant, per gateway and
    /// per node of the calls that started at or after `since_ms`: those of
    /// node `node` (and rows from before nodes were named), or of every
    /// node sharing the database when `None`.
    pub async fn cdr_stats(
        &self,
        since_ms: i64,
        node: Option<&str>,
    ) -> Result<WindowStats, DbError> {
        let of_node = if node.is_some() {
            " AND node_id IN (?, '')"
        } else {
            ""
        };
        let sql = self.sql(&format!(
            "SELECT tenant_id, direction, caller_addr, callee_addr, start_ms, answer_ms, end_ms, \
             final_code, node_id FROM cdrs WHERE start_ms >= ?{of_node}"
        ));
        let mut query = sqlx::query(&sql).bind(since_ms);
        if let Some(n) = node {
            query = query.bind(n);
        }
        let rows = query.fetch_all(self.pool()).await?;
        let mut out = WindowStats::default();
        for row in rows {
            let tenant: Option<String> = row.try_get(0)?;
            let direction: String = row.try_get(1)?;
            let gateway: String = row.try_get(if direction == "inbound" { 3 } else { 2 })?;
            let start: i64 = row.try_get(4)?;
            let answer: Option<i64> = row.try_get(5)?;
            let end: i64 = row.try_get(6)?;
            let code: i64 = row.try_get(7)?;
            let node_id: String = row.try_get(8)?;
            for group in [
                out.by_tenant
                    .entry(tenant.clone().unwrap_or_else(|| "-".into()))
                    .or_default(),
                out.by_gateway.entry(gateway.clone()).or_default(),
                out.by_node
                    .entry(if node_id.is_empty() {
                        "-".into()
                    } else {
                        node_id
                    })
                    .or_default(),
            ] {
                group.add(start, answer, end, code);
            }
        }
        for g in out
            .by_tenant
            .values_mut()
            .chain(out.by_gateway.values_mut())
            .chain(out.by_node.values_mut())
        {
            g.finish();
        }
        Ok(out)
    }
}

/// Figures of a group of calls over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// Calls (dialogs created).
    pub attempts: u64,
    /// Calls answered.
    pub answered: u64,
    /// Answer-seizure ratio, answered / attempts (0..1; 0 without attempts).
    pub asr: f64,
    /// Average call duration of the answered calls, seconds.
    pub acd_s: f64,
    /// Average time from INVITE to 2xx of the answered calls, ms.
    pub setup_avg_ms: f64,
    /// The final codes of the unanswered calls, most frequent first (five
    /// at most; 0: the caller gave up before any final answer).
    pub top_failures: Vec<FailureCount>,
    #[serde(skip)]
    duration_sum_ms: i64,
    #[serde(skip)]
    setup_sum_ms: i64,
    #[serde(skip)]
    failures: BTreeMap<i64, u64>,
}

/// One failure code and how often it ended a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    /// The final status code.
    pub code: i64,
    /// Calls it ended.
    pub count: u64,
}

impl WindowFigures {
    fn add(&mut self, start: i64, answer: Option<i64>, end: i64, code: i64) {
        self.attempts += 1;
        match answer {
            Some(a) => {
                self.answered += 1;
                self.duration_sum_ms += end - a;
                self.setup_sum_ms += a - start;
            }
            None => *self.failures.entry(code).or_default() += 1,
        }
    }

    fn finish(&mut self) {
        if self.attempts > 0 {
            self.asr = self.answered as f64 / self.attempts as f64;
        }
        if self.answered > 0 {
            self.acd_s = self.duration_sum_ms as f64 / self.answered as f64 / 1000.0;
            self.setup_avg_ms = self.setup_sum_ms as f64 / self.answered as f64;
        }
        let mut top: Vec<FailureCount> = self
            .failures
            .iter()
            .map(|(&code, &count)| FailureCount { code, count })
            .collect();
        top.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
        top.truncate(5);
        self.top_failures = top;
    }
}

/// [`WindowFigures`] per tenant (`-`: none) and per gateway (`ip:port`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// By tenant id.
    pub by_tenant: BTreeMap<String, WindowFigures>,
    /// By gateway address.
    pub by_gateway: BTreeMap<String, WindowFigures>,
    /// By SBC node (`-`: rows from before nodes were named).
    pub by_node: BTreeMap<String, WindowFigures>,
}

/// Where finished calls go to be written (see the module docs).
#[derive(Debug, Clone)]
pub struct CdrWriter {
    tx: mpsc::Sender<CdrRow>,
    /// CDRs lost to a full queue or a failed write.
    pub dropped: Arc<AtomicU64>,
    /// CDRs written.
    pub written: Arc<AtomicU64>,
    /// This node's id, stamped on every row.
    node_id: Arc<str>,
}

/// CDRs waiting to be written at most.
const QUEUE: usize = 65_536;
/// Rows per transaction at most.
const BATCH: usize = 500;

impl CdrWriter {
    /// Starts the writer task on `db`, deleting rows older than `keep_days`
    /// (0: keep them all) once an hour; every row says `node_id` carried it.
    pub fn start(db: Arc<Provisioning>, keep_days: u32, node_id: &str) -> CdrWriter {
        let (tx, mut rx) = mpsc::channel::<CdrRow>(QUEUE);
        let writer = CdrWriter {
            tx,
            dropped: Arc::default(),
            written: Arc::default(),
            node_id: Arc::from(node_id),
        };
        let (dropped, written) = (writer.dropped.clone(), writer.written.clone());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut purge = tokio::time::interval(Duration::from_secs(3_600));
            loop {
                tokio::select! {
                    got = rx.recv_many(&mut batch, BATCH) => {
                        if got == 0 {
                            return;
                        }
                        // Let a burst gather for up to a second.
                        if batch.len() < BATCH {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            while batch.len() < BATCH {
                                match rx.try_recv() {
                                    Ok(r) => batch.push(r),
                                    Err(_) => break,
                                }
                            }
                        }
                        match db.insert_cdrs(&batch).await {
                            Ok(()) => {
                                written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, rows = batch.len(), "CDRs not written");
                                dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            }
                        }
                        batch.clear();
                    }
                    _ = purge.tick(), if keep_days > 0 => {
                        let before = now_ms() - i64::from(keep_days) * 86_400_000;
                        match db.purge_cdrs(before).await {
                            Ok(n) if n > 0 => tracing::info!(rows = n, keep_days, "old CDRs deleted"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "old CDRs not deleted"),
                        }
                    }
                }
            }
        });
        writer
    }

    /// The id of the node whose rows this writes.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Queues one finished call (stamped with this node's id); counted as
    /// dropped when the queue is full.
    pub fn push(&self, mut row: CdrRow) {
        row.node_id = self.node_id.to_string();
        if self.tx.try_send(row).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// UTC ms since the Unix epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A window like `30s`, `15m`, `1h`, `7d` or `1h30m` (humantime's duration
/// syntax) in ms.
///
/// # Errors
/// A message naming the accepted forms, or a window of 0 or over a year.
pub fn parse_window(text: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a window like 30s, 15m, 1h or 7d ({e})"))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms == 0 || ms > 366 * 86_400_000 {
        return Err(format!("{text:?}: must be above 0 and at most a year"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_read_with_their_unit() {
        assert_eq!(parse_window("1h"), Ok(3_600_000));
        assert_eq!(parse_window("30m"), Ok(1_800_000));
        assert_eq!(parse_window("45s"), Ok(45_000));
        assert_eq!(parse_window("7d"), Ok(604_800_000));
        assert_eq!(parse_window("1h30m"), Ok(5_400_000));
        assert!(parse_window("2y").is_err());
        assert!(parse_window("0h").is_err());
        assert!(parse_window("h").unwrap_err().contains("like 30s"));
    }

    #[test]
    fn figures_give_asr_acd_and_the_top_failures() {
        let mut f = WindowFigures::default();
        f.add(0, Some(100), 10_100, 200);
        f.add(0, Some(300), 20_300, 200);
        f.add(0, None, 50, 486);
        f.add(0, None, 50, 503);
        f.add(0, None, 50, 486);
        f.finish();
        assert_eq!((f.attempts, f.answered), (5, 2));
        assert!((f.asr - 0.4).abs() < 1e-9);
        assert!((f.acd_s - 15.0).abs() < 1e-9);
        assert!((f.setup_avg_ms - 200.0).abs() < 1e-9);
        assert_eq!(
            f.top_failures,
            [
                FailureCount {
                    code: 486,
                    count: 2
                },
                FailureCount {
                    code: 503,
                    count: 1
                }
            ]
        );
    }
}
