//! The provisioning database below the API: a database made by an earlier
//! version migrates, and a stored value the routing snapshot cannot use is
//! refused. Each test runs on a fresh SQLite file and, when
//! `SBC_TEST_MYSQL_URL` / `SBC_TEST_POSTGRES_URL` name a server (as
//! `scripts/db-servers` sets them up), on a fresh database of each server.

use std::path::Path;

use sbc_controlplane::cdr::{CdrQuery, CdrRow};
use sbc_controlplane::provisioning::{DbError, Dialect, GatewayRow, Provisioning, TenantRow};
use sbc_dataplane::media::Codec;
use sbc_dataplane::numbers::{NumberFormat, NumberRules};
use sbc_dataplane::routing::Profile;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

mod common;

/// A fresh database URL per configured backend (the SQLite file lives in
/// the returned directory).
async fn databases() -> (Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sbc.db").display()
    )];
    for var in ["SBC_TEST_MYSQL_URL", "SBC_TEST_POSTGRES_URL"] {
        if let Some(server) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            urls.push(common::fresh_database(&server).await);
        }
    }
    (urls, dir)
}

/// A pool on `url`, outside [`Provisioning`], for what the API cannot do.
async fn raw(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let (_, url) = Dialect::of(url).unwrap();
    AnyPool::connect(&url).await.unwrap()
}

fn gateway(destination: &str) -> GatewayRow {
    GatewayRow {
        id: 0,
        destination: destination.into(),
        group: 1,
        priority: 0,
        weight: 1,
        description: String::new(),
        profile: None,
        auth_username: None,
        auth_password: None,
        auth_realm: None,
        auth_password_set: false,
        transport: "udp".into(),
        headers: Default::default(),
        media_encryption: "disable".into(),
        dns: None,
    }
}

/// A pool on `url` with the schema as the migrations `names` left it,
/// applied the way `Provisioning::open` applies migrations, so sqlx records
/// them and a later open applies only the rest.
async fn migrated_to(url: &str, names: &[&str]) -> AnyPool {
    let (dialect, _) = Dialect::of(url).unwrap();
    let first = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect.name());
    for name in names {
        std::fs::copy(dir.join(name), first.path().join(name)).unwrap();
    }
    let pool = raw(url).await;
    Migrator::new(first.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

fn tenant(id: &str) -> TenantRow {
    TenantRow {
        tenant_id: id.into(),
        source_ip: "10.0.1.50".into(),
        gateway_group: 1,
        max_cps: 5,
        max_concurrent: 5,
        number_format: None,
        country_code: None,
        strip_prefix: None,
        offer_codecs: None,
    }
}

#[tokio::test]
async fn a_database_of_the_first_version_migrates_and_keeps_its_gateways() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let (dialect, _) = Dialect::of(&url).unwrap();
        eprintln!("backend: {}", dialect.name());
        let pool = migrated_to(&url, &["0001_provisioning.sql"]).await;
        sqlx::query(
            "INSERT INTO gateways (destination, grp, priority, weight, description) \
             VALUES ('sip:203.0.113.10', 1, 0, 1, 'old')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let db = Provisioning::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .with_default_profile(Profile::Livekit);
        let rows = db.gateways().await.unwrap();
        assert_eq!(rows.len(), 1, "{url}");
        assert_eq!(
            (rows[0].description.as_str(), rows[0].profile.as_deref()),
            ("old", None),
            "{url}"
        );
        let snap = db.snapshot().await.unwrap();
        assert_eq!(snap.gateways[0].profile, Profile::Livekit, "{url}");
        // The new column takes a value, and a second open migrates nothing.
        let row = db
            .add_gateway(&GatewayRow {
                profile: Some("transparent".into()),
                ..gateway("sip:203.0.113.11")
            })
            .await
            .unwrap();
        db.close().await;
        let db = Provisioning::open(&url).await.unwrap();
        assert_eq!(db.gateways().await.unwrap()[1], row, "{url}");
        db.close().await;
    }
}

