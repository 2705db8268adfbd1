//! A provisioning database that goes away and comes back: the API answers
//! 503 meanwhile and works again afterwards without a restart.
//!
//! It stops and starts the PostgreSQL server with `service`, so it is
//! `#[ignore]`d and run alone by `scripts/test` (root, `scripts/db-servers`).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sbc_controlplane::api::{router, AppState};
use sbc_controlplane::provisioning::Provisioning;
use sbc_dataplane::routing::RouteSnapshot;
use tower::ServiceExt;

mod common;

async fn post(app: &axum::Router, path: &str, body: &str) -> StatusCode {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

fn service(action: &str) {
    let ok = Command::new("service")
        .args(["postgresql", action])
        .status()
        .unwrap()
        .success();
    assert!(ok, "service postgresql {action} failed");
}

#[tokio::test]
#[ignore = "stops the PostgreSQL server; run alone by scripts/test"]
async fn postgres_outage_gives_503_then_recovers() {
    let server = std::env::var("SBC_TEST_POSTGRES_URL").expect("SBC_TEST_POSTGRES_URL");
    let url = common::fresh_database(&server).await;
    let db = Arc::new(Provisioning::open(&url).await.unwrap());
    let state = AppState::new(
        db,
        Arc::new(|_| {}),
        Default::default(),
        "socket",
        Arc::new(RouteSnapshot::default()),
        None,
    );
    let app = router(state);
    let carrier = r#"{"ip":"10.9.9.9","mask":32,"name":"outage","group":1}"#;
    assert_eq!(
        post(&app, "/api/v1/carriers", carrier).await,
        StatusCode::CREATED
    );

    service("stop");
    let t = Instant::now();
    let code = post(&app, "/api/v1/carriers", carrier).await;
    service("start");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "503 took {:?}",
        t.elapsed()
    );

    // Back without a restart of ours: the pool reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match post(&app, "/api/v1/carriers", carrier).await {
            StatusCode::CREATED => break,
            other if Instant::now() > deadline => panic!("still {other} 30 s after the restart"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
