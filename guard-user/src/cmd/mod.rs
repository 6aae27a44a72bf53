//! The `pktguard` command line: one file per command, each with its
//! arguments and its output; [`dispatch`] runs the one asked for.

pub mod config;
pub mod detach;
pub mod doctor;
pub mod drops;
pub mod events;
pub mod lab;
pub mod reload;
pub mod run;
pub mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pktguard",
    version,
    about = "Inline XDP/TC packet guard for Kubernetes overlay networks",
    long_about = "Inline XDP/TC packet guard for Kubernetes overlay networks.\n\n\
        `pktguard run` clamps the TCP MSS of SYN and SYN-ACK segments crossing a node to what \
        its narrowest link (the tunnel) can carry, so that no segment ever needs the ICMP \
        \"fragmentation needed\" that load balancers swallow (incident 3: a PMTU black hole)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Guard interfaces in the foreground until SIGINT/SIGTERM, then detach everything.
    Run(run::RunArgs),
    /// Show the counters of the guarded interfaces (while `run` is running).
    Stats(stats::StatsArgs),
    /// Show where and why the kernel drops packets, live: reason (from the kernel's own
    /// BTF), function+offset, protocol and interface, with rate and total per row.
    ///
    /// Counts in the kernel (a program on the skb:kfree_skb tracepoint; no per-packet event
    /// to userspace). Reads the monitor of `pktguard run --drop-monitor` when one runs,
    /// else attaches its own until it exits. Drop reasons exist since Linux 5.17; older
    /// kernels are counted by location only.
    Drops(drops::DropsArgs),
    /// Check the host settings behind each incident: LRO while forwarding, the IPv6 route
    /// cache limit, tunnel and pod MTUs, VXLAN checksum offload with double SNAT, split
    /// iptables backends, and pktguard itself.
    ///
    /// Each check says ok, warn, fail or skipped (with why), shows the evidence it read and the
    /// command that fixes what it found. Exits 1 when a check fails.
    Doctor(doctor::DoctorArgs),
    /// Stream one line per interesting packet (clamped, repaired, malformed GSO) from the
    /// guards of this network namespace: time, interface, hook, action, reason, addresses
    /// and ports, MSS or size. Rate-limited in the kernel per CPU.
    Events(events::EventsArgs),
    /// Remove what `run --persist` left attached and pinned (programs, links, maps, state).
    Detach(detach::DetachArgs),
    /// Ask the running daemon to re-read its configuration file (SIGHUP).
    Reload(reload::ReloadArgs),
    /// Configuration file tools.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Rebuild an incident in network namespaces and show the guard fixing it.
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

/// Runs `command`; its exit code (errors are printed on one line).
pub fn dispatch(command: Command) -> ExitCode {
    let result = match command {
        Command::Run(args) => run::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Events(args) => events::run(args),
        Command::Detach(args) => detach::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Config(cmd) => return config::run(cmd),
        Command::Doctor(args) => return doctor::run(args),
        Command::Drops(args) => drops::run(args),
        Command::Lab(cmd) => lab::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktguard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A JSON string literal (interface names may hold any byte but '/', ':'
/// and white space).
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("eth0"), "\"eth0\"");
        assert_eq!(json_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
