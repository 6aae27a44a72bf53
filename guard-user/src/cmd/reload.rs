//! `pktguard reload`: SIGHUP to the daemon that runs from a config file.

use anyhow::{Context as _, Result};
use clap::Args;

use crate::daemon::PID_FILE;

#[derive(Args)]
pub struct ReloadArgs {
    /// The daemon's pid (default: from /run/pktguard/daemon.pid).
    #[arg(long)]
    pid: Option<i32>,
}

/// SIGHUP to the daemon of the pid file (or `--pid`).
pub fn run(args: ReloadArgs) -> Result<()> {
    let pid = match args.pid {
        Some(p) => p,
        None => std::fs::read_to_string(PID_FILE)
            .with_context(|| {
                format!("reading {PID_FILE}: is `pktguard run --config ...` running?")
            })?
            .trim()
            .parse()
            .with_context(|| format!("{PID_FILE} holds no pid"))?,
    };
    // SAFETY: kill(2) with a pid and a signal.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling pid {pid}"));
    }
    println!("pktguard: asked pid {pid} to reload its configuration (its log says how it went)");
    Ok(())
}
