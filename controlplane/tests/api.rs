//! The REST API over real databases: answers, validation, and the snapshot
//! each change hands to the engine. Every test runs on a fresh SQLite file and,
//! when `SBC_TEST_MYSQL_URL` / `SBC_TEST_POSTGRES_URL` name a server (as
//! `scripts/db-servers` sets them up), on a fresh database of each server.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sbc_controlplane::api::model::{
    self, Action, CallList, CallStats, CarrierIn, CarrierRow, DatabaseState, Direction, GatewayIn,
    GatewayRow, RouteDecision, RouteQuery, Status, TenantIn, TenantRow,
};
use sbc_controlplane::api::{router, AppState};
use sbc_controlplane::provisioning::Provisioning;
use sbc_dataplane::numbers::{NumberFormat, NumberRules};
use sbc_dataplane::routing::{Profile, RouteSnapshot};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

struct Api {
    app: axum::Router,
    state: AppState,
    token: Option<String>,
    published: Arc<Mutex<Vec<Arc<RouteSnapshot>>>>,
    _dir: tempfile::TempDir,
}

/// One fresh database per configured backend.
async fn apis() -> Vec<Api> {
    apis_with(Profile::default()).await
}

/// One fresh database per configured backend, with `[routing]
/// default_profile = default_profile`.
async fn apis_with(default_profile: Profile) -> Vec<Api> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sbc.db").display());
    let mut all = vec![api_at(&url, None, dir, default_profile).await];
    for var in ["SBC_TEST_MYSQL_URL", "SBC_TEST_POSTGRES_URL"] {
        if let Some(server) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            let url = common::fresh_database(&server).await;
            let dir = tempfile::tempdir().unwrap();
            all.push(api_at(&url, None, dir, default_profile).await);
        }
    }
    all
}

async fn api_with(token: Option<&str>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sbc.db").display());
    api_at(&url, token, dir, Profile::default()).await
}

async fn api_at(
    url: &str,
    token: Option<&str>,
    dir: tempfile::TempDir,
    default_profile: Profile,
) -> Api {
    let db = Arc::new(
        Provisioning::open(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .with_default_profile(default_profile),
    );
    eprintln!("backend: {}", db.dialect().name());
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = published.clone();
    let state = AppState::new(
        db,
        Arc::new(move |s| sink.lock().unwrap().push(s)),
        Default::default(),
        "socket",
        Arc::new(RouteSnapshot::default()),
        token.map(str::to_string),
    );
    Api {
        app: router(state.clone()),
        published,
        state,
        token: token.map(str::to_string),
        _dir: dir,
    }
}

impl Api {
    async fn call(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A request built from a model type, its answer read as another.
    async fn typed<T: DeserializeOwned>(
        &self,
        method: &str,
        uri: &str,
        body: Option<&impl serde::Serialize>,
    ) -> (StatusCode, T) {
        let body = body.map(|b| serde_json::to_string(b).unwrap());
        let (code, v) = self.call(method, uri, body.as_deref().unwrap_or("")).await;
        let typed = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{method} {uri} answered {code} {v}: {e}"));
        (code, typed)
    }

    fn last(&self) -> Arc<RouteSnapshot> {
        self.published.lock().unwrap().last().cloned().unwrap()
    }
}

#[tokio::test]
async fn carriers_round_trip_and_reach_the_engine() {
    for api in apis().await {
        carriers_round_trip_and_reach_the_engine_on(api).await;
    }
}

async fn carriers_round_trip_and_reach_the_engine_on(api: Api) {
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
    for api in apis().await {
        bad_input_names_the_field_and_changes_nothing_on(api).await;
    }
}

async fn bad_input_names_the_field_and_changes_nothing_on(api: Api) {
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
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","profile":"kamailio"}"#,
            "profile",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","auth_username":"u"}"#,
            "auth_password",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","auth_username":"u","auth_password":"a\r\nX: y"}"#,
            "auth_password",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sips:gw.example.com;transport=udp"}"#,
            "destination",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","headers":{"X-Tenant-ID":"a"}}"#,
            "headers.X-Tenant-ID",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","headers":{"Route":"<sip:x>"}}"#,
            "headers.Route",
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
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"E.164"}"#,
            "number_format",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"e164","country_code":"+44"}"#,
            "country_code",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"strip_prefix":"9"}"#,
            "strip_prefix",
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
    for api in apis().await {
        tenant_post_adds_then_updates_on(api).await;
    }
}

