//! The REST API over a real SQLite file: answers, validation, and the
//! snapshot each change hands to the engine.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sbc_controlplane::api::{router, AppState};
use sbc_controlplane::provisioning::Provisioning;
use sbc_dataplane::routing::RouteSnapshot;
use serde_json::Value;
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    published: Arc<Mutex<Vec<Arc<RouteSnapshot>>>>,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sbc.db").display());
    let db = Arc::new(Provisioning::open(&url).await.unwrap());
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = published.clone();
    let state = AppState {
        db,
        publish: Arc::new(move |s| sink.lock().unwrap().push(s)),
        engine: Default::default(),
        io: Default::default(),
        backend: "socket",
        started: Instant::now(),
    };
    Api {
        app: router(state),
        published,
        _dir: dir,
    }
}

impl Api {
    async fn call(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn last(&self) -> Arc<RouteSnapshot> {
        self.published.lock().unwrap().last().cloned().unwrap()
    }
}

#[tokio::test]
async fn carriers_round_trip_and_reach_the_engine() {
    let api = api().await;
    let (code, body) = api
        .call(
            "POST",
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.10","mask":32,"name":"c1","group":1}"#,
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["id"], 1);
    assert_eq!(body["ip"], "10.0.1.10");
    let snap = api.last();
    assert_eq!(snap.carriers.len(), 1);
    assert_eq!(snap.carriers[0].mask, 32);
    let (code, list) = api.call("GET", "/api/v1/carriers", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let (code, _) = api.call("DELETE", "/api/v1/carriers/1", "").await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert!(api.last().carriers.is_empty());
    assert!(api.last().version > snap.version);
    let (code, body) = api.call("DELETE", "/api/v1/carriers/1", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("no carrier 1"));
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let api = api().await;
    let cases = [
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1","mask":32,"name":"x","group":1}"#,
            "ip",
        ),
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.1","mask":33,"name":"x","group":1}"#,
            "mask",
        ),
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.1","mask":32,"name":"x","group":1,"colour":2}"#,
            "colour",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"http://x","group":1}"#,
            "destination",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","group":0}"#,
            "group",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","weight":-1}"#,
            "weight",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a_b","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1}"#,
            "tenant_id",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":0,"max_concurrent":1}"#,
            "max_cps",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1}"#,
            "max_concurrent",
        ),
    ];
    for (path, body, field) in cases {
        let (code, answer) = api.call("POST", path, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(&format!("`{field}`")), "{body}: {msg}");
    }
    let (code, answer) = api.call("POST", "/api/v1/gateways", "{not json").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().unwrap().contains("malformed JSON"));
    for path in ["/api/v1/carriers", "/api/v1/gateways", "/api/v1/tenants"] {
        let (_, list) = api.call("GET", path, "").await;
        assert_eq!(list.as_array().unwrap().len(), 0, "{path} changed");
    }
    assert!(api.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn tenant_post_adds_then_updates() {
    let api = api().await;
    let t = r#"{"tenant_id":"acme","source_ip":"10.0.1.50","gateway_group":1,"max_cps":10,"max_concurrent":10}"#;
    assert_eq!(
        api.call("POST", "/api/v1/tenants", t).await.0,
        StatusCode::CREATED
    );
    let t2 = t.replace("\"max_cps\":10", "\"max_cps\":20");
    let (code, body) = api.call("POST", "/api/v1/tenants", &t2).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["max_cps"], 20);
    assert_eq!(api.last().tenants[0].max_cps, 20);
    assert_eq!(
        api.call("DELETE", "/api/v1/tenants/acme", "").await.0,
        StatusCode::NO_CONTENT
    );
    assert!(api.last().tenants.is_empty());
}

#[tokio::test]
async fn gateways_get_ids_and_status_reports() {
    let api = api().await;
    let g = r#"{"destination":"sip:203.0.113.10:5060","group":1,"priority":1,"weight":1,"description":"gw1"}"#;
    let (code, body) = api.call("POST", "/api/v1/gateways", g).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["id"], 1);
    assert_eq!(body["description"], "gw1");
    assert_eq!(api.last().gateways[0].addr.port(), 5060);
    let (code, status) = api.call("GET", "/api/v1/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["backend"], "socket");
    assert_eq!(status["calls_up"], 0);
    assert_eq!(
        api.call("GET", "/api/v1/nothing", "").await.0,
        StatusCode::NOT_FOUND
    );
}
