//! The provisioning database below the API: a database made by an earlier
//! version migrates, and a stored value the routing snapshot cannot use is
//! refused. Each test runs on a fresh SQLite file and, when
//! `SBC_TEST_MYSQL_URL` / `SBC_TEST_POSTGRES_URL` name a server (as
//! `scripts/db-servers` sets them up), on a fresh database of each server.

use std::path::Path;

use sbc_controlplane::provisioning::{DbError, Dialect, GatewayRow, Provisioning};
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
    }
}

#[tokio::test]
async fn a_database_of_the_first_version_migrates_and_keeps_its_gateways() {
    let (urls, _dir) = databases().await;
    for url in urls {
        let (dialect, _) = Dialect::of(&url).unwrap();
        eprintln!("backend: {}", dialect.name());
        // The schema as 0001 left it, applied the way `Provisioning::open`
        // applies migrations, so sqlx records it.
        let first = tempfile::tempdir().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(dialect.name());
        let name = "0001_provisioning.sql";
        std::fs::copy(dir.join(name), first.path().join(name)).unwrap();
        let pool = raw(&url).await;
        Migrator::new(first.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
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
