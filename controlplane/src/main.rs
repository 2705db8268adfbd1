//! The `sbc` binary.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sbc_controlplane::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "sbc",
    version,
    about = "Session border controller between carriers and Voice AI gateways"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SBC.
    Run {
        /// TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (Command::Run { config } | Command::CheckConfig { config }) = &cli.command;
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sbc: config error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::CheckConfig { .. }) {
        println!("{}: ok", config.display());
        return std::process::ExitCode::SUCCESS;
    }
    cfg.log.install();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sbc: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(sbc_controlplane::run::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sbc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