#[tokio::test]
async fn a_database_of_version_two_migrates_and_keeps_its_tenants() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let (dialect, _) = Dialect::of(&url).unwrap();
        eprintln!("backend: {}", dialect.name());
        let pool = migrated_to(&url, &["0001_provisioning.sql", "0002_gateway_profile.sql"]).await;
        sqlx::query(
            "INSERT INTO tenants (tenant_id, source_ip, gateway_group, max_cps, max_concurrent) \
             VALUES ('old', '10.0.1.50', 2, 3, 4)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        // The tenant keeps its values, without number rules.
        let db = Provisioning::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let rows = db.tenants().await.unwrap();
        assert_eq!(
            rows,
            [TenantRow {
                gateway_group: 2,
                max_cps: 3,
                max_concurrent: 4,
                ..tenant("old")
            }],
            "{url}"
        );
        let snap = db.snapshot().await.unwrap();
        assert_eq!(snap.tenants[0].numbers, None, "{url}");
        // The new columns take values, and a second open migrates nothing.
        let ruled = TenantRow {
            number_format: Some("e164".into()),
            country_code: Some("44".into()),
            strip_prefix: Some("9".into()),
            offer_codecs: Some("PCMA,telephone-event".into()),
            ..rows[0].clone()
        };
        assert!(!db.upsert_tenant(&ruled).await.unwrap(), "an update");
        db.close().await;
        let db = Provisioning::open(&url).await.unwrap();
        assert_eq!(db.tenants().await.unwrap(), [ruled], "{url}");
        assert_eq!(
            db.snapshot().await.unwrap().tenants[0].numbers,
            Some(NumberRules::new(NumberFormat::E164, Some("44"), Some("9")).unwrap()),
            "{url}"
        );
        assert_eq!(
            db.snapshot().await.unwrap().tenants[0].offer_codecs,
            Some(vec![Codec::Pcma, Codec::TelephoneEvent]),
            "{url}"
        );
        db.close().await;
    }
}

#[tokio::test]
async fn stored_number_rules_the_snapshot_cannot_use_are_a_corrupt_row() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let db = Provisioning::open(&url).await.unwrap();
        eprintln!("backend: {}", db.dialect().name());
        db.upsert_tenant(&tenant("acme")).await.unwrap();
        let pool = raw(&url).await;
        for (set, want) in [
            (
                "number_format = 'E164'",
                "tenant number_format \"E164\"",
            ),
            (
                "number_format = 'e164', country_code = '+44'",
                "tenant country_code \"+44\": must be 1 to 3 digits not starting with 0 \
                 (an E.164 country code, e.g. \"1\" or \"44\")",
            ),
            (
                "number_format = 'digits', country_code = '44'",
                "tenant country_code \"44\": is used only with number_format \"e164\"",
            ),
            (
                "number_format = NULL, country_code = NULL, strip_prefix = '9'",
                "tenant strip_prefix \"9\": needs a number_format (\"as_is\" to strip the prefix only)",
            ),
            (
                "number_format = 'as_is', strip_prefix = '9#'",
                "tenant strip_prefix \"9#\": must be 1 to 16 digits or '*', optionally after a leading '+'",
            ),
            (
                "number_format = NULL, strip_prefix = NULL, offer_codecs = 'PCMU,iLBC'",
                "tenant offer_codecs \"PCMU,iLBC\": unknown codec \"iLBC\" \
                 (known: PCMU, GSM, PCMA, G722, G729, opus, telephone-event)",
            ),
        ] {
            sqlx::query(&format!("UPDATE tenants SET {set}"))
                .execute(&pool)
                .await
                .unwrap();
            // Listed as stored; the snapshot refuses it, naming the value.
            assert_eq!(db.tenants().await.unwrap().len(), 1, "{url}");
            match db.snapshot().await {
                Err(e @ DbError::Corrupt(_)) => assert_eq!(
                    e.to_string(),
                    format!("stored row is invalid: {want}"),
                    "{url}: {set}"
                ),
                other => panic!("{url}: {set}: {other:?}"),
            }
        }
        pool.close().await;
        db.close().await;
    }
}

#[tokio::test]
async fn a_stored_profile_the_snapshot_does_not_know_is_a_corrupt_row() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let db = Provisioning::open(&url).await.unwrap();
        eprintln!("backend: {}", db.dialect().name());
        db.add_gateway(&gateway("sip:203.0.113.10")).await.unwrap();
        let pool = raw(&url).await;
        sqlx::query("UPDATE gateways SET profile = 'LiveKit'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        // Listed as stored; the snapshot refuses it, naming the value.
        assert_eq!(
            db.gateways().await.unwrap()[0].profile.as_deref(),
            Some("LiveKit"),
            "{url}"
        );
        match db.snapshot().await {
            Err(e @ DbError::Corrupt(_)) => assert_eq!(
                e.to_string(),
                "stored row is invalid: gateway profile \"LiveKit\"",
                "{url}"
            ),
            other => panic!("{url}: {other:?}"),
        }
        db.close().await;
    }
}

