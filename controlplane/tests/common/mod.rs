//! Helpers shared by the integration tests.

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
