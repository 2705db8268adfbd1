//! `sbcctl` against a real API server on loopback.

mod common;
use common::sbcctl;
use std::process::Command;
use std::sync::Arc;

use sbc_controlplane::api::{router, AppState};
use sbc_controlplane::provisioning::Provisioning;
use sbc_dataplane::routing::RouteSnapshot;

fn serve(token: Option<&str>) -> (String, tempfile::TempDir, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sbc.db").display());
    let addr = rt.block_on(async {
        let db = Arc::new(Provisioning::open(&url).await.unwrap());
        let state = AppState::new(
            db,
            Arc::new(|_| {}),
            Default::default(),
            "socket",
            Arc::new(RouteSnapshot::default()),
            token.map(str::to_string),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        addr
    });
    (format!("http://{addr}"), dir, rt)
}

#[test]
fn kamctl_argument_order_tables_json_and_exit_codes() {
    let (api, _dir, _rt) = serve(None);
    let (code, out, _) = sbcctl(&api, &["add-carrier", "10.0.1.10", "32", "carrier1", "1"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().nth(1).unwrap().split_whitespace().eq([
            "1",
            "10.0.1.10",
            "32",
            "carrier1",
            "1"
        ]),
        "{out}"
    );
    let (code, out, _) = sbcctl(
        &api,
        &["add-gateway", "1", "sip:203.0.113.10:5060", "gw1", "5", "3"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sip:203.0.113.10:5060"));
    let (code, _, _) = sbcctl(&api, &["add-tenant", "acme", "10.0.1.50", "1", "10", "20"]);
    assert_eq!(code, 0);
    let (_, out, _) = sbcctl(&api, &["--json", "list-gateways"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["priority"], 5);
    assert_eq!(v[0]["weight"], 3);
    assert_eq!(v[0]["description"], "gw1");
    assert_eq!(v[0]["profile"], serde_json::Value::Null);
    let (_, out, _) = sbcctl(&api, &["list-tenants"]);
    assert!(out.contains("acme") && out.contains("20"), "{out}");

    // Bad input: the API's message, exit 1, nothing added.
    let (code, _, err) = sbcctl(&api, &["add-carrier", "10.0.1", "32", "x", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("`ip`"), "{err}");
    let (code, _, err) = sbcctl(&api, &["remove-gateway", "99"]);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let (code, _, _) = sbcctl(&api, &["add-gateway", "one", "sip:x", "d", "1", "1"]);
    assert_eq!(code, 2, "usage errors exit 2");
    let (_, out, _) = sbcctl(&api, &["--json", "list-carriers"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (code, out, _) = sbcctl(&api, &["remove-gateway", "1"]);
    assert_eq!((code, out.trim()), (0, "removed"));
    let (code, out, _) = sbcctl(&api, &["stats"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("calls up: 0"), "{out}");
    let (code, out, _) = sbcctl(&api, &["calls"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("call "), "a header and no rows: {out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = sbcctl(&api, &["calls", "--limit", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("`limit`"), "{err}");
    let (_, out, _) = sbcctl(&api, &["--json", "route", "192.0.2.1", "sip:1@x"]);
    assert!(out.contains("\"reject\""), "{out}");

    let (code, _, err) = sbcctl("http://127.0.0.1:1", &["ping"]);
    assert_eq!(code, 3);
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn gateway_profiles_are_given_listed_and_checked() {
    let (api, _dir, _rt) = serve(None);
    let (code, out, err) = sbcctl(
        &api,
        &[
            "add-gateway",
            "1",
            "sip:203.0.113.10",
            "lk a",
            "5",
            "3",
            "--profile",
            "livekit",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (header, row) = (out.lines().next().unwrap(), out.lines().nth(1).unwrap());
    assert!(
        header.split_whitespace().eq([
            "id",
            "group",
            "destination",
            "priority",
            "weight",
            "profile",
            "auth",
            "srtp",
            "description"
        ]),
        "{out}"
    );
    assert!(
        row.split_whitespace().eq([
            "1",
            "1",
            "sip:203.0.113.10",
            "5",
            "3",
            "livekit",
            "-",
            "disable",
            "lk",
            "a"
        ]),
        "{out}"
    );
    let (code, _, _) = sbcctl(
        &api,
        &["add-gateway", "1", "sip:203.0.113.11", "d", "1", "1"],
    );
    assert_eq!(code, 0);
    let (_, out, _) = sbcctl(&api, &["list-gateways"]);
    let profiles: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(profiles, ["livekit", "-"], "no profile: the SBC's default");
    let (_, out, _) = sbcctl(&api, &["--json", "list-gateways"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["profile"], "livekit");
    assert_eq!(v[1]["profile"], serde_json::Value::Null);
    // Credentials: the username is listed, the password never.
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-gateway",
            "2",
            "sip:203.0.113.12",
            "lk-auth",
            "1",
            "1",
            "--auth-username",
            "trunk-user",
            "--auth-password",
            "s3cret\"pw",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = sbcctl(&api, &["list-gateways"]);
    assert!(
        out.contains("trunk-user") && !out.contains("s3cret"),
        "{out}"
    );
    let (_, out, _) = sbcctl(&api, &["--json", "list-gateways"]);
    assert!(!out.contains("s3cret"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[2]["auth_username"], "trunk-user");
    assert_eq!(v[2]["auth_password_set"], true);
    assert_eq!(v[1]["auth_password_set"], false);
    // SRTP needs a TLS destination (and an SBC that relays it): the field is named.
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-gateway",
            "1",
            "sip:203.0.113.13",
            "x",
            "1",
            "1",
            "--media-encryption",
            "require",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("media_encryption") && err.contains("TLS"),
        "{err}"
    );
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-gateway",
            "1",
            "sips:203.0.113.13",
            "x",
            "1",
            "1",
            "--media-encryption",
            "sometimes",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown media encryption"), "{err}");
    // A username without a password is refused, naming the field.
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-gateway",
            "1",
            "sip:203.0.113.13",
            "x",
            "1",
            "1",
            "--auth-username",
            "u",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("auth_password") || err.contains("auth-password"),
        "{err}"
    );

    // The route shows each candidate's profile.
    let (code, _, _) = sbcctl(&api, &["add-carrier", "10.0.1.10", "32", "c1", "1"]);
    assert_eq!(code, 0);
    let (_, out, _) = sbcctl(&api, &["route", "10.0.1.10", "sip:1@x"]);
    assert!(
        out.contains("1. sip:203.0.113.10 (livekit)"),
        "higher priority first: {out}"
    );
    assert!(out.contains("2. sip:203.0.113.11 (transparent)"), "{out}");

    // An unknown profile: the API's message, exit 1, nothing added.
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-gateway",
            "2",
            "sip:203.0.113.12",
            "d",
            "1",
            "1",
            "--profile",
            "kamailio",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "sbcctl: field `profile`: unknown profile \"kamailio\" (transparent, livekit)"
    );
    let (_, out, _) = sbcctl(&api, &["--json", "list-gateways"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        3,
        "the refused ones were not stored"
    );
}

#[test]
fn tenant_number_rules_and_codecs_are_given_listed_and_checked() {
    let (api, _dir, _rt) = serve(None);
    let (code, out, err) = sbcctl(
        &api,
        &[
            "add-tenant",
            "acme",
            "10.0.1.50",
            "1",
            "10",
            "20",
            "--number-format",
            "e164",
            "--country-code",
            "1",
            "--strip-prefix",
            "9",
            "--offer-codecs",
            "pcma,telephone-event",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (header, row) = (out.lines().next().unwrap(), out.lines().nth(1).unwrap());
    assert!(
        header.split_whitespace().eq([
            "tenant_id",
            "source_ip",
            "gateway_group",
            "max_cps",
            "max_concurrent",
            "number_format",
            "country_code",
            "strip_prefix",
            "offer_codecs"
        ]),
        "{out}"
    );
    assert!(
        row.split_whitespace().eq([
            "acme",
            "10.0.1.50",
            "1",
            "10",
            "20",
            "e164",
            "1",
            "9",
            "PCMA,telephone-event"
        ]),
        "{out}"
    );
    let (code, _, _) = sbcctl(&api, &["add-tenant", "beta", "10.0.1.51", "1", "1", "1"]);
    assert_eq!(code, 0);
    let (_, out, _) = sbcctl(&api, &["list-tenants"]);
    let beta = out.lines().nth(2).unwrap();
    assert!(
        beta.split_whitespace()
            .eq(["beta", "10.0.1.51", "1", "1", "1", "-", "-", "-", "-"]),
        "no rules: dashes: {out}"
    );
    let (_, out, _) = sbcctl(&api, &["--json", "list-tenants"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &v[0]["number_format"],
            &v[0]["country_code"],
            &v[0]["strip_prefix"]
        ),
        (
            &serde_json::json!("e164"),
            &serde_json::json!("1"),
            &serde_json::json!("9")
        )
    );
    assert_eq!(v[1]["number_format"], serde_json::Value::Null);

    // The route shows the numbers the gateway would get.
    let (code, _, _) = sbcctl(&api, &["add-carrier", "10.0.1.10", "32", "c1", "1"]);
    assert_eq!(code, 0);
    let (code, _, _) = sbcctl(
        &api,
        &["add-gateway", "1", "sip:203.0.113.10", "gw", "1", "1"],
    );
    assert_eq!(code, 0);
    let (code, out, err) = sbcctl(
        &api,
        &[
            "route",
            "10.0.1.10",
            "sip:acme_9-1-415-555-0123@x",
            "--from",
            "sip:94155550199@10.0.1.10",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("tenant=acme") && out.contains("user=+14155550123"),
        "{out}"
    );
    assert!(out.contains("caller=+14155550199"), "{out}");

    // Refused: an unknown format here, a bad country code by the API.
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-tenant",
            "acme",
            "10.0.1.50",
            "1",
            "10",
            "20",
            "--number-format",
            "E.164",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "sbcctl: field `number_format`: unknown number format \"E.164\" (e164, digits, as_is)"
    );
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-tenant",
            "acme",
            "10.0.1.50",
            "1",
            "10",
            "20",
            "--country-code",
            "44",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "sbcctl: 400: field `country_code`: is used only with number_format \"e164\""
    );
    let (code, _, err) = sbcctl(
        &api,
        &[
            "add-tenant",
            "acme",
            "10.0.1.50",
            "1",
            "10",
            "20",
            "--offer-codecs",
            "PCMU,AMR",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "sbcctl: 400: field `offer_codecs`: unknown codec \"AMR\" \
         (known: PCMU, GSM, PCMA, G722, G729, opus, telephone-event)"
    );
    let (_, out, _) = sbcctl(&api, &["--json", "list-tenants"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["number_format"], "e164", "nothing changed");
}

#[test]
fn token_comes_from_the_environment() {
    let (api, _dir, _rt) = serve(Some("t0k"));
    let (code, _, err) = sbcctl(&api, &["ping"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_sbcctl"))
        .args(["--api", &api, "ping"])
        .env("SBC_API_TOKEN", "t0k")
        .output()
        .unwrap();
    assert!(out.status.success());
}