/// A CDR of `tenant` through gateway `gw` that started at `start` (ms),
/// answered after 100 ms for `secs` s, or refused with `code`.
fn cdr(tenant: Option<&str>, gw: &str, start: i64, answer: Option<i64>, code: i64) -> CdrRow {
    CdrRow {
        id: 0,
        caller_call_id: format!("c{start}"),
        callee_call_id: format!("g{start}"),
        tenant_id: tenant.map(str::to_string),
        direction: "inbound".into(),
        caller_addr: "10.0.1.10:5060".into(),
        callee_addr: gw.into(),
        start_ms: start,
        answer_ms: answer.map(|_| start + 100),
        end_ms: start + 100 + answer.unwrap_or(0) * 1000,
        result: if answer.is_some() {
            "answered"
        } else {
            "failed"
        }
        .into(),
        final_code: code,
        reason: "x".into(),
        ended_by: Some("caller".into()),
        attempts: 1,
        caller_packets: 500,
        caller_bytes: 86_000,
        caller_lost: 2,
        caller_jitter_ms: 1.5,
        callee_packets: 499,
        callee_bytes: 85_828,
        callee_lost: 0,
        callee_jitter_ms: 0.25,
        node_id: "sbc-a".into(),
    }
}

#[tokio::test]
async fn cdrs_are_stored_listed_summed_and_purged() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let db = Provisioning::open(&url).await.unwrap();
        eprintln!("backend: {}", db.dialect().name());
        let now = 1_800_000_000_000i64;
        let rows = [
            cdr(
                Some("acme"),
                "203.0.113.10:5060",
                now - 10_000,
                Some(30),
                200,
            ),
            cdr(
                Some("acme"),
                "203.0.113.10:5060",
                now - 9_000,
                Some(10),
                200,
            ),
            cdr(Some("acme"), "203.0.113.11:5060", now - 8_000, None, 486),
            CdrRow {
                node_id: "sbc-b".into(),
                ..cdr(None, "203.0.113.11:5060", now - 7_000, None, 503)
            },
            cdr(
                Some("acme"),
                "203.0.113.10:5060",
                now - 7_200_000,
                Some(60),
                200,
            ),
        ];
        db.insert_cdrs(&rows).await.unwrap();
        // Newest first, by tenant, window and limit; every field back as written.
        let q = |tenant: Option<&str>, since_ms, limit| CdrQuery {
            tenant: tenant.map(str::to_string),
            since_ms,
            limit,
        };
        let got = db.cdrs(&q(None, now - 3_600_000, 100)).await.unwrap();
        assert_eq!(got.len(), 4, "{url}");
        assert!(got[0].id > 0);
        assert_eq!(
            CdrRow {
                id: 0,
                ..got[0].clone()
            },
            rows[3],
            "{url}"
        );
        assert_eq!(got[3].caller_jitter_ms, 1.5);
        let acme = db.cdrs(&q(Some("acme"), 0, 2)).await.unwrap();
        assert_eq!(
            acme.iter().map(|r| r.start_ms).collect::<Vec<_>>(),
            [now - 8_000, now - 9_000],
            "{url}"
        );
        // The last hour: ASR, ACD, setup and failures per tenant and gateway.
        let w = db.cdr_stats(now - 3_600_000, None).await.unwrap();
        let a = &w.by_tenant["acme"];
        assert_eq!((a.attempts, a.answered), (3, 2), "{url}");
        assert!((a.asr - 2.0 / 3.0).abs() < 1e-9 && (a.acd_s - 20.0).abs() < 1e-9);
        assert!((a.setup_avg_ms - 100.0).abs() < 1e-9);
        assert_eq!(a.top_failures[0].code, 486);
        assert_eq!(w.by_tenant["-"].top_failures[0].code, 503);
        let g11 = &w.by_gateway["203.0.113.11:5060"];
        assert_eq!((g11.attempts, g11.answered, g11.asr), (2, 0, 0.0), "{url}");
        // Per node: every node's rows, or one node's.
        assert_eq!(w.by_node["sbc-a"].attempts, 3, "{url}");
        assert_eq!(w.by_node["sbc-b"].attempts, 1, "{url}");
        let b = db.cdr_stats(now - 3_600_000, Some("sbc-b")).await.unwrap();
        assert_eq!(b.by_node.keys().collect::<Vec<_>>(), ["sbc-b"], "{url}");
        assert_eq!(b.by_tenant["-"].attempts, 1, "{url}");
        // Retention.
        assert_eq!(db.purge_cdrs(now - 3_600_000).await.unwrap(), 1, "{url}");
        assert_eq!(db.cdrs(&q(None, 0, 100)).await.unwrap().len(), 4, "{url}");
        db.close().await;
    }
}

