//! Rebuilds when a migration changes: `sqlx::migrate!` embeds
//! `migrations/<dialect>/` at compile time, and stable Rust cannot tell cargo
//! that a proc macro read those files.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