async fn tenant_post_adds_then_updates_on(api: Api) {
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
async fn tenant_number_rules_are_stored_and_applied() {
    for api in apis().await {
        tenant_number_rules_are_stored_and_applied_on(api).await;
    }
}

/// A tenant's number rules: answered and listed as stored, in the snapshot
/// as rules, applied by `POST /route` to the number and the caller of an
/// inbound call only, and cleared by an update that leaves them out.
async fn tenant_number_rules_are_stored_and_applied_on(api: Api) {
    provision(&api).await;
    let acme = r#"{"tenant_id":"acme","source_ip":"10.0.1.50","max_cps":5,"max_concurrent":5,"#;
    let (code, t) = api
        .call(
            "POST",
            "/api/v1/tenants",
            &format!(r#"{acme}"number_format":" e164 ","country_code":"1"}}"#),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{t}");
    let rules = |t: &Value| {
        (
            t["number_format"].clone(),
            t["country_code"].clone(),
            t["strip_prefix"].clone(),
        )
    };
    assert_eq!(rules(&t), (json!("e164"), json!("1"), Value::Null));
    let (_, list) = api.call("GET", "/api/v1/tenants", "").await;
    let listed: Vec<_> = list.as_array().unwrap().iter().map(rules).collect();
    assert_eq!(
        listed,
        [
            (json!("e164"), json!("1"), Value::Null),
            (Value::Null, Value::Null, Value::Null)
        ],
        "acme, then mahindra without rules"
    );
    let snap = api.last();
    assert_eq!(
        snap.tenant("acme").unwrap().numbers,
        Some(NumberRules::new(NumberFormat::E164, Some("1"), None).unwrap())
    );
    assert_eq!(snap.tenant("mahindra").unwrap().numbers, None);

    let route = |body: &'static str| {
        let api = &api;
        async move {
            let (code, d) = api.call("POST", "/api/v1/route", body).await;
            assert_eq!(code, StatusCode::OK, "{body}: {d}");
            (
                d["tenant_id"].clone(),
                d["user"].clone(),
                d["caller_user"].clone(),
            )
        }
    };
    // Inbound: the tenant prefix off, then the rules, on both numbers.
    assert_eq!(
        route(r#"{"source_ip":"10.0.1.10","to":"sip:acme_0014155550123@x","from":"sip:+1-415-555-0199@10.0.1.10"}"#).await,
        (json!("acme"), json!("+14155550123"), json!("+14155550199"))
    );
    assert_eq!(
        route(r#"{"source_ip":"10.0.1.10","to":"sip:415.555.0123;npdi@x","from":"sip:alice@x","headers":{"X-Tenant-ID":"acme"}}"#).await,
        (json!("acme"), json!("+14155550123"), json!("alice"))
    );
    // Without a from, or for a tenant without rules: no caller_user.
    assert_eq!(
        route(r#"{"source_ip":"10.0.1.10","to":"sip:acme_4155550123@x"}"#).await,
        (json!("acme"), json!("+14155550123"), Value::Null)
    );
    assert_eq!(
        route(r#"{"source_ip":"10.0.1.10","to":"sip:mahindra_0014155550123@x","from":"sip:4155550199@x"}"#).await,
        (json!("mahindra"), json!("0014155550123"), Value::Null)
    );
    // Outbound: numbers go to the carrier as they came.
    assert_eq!(
        route(r#"{"source_ip":"203.0.113.10","to":"sip:acme_4155550123@x","from":"sip:+14155550199@x"}"#).await,
        (json!("acme"), json!("4155550123"), Value::Null)
    );

    // as_is with an outside-line digit.
    let (code, t) = api
        .call(
            "POST",
            "/api/v1/tenants",
            &format!(r#"{acme}"number_format":"as_is","strip_prefix":"9"}}"#),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{t}");
    assert_eq!(rules(&t), (json!("as_is"), Value::Null, json!("9")));
    assert_eq!(
        route(r#"{"source_ip":"10.0.1.10","to":"sip:acme_9-1-415-555-0123@x","from":"sip:9(415)555-0199@x"}"#).await,
        (json!("acme"), json!("14155550123"), json!("4155550199"))
    );
    // An update that leaves the rules out clears them.
    let (code, t) = api
        .call(
            "POST",
            "/api/v1/tenants",
            &format!(r#"{acme}"number_format":null}}"#),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{t}");
    assert_eq!(rules(&t), (Value::Null, Value::Null, Value::Null));
    let (_, list) = api.call("GET", "/api/v1/tenants", "").await;
    assert_eq!(rules(&list[0]), (Value::Null, Value::Null, Value::Null));
    assert_eq!(api.last().tenant("acme").unwrap().numbers, None);
    assert_eq!(
        route(
            r#"{"source_ip":"10.0.1.10","to":"sip:acme_0014155550123@x","from":"sip:4155550199@x"}"#
        )
        .await,
        (json!("acme"), json!("0014155550123"), Value::Null)
    );
}

#[tokio::test]
async fn gateways_get_ids_and_status_reports() {
    for api in apis().await {
        gateways_get_ids_and_status_reports_on(api).await;
    }
}

async fn gateways_get_ids_and_status_reports_on(api: Api) {
    let g = r#"{"destination":"sip:203.0.113.10:5060","group":1,"priority":1,"weight":1,"description":"gw1"}"#;
    let (code, body) = api.call("POST", "/api/v1/gateways", g).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["id"], 1);
    assert_eq!(body["description"], "gw1");
    assert_eq!(body["transport"], "udp");
    assert_eq!(api.last().gateways[0].addr().unwrap().port(), 5060);
    // A sips: destination is TLS, on 5061 unless written, in the answer
    // and in what the engine routes with.
    let tls = r#"{"destination":"sips:203.0.113.11","group":1,"priority":1,"weight":1}"#;
    let (code, body) = api.call("POST", "/api/v1/gateways", tls).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["transport"], "tls");
    let snap = api.last();
    let g = snap.gateways.iter().find(|g| g.id == 2).unwrap();
    assert_eq!(g.transport, sbc_dataplane::Transport::Tls);
    assert_eq!(g.addr().unwrap().port(), 5061);
    let (_, list) = api.call("GET", "/api/v1/gateways", "").await;
    assert_eq!(list[1]["transport"], "tls", "{list}");
    assert_eq!(list[1]["media_encryption"], "disable", "{list}");
    // On an SBC that relays SRTP, a TLS gateway may require it.
    let srtp = Api {
        app: router(AppState {
            srtp: true,
            ..api.state.clone()
        }),
        published: api.published.clone(),
        state: api.state.clone(),
        token: None,
        _dir: tempfile::tempdir().unwrap(),
    };
    let req = r#"{"destination":"sip:203.0.113.12;transport=tls","media_encryption":"require"}"#;
    let (code, body) = srtp.call("POST", "/api/v1/gateways", req).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["media_encryption"], "require");
    let snap = srtp.last();
    let g = snap.gateways.iter().find(|g| g.id == 3).unwrap();
    assert_eq!(
        g.media_encryption,
        sbc_dataplane::routing::MediaEncryption::Require
    );
    let (_, list) = srtp.call("GET", "/api/v1/gateways", "").await;
    assert_eq!(list[2]["media_encryption"], "require", "{list}");
    srtp.call("DELETE", "/api/v1/gateways/3", "").await;
    // Counters the data plane sets reach the status document.
    let io = &api.state.stats.io;
    io.ports[sbc_dataplane::Side::Public].rx_missed.set(7);
    io.dropped(sbc_dataplane::net::Reason::BadChecksum).set(3);
    io.reassembled.set(2);
    api.state.stats.media.sockets_idle.set(4);
    io.tx_fragmented.set(5);
    let (code, status) = api.call("GET", "/api/v1/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["backend"], "socket");
    assert_eq!(status["calls_up"], 0);
    assert_eq!(status["media"]["sockets_idle"], 4);
    assert_eq!(status["io"]["tx_fragmented"], 5);
    // The socket backend shows only its own counters: no DPDK ports, no L2/L3.
    assert_eq!(status["io"]["ports"], serde_json::json!([]), "{status}");
    assert!(
        status["io"].get("dropped_bad_checksum").is_none(),
        "{status}"
    );
    assert!(status["io"].get("polls").is_none(), "{status}");
    // The DPDK backend's status has them.
    let dpdk = router(AppState::new(
        api.state.db.clone(),
        Arc::new(|_| {}),
        api.state.stats.clone(),
        "dpdk",
        Arc::new(RouteSnapshot::default()),
        None,
    ));
    let req = Request::builder()
        .uri("/api/v1/status")
        .body(Body::empty())
        .unwrap();
    let resp = dpdk.oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let status: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status["backend"], "dpdk");
    assert_eq!(status["io"]["ports"][1]["side"], "public");
    assert_eq!(status["io"]["ports"][1]["rx_missed"], 7);
    assert_eq!(status["io"]["dropped_bad_checksum"], 3);
    assert_eq!(status["io"]["reassembled"], 2);
    assert_eq!(
        api.call("GET", "/api/v1/nothing", "").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn gateway_profiles_are_stored_as_given_and_resolved_for_routing() {
    for api in apis_with(Profile::Livekit).await {
        gateway_profiles_are_stored_as_given_and_resolved_for_routing_on(api).await;
    }
}

/// With `[routing] default_profile = "livekit"`: the API answers the stored
/// value (null when none was given), the snapshot and the route decision the
/// resolved one.
async fn gateway_profiles_are_stored_as_given_and_resolved_for_routing_on(api: Api) {
    for (body, stored) in [
        (
            r#"{"destination":"sip:203.0.113.10","priority":3}"#,
            Value::Null,
        ),
        (
            r#"{"destination":"sip:203.0.113.11","priority":2,"profile":" transparent "}"#,
            json!("transparent"),
        ),
        (
            r#"{"destination":"sip:203.0.113.12","priority":1,"profile":null}"#,
            Value::Null,
        ),
    ] {
        let (code, g) = api.call("POST", "/api/v1/gateways", body).await;
        assert_eq!(code, StatusCode::CREATED, "{body}: {g}");
        assert_eq!(g["profile"], stored, "{body}");
    }
    let (_, list) = api.call("GET", "/api/v1/gateways", "").await;
    let listed: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["profile"])
        .collect();
    assert_eq!(listed, [&Value::Null, &json!("transparent"), &Value::Null]);
    let profiles: Vec<Profile> = api.last().gateways.iter().map(|g| g.profile).collect();
    assert_eq!(
        profiles,
        [Profile::Livekit, Profile::Transparent, Profile::Livekit]
    );

    let (_, c) = api
        .call(
            "POST",
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.10","name":"c1"}"#,
        )
        .await;
    assert_eq!(c["id"], 1, "{c}");
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.10","to":"sip:1@x"}"#,
        )
        .await;
    assert_eq!(
        d["candidates"],
        json!(["sip:203.0.113.10", "sip:203.0.113.11", "sip:203.0.113.12"])
    );
    assert_eq!(d["profiles"], json!(["livekit", "transparent", "livekit"]));
    // Outbound: every target carries the calling gateway's profile.
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"203.0.113.11","to":"sip:1@x"}"#,
        )
        .await;
    assert_eq!(d["direction"], "outbound");
    assert_eq!(d["profiles"], json!(["transparent"]));
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"192.0.2.1","to":"sip:1@x"}"#,
        )
        .await;
    assert_eq!(
        (&d["action"], &d["profiles"]),
        (&json!("reject"), &json!([]))
    );
}

async fn provision(api: &Api) {
    for (path, body) in [
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.0","mask":24,"name":"net","group":1}"#,
        ),
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.10","mask":32,"name":"c1","group":1}"#,
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10:5060","group":1,"priority":2}"#,
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.11:5060","group":1,"priority":1}"#,
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.12:5060","group":3}"#,
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"mahindra","source_ip":"10.0.1.50","gateway_group":3,"max_cps":5,"max_concurrent":5}"#,
        ),
    ] {
        let (code, b) = api.call("POST", path, body).await;
        assert_eq!(code, StatusCode::CREATED, "{path} {body}: {b}");
    }
}

#[tokio::test]
async fn route_answers_the_engine_decision() {
    for api in apis().await {
        route_answers_the_engine_decision_on(api).await;
    }
}

async fn route_answers_the_engine_decision_on(api: Api) {
    provision(&api).await;
    let (code, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.20","to":"sip:mahindra_919876543210@10.0.0.100"}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(d["action"], "route");
    assert_eq!(d["tenant_id"], "mahindra");
    assert_eq!(d["user"], "919876543210");
    assert_eq!(
        d["candidates"],
        serde_json::json!(["sip:203.0.113.12:5060"])
    );
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.10","to":"sip:123@10.0.0.100"}"#,
        )
        .await;
    assert_eq!(d["gateway_group"], 1);
    assert_eq!(
        d["candidates"],
        serde_json::json!([
            "sip:203.0.113.10:5060",
            "sip:203.0.113.11:5060",
            "sip:203.0.113.12:5060"
        ])
    );
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.10","to":"sip:123@x","headers":{"X-Tenant-ID":"mahindra"}}"#,
        )
        .await;
    assert_eq!(d["tenant_id"], "mahindra");
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"192.0.2.1","to":"sip:1@x"}"#,
        )
        .await;
    assert_eq!(d["action"], "reject");
    assert_eq!(d["code"], 403);
    let (_, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"203.0.113.10","to":"sip:1@x"}"#,
        )
        .await;
    assert_eq!(d["direction"], "outbound");
    assert_eq!(d["candidates"], serde_json::json!(["sip:10.0.1.10:5060"]));
    let (code, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.10","to":"tel:123"}"#,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(d["error"].as_str().unwrap().contains("`to`"));
}