/// API writes that read before they write (a tenant added or updated)
/// while CDR batches are written: none fails with "database is locked"
/// (SQLite answers a deadlock between two deferred transactions at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_writes_and_cdr_batches_do_not_lock_each_other_out() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let db = std::sync::Arc::new(Provisioning::open(&url).await.unwrap());
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0..60 {
                    let rows: Vec<CdrRow> = (0..20)
                        .map(|i| cdr(Some("t"), "203.0.113.10:5060", n * 100 + i, Some(1), 200))
                        .collect();
                    db.insert_cdrs(&rows).await?;
                }
                Ok::<(), DbError>(())
            })
        };
        for n in 0..60 {
            db.upsert_tenant(&tenant(&format!("t{}", n % 7)))
                .await
                .unwrap_or_else(|e| panic!("{url}: tenant write {n}: {e}"));
        }
        writer
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{url}: CDR batch: {e}"));
        db.close().await;
    }
}

/// Two SBC nodes on one database: a gateway added through node 1 and a
/// tenant written by another tool in plain SQL both reach node 2's engine
/// (its published snapshot) within a second, by the change version its
/// watcher polls, and on PostgreSQL by the trigger's NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_another_node_or_tool_reaches_every_node_within_a_second() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use sbc_controlplane::api::{watch_provisioning, AppState};
    use sbc_dataplane::routing::RouteSnapshot;
    use sqlx::Executor;

    let (urls, _dir) = databases().await;
    for url in urls {
        let node1 = Provisioning::open(&url).await.unwrap();
        let node2 = Arc::new(Provisioning::open(&url).await.unwrap());
        let dialect = node2.dialect();
        let first = Arc::new(node2.snapshot().await.unwrap());
        assert_eq!(node2.built_from(), node2.change_version().await.unwrap());
        let mut listener = node2.change_listener().await.unwrap();
        assert_eq!(listener.is_some(), dialect == Dialect::Postgres);
        let published: Arc<Mutex<Vec<Arc<RouteSnapshot>>>> = Arc::default();
        let sink = published.clone();
        let state = AppState::new(
            node2.clone(),
            Arc::new(move |s| sink.lock().unwrap().push(s)),
            Default::default(),
            "socket",
            first,
            None,
        );
        let watcher = tokio::spawn(watch_provisioning(state));
        // Published by node 2 within `within`, checked by `done`.
        let reaches = |what: &str, done: &dyn Fn(&RouteSnapshot) -> bool| {
            let start = Instant::now();
            loop {
                if published.lock().unwrap().iter().any(|s| done(s)) {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "{}: {what} did not reach node 2",
                    dialect.name()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let v0 = node2.change_version().await.unwrap();
        node1
            .add_gateway(&gateway("sip:203.0.113.77:5060"))
            .await
            .unwrap();
        assert!(node2.change_version().await.unwrap() > v0);
        if let Some(l) = listener.as_mut() {
            let n = tokio::time::timeout(Duration::from_secs(2), l.recv())
                .await
                .expect("a NOTIFY within 2 s")
                .unwrap();
            assert_eq!(
                (n.channel(), n.payload()),
                (sbc_controlplane::provisioning::CHANGE_CHANNEL, "gateways")
            );
        }
        let took = tokio::task::block_in_place(|| {
            reaches("node 1's gateway", &|s| {
                s.gateways
                    .iter()
                    .any(|g| g.destination == "sip:203.0.113.77:5060")
            })
        });
        assert!(took < Duration::from_millis(1_500), "{took:?}");
        eprintln!(
            "{}: node 1's gateway on node 2 after {took:?}",
            dialect.name()
        );
        // Another tool, plain SQL.
        let other = raw(&url).await;
        other
            .execute(
                "INSERT INTO tenants (tenant_id, source_ip, gateway_group, max_cps, max_concurrent) \
                 VALUES ('by-sql', '10.0.1.60', 1, 5, 5)",
            )
            .await
            .unwrap();
        let took = tokio::task::block_in_place(|| {
            reaches("the tenant written in SQL", &|s| {
                s.tenants.iter().any(|t| t.tenant_id == "by-sql")
            })
        });
        assert!(took < Duration::from_millis(1_500), "{took:?}");
        eprintln!(
            "{}: a tenant written in SQL on node 2 after {took:?}",
            dialect.name()
        );
        // Nothing changed: nothing is published again.
        let n = published.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        assert_eq!(published.lock().unwrap().len(), n, "{}", dialect.name());
        watcher.abort();
    }
}
