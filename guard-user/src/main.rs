//! `pktguard`: parses the command line and runs the command (`cmd/`).

use std::process::ExitCode;

use clap::Parser as _;
use guard_user::cmd::{Cli, dispatch};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every record reaches the logger; log::max_level decides (run sets it
    // from --log-level or the config file). RUST_LOG, when set, decides alone.
    let rust_log = std::env::var("RUST_LOG").ok();
    env_logger::Builder::new()
        .parse_filters(rust_log.as_deref().unwrap_or("trace"))
        .format_target(false)
        .init();
    if rust_log.is_none() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    dispatch(cli.command)
}