#[tokio::test]
async fn call_stats_count_engine_events_by_tenant() {
    use sbc_dataplane::call::{CallEvent, CallResult};
    let api = api_with(None).await;
    for (t, r) in [
        (Some("acme"), CallResult::Answered),
        (Some("acme"), CallResult::LimitExceeded),
        (None, CallResult::Rejected),
    ] {
        api.state
            .stats
            .engine
            .call_events
            .push(CallEvent {
                tenant: t.map(str::to_string),
                caller_side: None,
                result: r,
            })
            .unwrap();
    }
    let (code, s) = api.call("GET", "/api/v1/stats/calls", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s["by_tenant"]["acme"]["answered"], 1);
    assert_eq!(s["by_tenant"]["acme"]["limit_exceeded"], 1);
    assert_eq!(s["by_tenant"]["-"]["rejected"], 1);
    assert_eq!(s["totals"]["answered"], 1);
}

#[tokio::test]
async fn finished_calls_are_listed_newest_first_with_their_media() {
    use sbc_dataplane::call::{CallRecord, CallResult, MediaLine, RtpSummary};
    use sbc_dataplane::Side;
    let api = api_with(None).await;
    let figures = |packets| RtpSummary {
        packets,
        bytes: packets * 172,
        lost: 2,
        jitter_ms: 1.234,
        dtmf_events: 3,
    };
    for call in 1..=3u64 {
        api.state.stats.engine.record(CallRecord {
            call,
            tenant: Some("acme".into()),
            result: CallResult::Answered,
            caller_side: Side::Private,
            caller_call_id: format!("c{call}"),
            callee_call_id: format!("g{call}"),
            setup_ms: Some(12),
            duration_ms: 4000,
            started_ms: 1000 * call,
            ended_ms: 1000 * call + 4012,
            caller_addr: "10.0.1.10:5060".parse().unwrap(),
            callee_addr: "203.0.113.10:5060".parse().unwrap(),
            final_code: 200,
            ended_by: Some(sbc_dataplane::call::EndedBy::Caller),
            attempts: 1,
            media: vec![MediaLine {
                from_caller: figures(200),
                from_callee: figures(199),
            }],
        });
    }
    let (code, d) = api.call("GET", "/api/v1/calls?limit=2", "").await;
    assert_eq!(code, StatusCode::OK);
    let calls = d["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["call"], 3);
    assert_eq!(calls[1]["call"], 2);
    assert_eq!(calls[0]["direction"], "inbound");
    assert_eq!(calls[0]["result"], "answered");
    assert_eq!(calls[0]["caller_call_id"], "c3");
    assert_eq!(calls[0]["media"][0]["from_caller"]["packets"], 200);
    assert_eq!(calls[0]["media"][0]["from_callee"]["bytes"], 199 * 172);
    assert_eq!(calls[0]["media"][0]["from_callee"]["lost"], 2);
    assert_eq!(calls[0]["media"][0]["from_callee"]["jitter_ms"], 1.23);
    assert_eq!(calls[0]["media"][0]["from_caller"]["dtmf_events"], 3);
    for bad in ["limit=0", "limit=1001", "limit=x", "page=2"] {
        let (code, d) = api.call("GET", &format!("/api/v1/calls?{bad}"), "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
        let field = bad.split('=').next().unwrap();
        assert!(d["error"].as_str().unwrap().contains(field), "{d}");
    }
}

#[tokio::test]
async fn bearer_token_guards_every_route() {
    let mut api = api_with(Some("s3cret")).await;
    api.token = None;
    for (method, path) in sbc_controlplane::api::ROUTES {
        let path = path.replace("{id}", "1");
        let (code, _) = api.call(&method.to_uppercase(), &path, "{}").await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    for token in ["wrong", "s3cre", "s3cret2", ""] {
        api.token = Some(token.into());
        for (method, path) in sbc_controlplane::api::ROUTES {
            let path = path.replace("{id}", "1");
            let (code, _) = api.call(&method.to_uppercase(), &path, "{}").await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{token:?}: {method} {path}");
        }
    }
    api.token = Some("s3cret".into());
    assert_eq!(
        api.call("GET", "/api/v1/status", "").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    for api in apis().await {
        openapi_document_matches_the_routes_on(api).await;
    }
}

async fn openapi_document_matches_the_routes_on(api: Api) {
    let (code, doc) = api.call("GET", "/api/v1/openapi.json", "").await;
    assert_eq!(code, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = sbc_controlplane::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    // And every listed route answers something other than the fallback 404.
    for (method, path) in sbc_controlplane::api::ROUTES {
        let (code, body) = api
            .call(&method.to_uppercase(), &path.replace("{id}", "999"), "{}")
            .await;
        assert!(
            code != StatusCode::NOT_FOUND || body["error"] != "no such endpoint",
            "{method} {path} is not routed"
        );
    }
}

#[tokio::test]
async fn database_gone_answers_503_and_routing_keeps_its_snapshot() {
    let api = api_with(None).await;
    provision(&api).await;
    let before = api.published.lock().unwrap().len();
    api.state.db.close().await;
    let (code, body) = api
        .call(
            "POST",
            "/api/v1/carriers",
            r#"{"ip":"10.0.2.1","mask":32,"name":"x","group":1}"#,
        )
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().unwrap().contains("database"),
        "{body}"
    );
    assert_eq!(
        api.call("GET", "/api/v1/gateways", "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        api.published.lock().unwrap().len(),
        before,
        "no new snapshot"
    );
    let (code, status) = api.call("GET", "/api/v1/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["database"], "unavailable");
    // The route answer still comes from the last snapshot.
    let (code, d) = api
        .call(
            "POST",
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.10","to":"sip:1@x"}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(d["action"], "route");
}

#[tokio::test]
async fn the_model_types_build_the_requests_and_read_the_answers() {
    for api in apis().await {
        the_model_types_build_the_requests_and_read_the_answers_on(api).await;
    }
}

async fn the_model_types_build_the_requests_and_read_the_answers_on(api: Api) {
    let carrier = CarrierIn {
        ip: "10.0.1.0".parse().unwrap(),
        mask: 24,
        name: "net".into(),
        group: 2,
    };
    let (code, c): (_, CarrierRow) = api.typed("POST", "/api/v1/carriers", Some(&carrier)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        c,
        CarrierRow {
            id: c.id,
            ..carrier.into_row()
        }
    );
    let gateway = GatewayIn {
        destination: "sip:203.0.113.10:5070".into(),
        group: 2,
        priority: -3,
        weight: 7,
        description: "gw".into(),
        profile: Some(Profile::Livekit),
        auth_username: Some("trunk".into()),
        auth_password: Some("pw".into()),
        auth_realm: Some("lk.example".into()),
        headers: [("X-LK-Project".to_string(), "p_1".to_string())].into(),
        media_encryption: Default::default(),
    };
    let (code, g): (_, GatewayRow) = api.typed("POST", "/api/v1/gateways", Some(&gateway)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(g.profile.as_deref(), Some("livekit"));
    // The password is written, never answered.
    assert!(g.auth_password_set);
    assert_eq!(
        g,
        GatewayRow {
            id: g.id,
            auth_password: None,
            ..gateway.into_row()
        }
    );
    let snap = api.last();
    let cred = snap.gateways[0]
        .auth
        .as_ref()
        .expect("credentials in the snapshot");
    assert_eq!(
        (
            cred.username.as_str(),
            cred.password.as_str(),
            cred.realm.as_deref()
        ),
        ("trunk", "pw", Some("lk.example"))
    );
    assert_eq!(&*snap.gateways[0].headers, b"X-LK-Project: p_1\r\n");
    let (_, list): (_, Vec<GatewayRow>) = api.typed("GET", "/api/v1/gateways", None::<&()>).await;
    assert_eq!(list, std::slice::from_ref(&g));
    let tenant = TenantIn {
        tenant_id: "acme".into(),
        source_ip: "10.0.1.50".parse().unwrap(),
        gateway_group: 2,
        max_cps: 3,
        max_concurrent: 4,
        number_format: Some(NumberFormat::E164),
        country_code: Some("44".into()),
        strip_prefix: Some("9".into()),
        offer_codecs: Some("pcma, telephone-event".into()),
    };
    let (code, t): (_, TenantRow) = api.typed("POST", "/api/v1/tenants", Some(&tenant)).await;
    assert_eq!(t.offer_codecs.as_deref(), Some("PCMA,telephone-event"));
    assert_eq!((code, t), (StatusCode::CREATED, tenant.clone().into_row()));
    let (_, list): (_, Vec<TenantRow>) = api.typed("GET", "/api/v1/tenants", None::<&()>).await;
    assert_eq!(list, [tenant.into_row()]);

    let query = RouteQuery {
        source_ip: "10.0.1.9".parse().unwrap(),
        to: "sip:acme_907700900123@10.0.0.100".into(),
        headers: Default::default(),
        from: Some("sip:020-7946-0958@10.0.1.9".into()),
    };
    let (code, d): (_, RouteDecision) = api.typed("POST", "/api/v1/route", Some(&query)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!((d.action, d.direction), (Action::Route, Direction::Inbound));
    assert_eq!(d.tenant_id.as_deref(), Some("acme"));
    assert_eq!(d.user.as_deref(), Some("+447700900123"));
    assert_eq!(d.caller_user.as_deref(), Some("+442079460958"));
    assert_eq!(d.candidates, ["sip:203.0.113.10:5070"]);
    assert_eq!(d.profiles, ["livekit"]);
    let unknown = RouteQuery {
        source_ip: "192.0.2.1".parse().unwrap(),
        ..query
    };
    let (_, d): (_, RouteDecision) = api.typed("POST", "/api/v1/route", Some(&unknown)).await;
    assert_eq!(
        (d.action, d.code, d.user, d.caller_user),
        (Action::Reject, Some(403), None, None)
    );

    let (_, status): (_, Status) = api.typed("GET", "/api/v1/status", None::<&()>).await;
    assert_eq!(status.provisioned.tenants, 1);
    assert_eq!(status.database, DatabaseState::Ok);
    assert_eq!(status.database_kind, api.state.db.dialect().name());
    assert!(
        status.io.ports.is_empty(),
        "no DPDK ports on the socket backend"
    );
    let (_, stats): (_, CallStats) = api.typed("GET", "/api/v1/stats/calls", None::<&()>).await;
    assert!(stats.by_tenant.is_empty());
    let (_, calls): (_, CallList) = api.typed("GET", "/api/v1/calls", None::<&()>).await;
    assert!(calls.calls.is_empty());
}

#[tokio::test]
async fn errors_name_nested_fields_and_keep_their_wording() {
    let api = api_with(None).await;
    for (path, body, want) in [
        (
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.1","to":"sip:1@x","headers":{"X-Tenant-ID":5}}"#,
            "field `headers.X-Tenant-ID`: must be a string",
        ),
        (
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.1","to":"sip:1@x","headers":"acme"}"#,
            "field `headers`: must be an object",
        ),
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.1","mask":33,"name":"x"}"#,
            "field `mask`: must be between 0 and 32",
        ),
        (
            "/api/v1/carriers",
            r#"{"ip":"10.0.1.1","name":"x","colour":2}"#,
            "field `colour`: unknown field",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"http://x"}"#,
            "field `destination`: not a sip: or sips: URI",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","priority":"high"}"#,
            "field `priority`: must be an integer",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","profile":"LiveKit"}"#,
            "field `profile`: unknown profile \"LiveKit\" (transparent, livekit)",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","profile":1}"#,
            "field `profile`: must be a string",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sips:203.0.113.10","media_encryption":"on"}"#,
            "field `media_encryption`: unknown media encryption \"on\" (disable, allow, require)",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sip:203.0.113.10","media_encryption":"require"}"#,
            "field `media_encryption`: allow and require need a TLS destination (sips: or ;transport=tls): SDES keys travel in the SDP",
        ),
        (
            "/api/v1/gateways",
            r#"{"destination":"sips:203.0.113.10","media_encryption":"allow"}"#,
            "field `media_encryption`: this SBC relays no SRTP (built without the srtp feature): only disable",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1}"#,
            "field `max_concurrent`: is required",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"E164"}"#,
            "field `number_format`: unknown number format \"E164\" (e164, digits, as_is)",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":1}"#,
            "field `number_format`: must be a string",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"e164","country_code":"1234"}"#,
            "field `country_code`: must be 1 to 3 digits not starting with 0 (an E.164 country code, e.g. \"1\" or \"44\")",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"e164","country_code":44}"#,
            "field `country_code`: must be a string",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"digits","country_code":"44"}"#,
            "field `country_code`: is used only with number_format \"e164\"",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"strip_prefix":"9"}"#,
            "field `strip_prefix`: needs a number_format (\"as_is\" to strip the prefix only)",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"number_format":"as_is","strip_prefix":"9a"}"#,
            "field `strip_prefix`: must be 1 to 16 digits or '*', optionally after a leading '+'",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"offer_codecs":"PCMU,G.729"}"#,
            "field `offer_codecs`: unknown codec \"G.729\" (known: PCMU, GSM, PCMA, G722, G729, opus, telephone-event)",
        ),
        (
            "/api/v1/tenants",
            r#"{"tenant_id":"a","source_ip":"10.0.1.50","max_cps":1,"max_concurrent":1,"offer_codecs":"telephone-event"}"#,
            "field `offer_codecs`: no audio codec in the list",
        ),
        (
            "/api/v1/route",
            r#"{"source_ip":"10.0.1.1","to":"sip:1@x","from":"tel:+14155550123"}"#,
            "field `from`: must be a sip: URI",
        ),
        ("/api/v1/tenants", "[]", "body must be a JSON object"),
    ] {
        let (code, answer) = api.call("POST", path, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer, json!({ "error": want }), "{body}");
    }
    // Any content type is read as JSON, as before.
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/carriers")
        .body(Body::from(r#"{"ip":"10.0.1.1","name":"x"}"#))
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn openapi_schemas_list_the_model_fields_and_defaults() {
    let api = api_with(None).await;
    let (_, doc) = api.call("GET", "/api/v1/openapi.json", "").await;
    let schemas = &doc["components"]["schemas"];
    let properties = |name: &str| -> Vec<String> {
        let s = &schemas[name];
        let mut all: Vec<String> = Vec::new();
        for part in s["allOf"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![s.clone()])
        {
            let part = match part["$ref"].as_str() {
                Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
                None => part,
            };
            all.extend(part["properties"].as_object().unwrap().keys().cloned());
        }
        all.sort();
        all
    };
    let keys = |v: Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    // Requests: only the required fields given, so the rest shows its default.
    let requests = [
        (
            "CarrierIn",
            serde_json::to_value(
                model::from_json::<CarrierIn>(br#"{"ip":"10.0.0.1","name":"n"}"#).unwrap(),
            ),
        ),
        (
            "GatewayIn",
            serde_json::to_value(
                model::from_json::<GatewayIn>(br#"{"destination":"sip:10.0.0.1"}"#).unwrap(),
            ),
        ),
        (
            "Tenant",
            serde_json::to_value(
                model::from_json::<TenantIn>(
                    br#"{"tenant_id":"t","source_ip":"10.0.0.1","max_cps":1,"max_concurrent":1}"#,
                )
                .unwrap(),
            ),
        ),
    ];
    for (name, value) in requests {
        let value = value.unwrap();
        assert_eq!(keys(value.clone()), properties(name), "{name}");
        let schema = &schemas[name];
        for (field, spec) in schema["properties"].as_object().unwrap() {
            if let Some(default) = spec.get("default") {
                assert_eq!(&value[field], default, "{name}.{field} default");
            }
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for field in value.as_object().unwrap().keys() {
            let has_default = schema["properties"][field].get("default").is_some();
            assert!(
                required.contains(&field.as_str()) != has_default,
                "{name}.{field}: required or defaulted"
            );
        }
    }
    let query = RouteQuery {
        source_ip: "10.0.0.1".parse().unwrap(),
        to: "sip:1@x".into(),
        headers: [("X-Tenant-ID".to_string(), "t".to_string())].into(),
        from: Some("sip:2@y".into()),
    };
    assert_eq!(
        keys(serde_json::to_value(&query).unwrap()),
        properties("RouteQuery")
    );
    let row = CarrierRow {
        id: 1,
        ip: "10.0.0.1".into(),
        mask: 32,
        name: "n".into(),
        group: 1,
    };
    assert_eq!(
        keys(serde_json::to_value(row).unwrap()),
        properties("Carrier")
    );
    let row = GatewayRow {
        id: 1,
        destination: "sip:10.0.0.1".into(),
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
        dns: Some(Default::default()),
    };
    // The password is write-only: never in an answer.
    let mut want = properties("Gateway");
    want.retain(|k| k != "auth_password");
    assert_eq!(keys(serde_json::to_value(row).unwrap()), want);
    let encryptions: Vec<Value> = sbc_dataplane::routing::MediaEncryption::ALL
        .iter()
        .map(|m| json!(m.name()))
        .collect();
    assert_eq!(
        schemas["GatewayIn"]["properties"]["media_encryption"]["enum"],
        json!(encryptions)
    );
    let names: Vec<Value> = Profile::ALL.iter().map(|p| json!(p.name())).collect();
    let profile = &schemas["GatewayIn"]["properties"]["profile"];
    let mut with_null = names.clone();
    with_null.push(Value::Null);
    assert_eq!(profile["enum"], json!(with_null), "null: the default");
    assert_eq!(
        schemas["RouteDecision"]["properties"]["profiles"]["items"]["enum"],
        json!(names)
    );
    let mut formats: Vec<Value> = NumberFormat::ALL.iter().map(|f| json!(f.name())).collect();
    formats.push(Value::Null);
    assert_eq!(
        schemas["Tenant"]["properties"]["number_format"]["enum"],
        json!(formats),
        "null: numbers as they come"
    );
    let routed = RouteDecision {
        action: Action::Route,
        direction: Direction::Inbound,
        tenant_id: None,
        gateway_group: Some(1),
        user: Some("1".into()),
        caller_user: Some("2".into()),
        candidates: vec![],
        profiles: vec![],
        code: None,
        reason: None,
    };
    assert_eq!(
        keys(serde_json::to_value(routed).unwrap()),
        properties("RouteDecision")
    );
    let record = model::CallRecord {
        call: 1,
        tenant: None,
        result: "answered".into(),
        direction: Direction::Outbound,
        caller_call_id: "a".into(),
        callee_call_id: "b".into(),
        setup_ms: None,
        duration_ms: 0,
        media: vec![],
    };
    let record = serde_json::to_value(record).unwrap();
    assert_eq!(keys(record), properties("CallRecord"));
    let enums = &schemas["CallRecord"]["properties"]["direction"]["enum"];
    assert_eq!(enums, &json!([Direction::Inbound, Direction::Outbound]));
    assert_eq!(
        &schemas["RouteDecision"]["properties"]["action"]["enum"],
        &json!([Action::Route, Action::Reject])
    );
}

/// Each integer's `minimum`/`maximum` in the OpenAPI document against the
/// request type's validation: both ends pass, one past either end fails
/// naming the field and the same range.
fn check_ranges<T: DeserializeOwned + model::Validate + std::fmt::Debug>(
    schema: &Value,
    base: Value,
) {
    for (field, spec) in schema["properties"].as_object().unwrap() {
        if spec["type"] != "integer" {
            continue;
        }
        let (min, max) = (spec["minimum"].as_i64(), spec["maximum"].as_i64());
        let (Some(min), Some(max)) = (min, max) else {
            panic!("{field}: no minimum or maximum in the document");
        };
        let body = |v: i64| {
            let mut b = base.clone();
            b[field] = json!(v);
            serde_json::to_vec(&b).unwrap()
        };
        for ok in [min, max] {
            model::from_json::<T>(&body(ok)).unwrap_or_else(|e| panic!("{field} = {ok}: {e}"));
        }
        for bad in [min - 1, max + 1] {
            let e = model::from_json::<T>(&body(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("field `{field}`: must be between {min} and {max}"),
                "{field} = {bad}"
            );
        }
    }
}

#[test]
fn openapi_ranges_are_the_validation_ranges() {
    let doc: Value = serde_json::from_str(sbc_controlplane::api::OPENAPI).unwrap();
    let schemas = &doc["components"]["schemas"];
    check_ranges::<CarrierIn>(
        &schemas["CarrierIn"],
        json!({"ip": "10.0.0.1", "name": "n"}),
    );
    check_ranges::<GatewayIn>(
        &schemas["GatewayIn"],
        json!({"destination": "sip:10.0.0.1"}),
    );
    check_ranges::<TenantIn>(
        &schemas["Tenant"],
        json!({"tenant_id": "t", "source_ip": "10.0.0.1", "max_cps": 1, "max_concurrent": 1}),
    );
}

#[tokio::test]
async fn finished_calls_become_cdrs_and_window_statistics() {
    use sbc_controlplane::cdr::CdrWriter;
    use sbc_dataplane::call::{CallRecord, CallResult, EndedBy};
    use sbc_dataplane::Side;
    let mut api = api_with(None).await;
    api.state = api
        .state
        .clone()
        .with_cdrs(CdrWriter::start(api.state.db.clone(), 30, "node-a"));
    api.app = router(api.state.clone());
    let epoch = sbc_controlplane::cdr::now_ms() as u64 - 60_000;
    api.state.stats.engine.epoch_unix_ms.set(epoch);
    for (call, code) in [(1u64, 200u16), (2, 200), (3, 486)] {
        api.state.stats.engine.record(CallRecord {
            call,
            tenant: Some("acme".into()),
            result: if code == 200 {
                CallResult::Answered
            } else {
                CallResult::Failed
            },
            caller_side: Side::Private,
            caller_call_id: format!("c{call}"),
            callee_call_id: format!("g{call}"),
            setup_ms: (code == 200).then_some(300),
            duration_ms: if code == 200 { 20_000 } else { 0 },
            started_ms: 1_000 * call,
            ended_ms: 1_000 * call + 20_300,
            caller_addr: "10.0.1.10:5060".parse().unwrap(),
            callee_addr: "203.0.113.10:5060".parse().unwrap(),
            final_code: code,
            ended_by: Some(if code == 200 {
                EndedBy::Caller
            } else {
                EndedBy::Callee
            }),
            attempts: 1,
            media: Vec::new(),
        });
    }
    // Drained by the first request; written within a second.
    let (code, _) = api.call("GET", "/api/v1/stats/calls", "").await;
    assert_eq!(code, StatusCode::OK);
    let mut cdrs = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        cdrs = api
            .call("GET", "/api/v1/cdrs?tenant=acme&since=1h", "")
            .await
            .1;
        if cdrs["cdrs"].as_array().is_some_and(|a| a.len() == 3) {
            break;
        }
    }
    let rows = cdrs["cdrs"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{cdrs}");
    assert_eq!(rows[0]["caller_call_id"], "c3", "newest first");
    assert_eq!(rows[0]["final_code"], 486);
    assert_eq!(rows[0]["reason"], "Busy Here");
    assert_eq!(rows[0]["ended_by"], "callee");
    assert_eq!(rows[2]["start_ms"], epoch + 1_000);
    assert_eq!(rows[2]["answer_ms"], epoch + 1_300);
    assert_eq!(rows[0]["node_id"], "node-a", "each row names its node");
    // Another node's row in the same database: in the cluster's figures
    // only.
    let other = sbc_controlplane::cdr::CdrRow {
        id: 0,
        node_id: "node-b".into(),
        ..serde_json::from_value(rows[0].clone()).unwrap()
    };
    api.state.db.insert_cdrs(&[other]).await.unwrap();
    let (_, c) = api
        .call("GET", "/api/v1/stats/calls?since=15m&cluster=true", "")
        .await;
    assert_eq!(c["window"]["scope"], "cluster", "{c}");
    assert_eq!(c["window"]["by_tenant"]["acme"]["attempts"], 4, "{c}");
    assert_eq!(c["window"]["by_node"]["node-b"]["attempts"], 1, "{c}");
    let (code, s) = api.call("GET", "/api/v1/stats/calls?since=15m", "").await;
    assert_eq!(code, StatusCode::OK);
    let acme = &s["window"]["by_tenant"]["acme"];
    assert_eq!(
        (acme["attempts"].as_u64(), acme["answered"].as_u64()),
        (Some(3), Some(2)),
        "{s}"
    );
    assert_eq!(acme["acd_s"], 20.0);
    assert_eq!(acme["top_failures"][0]["code"], 486);
    assert_eq!(
        s["window"]["by_gateway"]["203.0.113.10:5060"]["attempts"],
        3
    );
    for (uri, want) in [
        (
            "/api/v1/stats/calls?since=soon",
            "field `since`: \"soon\" is not a window",
        ),
        (
            "/api/v1/stats/calls?cluster=yes",
            "field `cluster`: must be true or false",
        ),
        (
            "/api/v1/cdrs?limit=0",
            "field `limit`: must be a number from 1 to 1000",
        ),
        (
            "/api/v1/cdrs?tenantid=a",
            "field `tenantid`: unknown query parameter",
        ),
    ] {
        let (code, body) = api.call("GET", uri, "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body["error"].as_str().unwrap().starts_with(want),
            "{uri}: {body}"
        );
    }
}

/// Valid bodies of every route that takes one, mutated by
/// [`no_request_gets_a_server_error`].
fn body_seeds() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/api/v1/carriers",
            json!({"ip": "10.0.2.1", "mask": 32, "name": "x", "group": 1}),
        ),
        (
            "POST",
            "/api/v1/gateways",
            json!({"destination": "sip:203.0.113.20:5060", "group": 1, "priority": 1,
                   "weight": 1, "description": "g", "profile": "livekit",
                   "auth_username": "u", "auth_password": "p", "auth_realm": "r",
                   "headers": {"X-A": "1"}, "media_encryption": "disable"}),
        ),
        (
            "POST",
            "/api/v1/tenants",
            json!({"tenant_id": "t1", "source_ip": "10.0.1.60", "gateway_group": 1,
                   "max_cps": 5, "max_concurrent": 5, "number_format": "e164",
                   "country_code": "1"}),
        ),
        (
            "POST",
            "/api/v1/route",
            json!({"source_ip": "10.0.1.10", "to": "sip:1@x", "x_tenant_id": "t1"}),
        ),
        ("POST", "/api/v1/dispatcher/ping", json!({"group": 1})),
        (
            "POST",
            "/api/v1/dispatcher/state",
            json!({"id": 1, "state": "inactive"}),
        ),
    ]
}

/// Any JSON value: scalars of every kind (huge and negative numbers, long
/// and odd strings), arrays and objects, nested.
fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[0-9.]{0,20}".prop_map(Value::from),
        "(sip|sips|tel|http):[a-z0-9@.:;=]{0,30}".prop_map(Value::from),
        Just(Value::from("a".repeat(70_000))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every route with any body (a valid one with a field removed, replaced by
/// any JSON value or joined by an unknown one; any JSON; any bytes) and odd
/// path and query parameters: a 2xx or a 4xx, never a 5xx, and a 4xx names
/// what is wrong in `error`.
#[test]
fn no_request_gets_a_server_error() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut api = rt.block_on(api_with(None));
    // An engine that takes health requests (dispatcher ping and state).
    api.state = api.state.clone().with_health(Arc::new(|_| true), 10, 500);
    api.app = router(api.state.clone());
    rt.block_on(provision(&api));
    let seeds = body_seeds();
    let n = seeds.len();
    #[derive(Debug, Clone)]
    enum Body {
        Remove(usize),
        Replace(usize, Value),
        Extra(String, Value),
        Json(Value),
        Bytes(Vec<u8>),
    }
    let body = prop_oneof![
        any::<usize>().prop_map(Body::Remove),
        (any::<usize>(), any_json()).prop_map(|(i, v)| Body::Replace(i, v)),
        (".{0,12}", any_json()).prop_map(|(k, v)| Body::Extra(k, v)),
        any_json().prop_map(Body::Json),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ];
    let param = "[a-zA-Z0-9%._~-]{0,24}";
    let get_paths = [
        "/api/v1/calls?limit=",
        "/api/v1/cdrs?limit=",
        "/api/v1/cdrs?tenant=",
        "/api/v1/stats/calls?tenant=",
        "/api/v1/capture?call_id=",
        "/api/v1/carriers/",
        "/api/v1/gateways/",
        "/api/v1/tenants/",
        "/api/v1/bans/",
    ];
    let config = ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(route in 0..n, body in body, g in 0..get_paths.len(), p in param)| {
        let (method, path, seed) = &seeds[route];
        let text = match body {
            Body::Remove(_) | Body::Replace(_, _) if seed.as_object().unwrap().is_empty() => {
                seed.to_string()
            }
            Body::Remove(i) => {
                let mut v = seed.clone();
                let o = v.as_object_mut().unwrap();
                let k = o.keys().nth(i % o.len()).unwrap().clone();
                o.remove(&k);
                v.to_string()
            }
            Body::Replace(i, new) => {
                let mut v = seed.clone();
                let o = v.as_object_mut().unwrap();
                let k = o.keys().nth(i % o.len()).unwrap().clone();
                o.insert(k, new);
                v.to_string()
            }
            Body::Extra(k, new) => {
                let mut v = seed.clone();
                v.as_object_mut().unwrap().insert(k, new);
                v.to_string()
            }
            Body::Json(v) => v.to_string(),
            Body::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        };
        let (code, answer) = rt.block_on(api.call(method, path, &text));
        prop_assert!(!code.is_server_error(), "{method} {path} {text}: {code} {answer}");
        if code.is_client_error() {
            prop_assert!(answer["error"].is_string(), "{method} {path} {text}: {code} {answer}");
        }
        // Path and query parameters.
        let uri = format!("{}{p}", get_paths[g]);
        let method = if uri.contains('?') { "GET" } else { "DELETE" };
        let (code, answer) = rt.block_on(api.call(method, &uri, ""));
        prop_assert!(!code.is_server_error(), "{method} {uri}: {code} {answer}");
    });
}
