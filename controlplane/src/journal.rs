//! The call journal on disk: the latest image of every answered call, in a
//! small SQLite file of its own (`[journal] path`), so that after a crash
//! (`kill -9`), a restart or an upgrade on the same host the engine puts the
//! calls back ([`sbc_dataplane::engine::CallImage`], `Dataplane::restore`).
//!
//! The engine queues what changed on a ring (`EngineStats::journal`); a
//! task here drains it every [`FLUSH`], keeps the last operation of each
//! call, and writes them in one transaction: off the packet path and off the
//! engine thread. The file is in WAL mode with `synchronous = NORMAL`: a
//! committed write survives the process dying, and the last [`FLUSH`] of
//! changes may be lost with the host's power.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sbc_dataplane::engine::{CallImage, JournalOp};
use sbc_dataplane::stats::EngineStats;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

/// How often the writer drains the engine's ring.
pub const FLUSH: Duration = Duration::from_millis(50);

/// Rows in one statement of a batch at most: two bound values a row stay
/// under SQLite's oldest limit of 999 variables per statement.
const ROWS_PER_STATEMENT: usize = 400;

/// The journal's file, open.
#[derive(Debug, Clone)]
pub struct Journal {
    pool: SqlitePool,
}

/// What [`Journal::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The calls, oldest number first.
    pub calls: Vec<CallImage>,
    /// Rows that did not decode (another version's format): deleted.
    pub undecodable: usize,
}

impl Journal {
    /// Opens (creating, mode 0600) the journal at `path`.
    ///
    /// # Errors
    /// The file cannot be created or opened as SQLite.
    pub async fn open(path: &Path) -> anyhow::Result<Journal> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS calls (call INTEGER PRIMARY KEY, image BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Journal { pool })
    }

    /// Every call kept; rows that do not decode are deleted and counted.
    ///
    /// # Errors
    /// The file cannot be read.
    pub async fn load(&self) -> anyhow::Result<Loaded> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT call, image FROM calls ORDER BY call")
                .fetch_all(&self.pool)
                .await?;
        let mut loaded = Loaded::default();
        for (call, bytes) in rows {
            match CallImage::from_bytes(&bytes) {
                Ok(image) => loaded.calls.push(image),
                Err(e) => {
                    tracing::warn!(call, error = %e, "call journal: image dropped");
                    loaded.undecodable += 1;
                    self.forget(&[call]).await?;
                }
            }
        }
        Ok(loaded)
    }

    /// Deletes calls by number (those the engine could not put back).
    ///
    /// # Errors
    /// The file cannot be written.
    pub async fn forget(&self, calls: &[i64]) -> anyhow::Result<()> {
        for call in calls {
            sqlx::query("DELETE FROM calls WHERE call = ?")
                .bind(call)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Writes a batch: each call's image replaced, or the call deleted
    /// (`None`), in one transaction of a few multi-row statements (up to
    /// [`ROWS_PER_STATEMENT`] rows each): every statement is a round trip
    /// to sqlx's SQLite thread, so one per call would cost a wake-up each
    /// (perf/compare measured 0.04 ms of CPU per call that way at 300
    /// calls/s).
    async fn write(&self, batch: &BTreeMap<u64, Option<Vec<u8>>>) -> anyhow::Result<()> {
        let up: Vec<(i64, &[u8])> = batch
            .iter()
            .filter_map(|(&call, image)| Some((call as i64, image.as_deref()?)))
            .collect();
        let down: Vec<i64> = batch
            .iter()
            .filter(|(_, image)| image.is_none())
            .map(|(&call, _)| call as i64)
            .collect();
        let mut tx = self.pool.begin().await?;
        for rows in up.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR REPLACE INTO calls (call, image) ",
            );
            q.push_values(rows, |mut row, (call, image)| {
                row.push_bind(*call).push_bind(*image);
            });
            q.build().execute(&mut *tx).await?;
        }
        for calls in down.chunks(ROWS_PER_STATEMENT) {
            let mut q =
                sqlx::QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM calls WHERE call IN (");
            let mut list = q.separated(", ");
            for call in calls {
                list.push_bind(*call);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts the writer: every [`FLUSH`] it drains `stats.journal` and
    /// writes what changed. A failed write is logged and tried again with
    /// the next batch (nothing of it is lost while the process lives).
    pub fn start(self, stats: Arc<EngineStats>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FLUSH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
            let mut failing = false;
            loop {
                every.tick().await;
                while let Some(op) = stats.journal.pop() {
                    match op {
                        JournalOp::Up(image) => batch.insert(image.call(), Some(image.to_bytes())),
                        JournalOp::Down(call) => batch.insert(call, None),
                    };
                }
                if batch.is_empty() {
                    continue;
                }
                match self.write(&batch).await {
                    Ok(()) => {
                        if failing {
                            tracing::info!("call journal: writing again");
                        }
                        failing = false;
                        batch.clear();
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "call journal: write failed; kept to try again");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rows(j: &Journal) -> Vec<i64> {
        sqlx::query_scalar("SELECT call FROM calls ORDER BY call")
            .fetch_all(&j.pool)
            .await
            .unwrap()
    }

    /// Batches larger than one statement's rows are written whole, the last
    /// operation of a call wins, and deletes of calls never written are
    /// harmless.
    #[tokio::test]
    async fn a_batch_of_many_calls_takes_several_statements() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("calls.db")).await.unwrap();
        let first: BTreeMap<u64, Option<Vec<u8>>> = (0..(ROWS_PER_STATEMENT as u64 * 2 + 7))
            .map(|c| (c, Some(vec![c as u8; 3])))
            .collect();
        j.write(&first).await.unwrap();
        assert_eq!(rows(&j).await.len(), ROWS_PER_STATEMENT * 2 + 7);
        // Every even call ends, every odd one is replaced, and calls that
        // never were end too.
        let second: BTreeMap<u64, Option<Vec<u8>>> = (0..(ROWS_PER_STATEMENT as u64 * 3))
            .map(|c| (c, (c % 2 == 1).then(|| vec![9u8; 2])))
            .collect();
        j.write(&second).await.unwrap();
        let left = rows(&j).await;
        assert_eq!(left.len(), ROWS_PER_STATEMENT * 3 / 2);
        assert!(left.iter().all(|c| c % 2 == 1));
        let image: Vec<u8> = sqlx::query_scalar("SELECT image FROM calls WHERE call = 1")
            .fetch_one(&j.pool)
            .await
            .unwrap();
        assert_eq!(image, vec![9u8; 2]);
    }
}
