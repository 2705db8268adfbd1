//! Helpers shared by the integration tests (each test crate uses some).
#![allow(dead_code)]

pub mod calls;
pub mod tls;

/// Creates a uniquely named database on `server` and returns its URL.
pub async fn fresh_database(server: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "sbc_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        nanos
    );
    let admin = if server.starts_with("postgres") {
        format!("{server}/postgres")
    } else {
        server.to_string()
    };
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test database server {server}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{server}/{name}")
}

/// Runs `sbcctl --api <api> <args>` without a token in the environment:
/// its exit code, stdout and stderr.
pub fn sbcctl(api: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sbcctl"))
        .arg("--api")
        .arg(api)
        .args(args)
        .env_remove("SBC_API_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `sbc` process, killed when dropped.
pub struct Sbc(pub std::process::Child);

impl Drop for Sbc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sbc run --config <config>` (stderr appended to `log`, no RUST_LOG) and
/// waits up to 10 s until its API at `api` answers `sbcctl ping`; panics
/// with the log when it does not.
pub fn start_sbc(config: &std::path::Path, log: &std::path::Path, api: &str) -> Sbc {
    let sbc = Sbc(std::process::Command::new(env!("CARGO_BIN_EXE_sbc"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sbcctl(api, &["ping"]).0 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sbc did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    sbc
}

/// A port free on 127.0.0.1 for UDP and TCP now (tests run in parallel:
/// one another's connections may hold the TCP side of a free UDP port, so
/// another is tried; still free when the `sbc` binds it is likely, not
/// certain).
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A response to `req` echoing its Via, From, To (tagged), Call-ID, CSeq.
pub fn answer(req: &str, code: u16, extra: &str, body: &str) -> String {
    let mut r = format!("SIP/2.0 {code} OK\r\n");
    for line in req.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or("").trim();
        if ["Via", "From", "Call-ID", "CSeq"].contains(&name) {
            r.push_str(line);
            r.push_str("\r\n");
        } else if name == "To" {
            r.push_str(line);
            if !line.contains("tag=") {
                r.push_str(";tag=gw1");
            }
            r.push_str("\r\n");
        }
    }
    r.push_str(extra);
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

/// The value of header `name` (as written) in `msg`.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.trim() == name))
        .map(|(_, v)| v.trim())
}

/// The real `sbc` running on 127.0.0.1 ([`loopback_sbc`]).
pub struct LoopbackSbc {
    /// The process.
    pub sbc: Sbc,
    /// `sip.private`'s port.
    pub private: u16,
    /// `sip.public`'s port.
    pub public: u16,
    /// The API's base URL.
    pub api: String,
    /// `metrics.listen`'s port.
    pub metrics_port: u16,
    /// Its log (stderr).
    pub log: std::path::PathBuf,
}

/// Starts the real `sbc` on 127.0.0.1 with fresh ports, its SQLite database,
/// config and log in `dir`, relay ports `media` (min, max), `sip_extra`
/// lines in `[sip]` and `extra` sections after the rest; waits until its API
/// answers.
pub fn loopback_sbc(
    dir: &std::path::Path,
    media: (u16, u16),
    sip_extra: &str,
    extra: &str,
) -> LoopbackSbc {
    let (private, public, api_port, metrics_port) =
        (free_port(), free_port(), free_port(), free_port());
    let config = dir.join("sbc.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nprivate = \"127.0.0.1:{private}\"\npublic = \"127.0.0.1:{public}\"\n{sip_extra}\
             [media]\nport_min = {}\nport_max = {}\n\
             [database]\nurl = \"sqlite://{}\"\n\
             [journal]\npath = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{extra}",
            media.0,
            media.1,
            dir.join("sbc.db").display(),
            dir.join("calls.db").display()
        ),
    )
    .unwrap();
    let log = dir.join("sbc.log");
    let api = format!("http://127.0.0.1:{api_port}");
    let sbc = start_sbc(&config, &log, &api);
    LoopbackSbc {
        sbc,
        private,
        public,
        api,
        metrics_port,
        log,
    }
}
