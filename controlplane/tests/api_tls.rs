//! The REST API over HTTPS (`[api] tls_cert`, `tls_key`) with the real
//! `sbc` and `sbcctl --ca`: the certificate is verified, plain HTTP and
//! unverified clients get nothing, SIGHUP serves a new certificate, and a
//! broken key file stops the start naming `api.tls_key`.

mod common;
use common::tls::{ca, leaf_of};
use common::{free_port, Sbc};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `sbcctl --api <api> [--ca <ca>] <args>`: exit code, stdout, stderr.
fn sbcctl(api: &str, ca: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sbcctl"));
    cmd.arg("--api").arg(api);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    let out = cmd
        .args(args)
        .env_remove("SBC_API_TOKEN")
        .env_remove("SBC_API_CA")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Config for an SBC on loopback whose API serves `cert`/`key`.
fn config(dir: &Path, api_port: u16, cert: &Path, key: &Path) -> PathBuf {
    write(
        dir,
        "sbc.toml",
        &format!(
            "[sip]\nprivate = \"127.0.0.1:{}\"\npublic = \"127.0.0.1:{}\"\n\
             [media]\nport_min = 42100\nport_max = 42200\n\
             [database]\nurl = \"sqlite://{}\"\n\
             [journal]\nenabled = false\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port(),
            dir.join("sbc.db").display(),
            cert.display(),
            key.display(),
            free_port()
        ),
    )
}

fn spawn(config: &Path, log: &Path) -> Sbc {
    Sbc(std::process::Command::new(env!("CARGO_BIN_EXE_sbc"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap())
}

#[test]
fn the_api_over_https_verified_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca1, ca1_key) = ca();
    let (cert, key) = leaf_of(&ca1, &ca1_key);
    let ca1_path = write(d, "ca1.pem", &ca1.pem());
    let (cert_path, key_path) = (write(d, "api.pem", &cert), write(d, "api.key", &key));
    let api_port = free_port();
    let log = d.join("sbc.log");
    let sbc = spawn(&config(d, api_port, &cert_path, &key_path), &log);
    let https = format!("https://127.0.0.1:{api_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sbcctl(&https, Some(&ca1_path), &["ping"]).0 != 0 {
        assert!(
            Instant::now() < deadline,
            "no HTTPS API: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, err) = sbcctl(
        &https,
        Some(&ca1_path),
        &["add-gateway", "1", "sip:127.0.0.1:5999", "gw", "1", "1"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Not trusted without the CA; plain HTTP gets no API.
    let (code, _, err) = sbcctl(&https, None, &["ping"]);
    assert_eq!(code, 3, "{err}");
    let (code, _, _) = sbcctl(&format!("http://127.0.0.1:{api_port}"), None, &["ping"]);
    assert_ne!(code, 0);
    // A new certificate from another CA, read on SIGHUP.
    let (ca2, ca2_key) = ca();
    let (cert2, key2) = leaf_of(&ca2, &ca2_key);
    let ca2_path = write(d, "ca2.pem", &ca2.pem());
    write(d, "api.pem", &cert2);
    write(d, "api.key", &key2);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &sbc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while sbcctl(&https, Some(&ca2_path), &["ping"]).0 != 0 {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sbcctl(&https, Some(&ca1_path), &["ping"]).0,
        3,
        "the old one is gone"
    );
    // A --ca file with no certificate is a usage error.
    let empty = write(d, "empty.pem", "");
    let (code, _, err) = sbcctl(&https, Some(&empty), &["ping"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca"), "{err}");
}

#[test]
fn a_broken_api_key_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca1, ca1_key) = ca();
    let (cert, _) = leaf_of(&ca1, &ca1_key);
    let cert_path = write(d, "api.pem", &cert);
    let key_path = write(d, "api.key", "not a key");
    let log = d.join("sbc.log");
    let mut sbc = spawn(&config(d, free_port(), &cert_path, &key_path), &log);
    let status = sbc.0.wait().unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("api.tls_key"), "{text}");
}
