//! `pktguard`: loads, configures, attaches, reports and detaches the guard.

use std::{process::ExitCode, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use guard_common::{GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoAction, GsoConfig};
use guard_user::{
    clamp::Encap,
    config::{ClampSource, IfaceConfig},
    doctor, drops, lab, lab_csum, lab_gso,
    loader::{AttachMode, Direction},
    repair_cfg::{Cidr, RepairMode, RepairSpec},
    stats, sys,
};

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Guard interfaces in the foreground until SIGINT/SIGTERM, then detach everything.
    Run(RunArgs),
    /// Show the counters of the guarded interfaces (while `run` is running).
    Stats(StatsArgs),
    /// Show where and why the kernel drops packets, live: reason (from the kernel's own
    /// BTF), function+offset, protocol and interface, with rate and total per row.
    ///
    /// Counts in the kernel (a program on the skb:kfree_skb tracepoint; no per-packet event
    /// to userspace). Reads the monitor of `pktguard run --drop-monitor` when one runs,
    /// else attaches its own until it exits. Drop reasons exist since Linux 5.17; older
    /// kernels are counted by location only.
    Drops(DropsArgs),
    /// Check the host settings behind each incident: LRO while forwarding, the IPv6 route
    /// cache limit, tunnel and pod MTUs, VXLAN checksum offload with double SNAT, split
    /// iptables backends, and pktguard itself.
    ///
    /// Each check says ok, warn, fail or skipped (with why), shows the evidence it read and the
    /// command that fixes what it found. Exits 1 when a check fails.
    Doctor(DoctorArgs),
    /// Stream one line per interesting packet (clamped, repaired, malformed GSO) from the
    /// guards of this network namespace: time, interface, hook, action, reason, addresses
    /// and ports, MSS or size. Rate-limited in the kernel per CPU.
    Events {
        /// One JSON document per event, one per line.
        #[arg(long)]
        json: bool,
        /// Only this interface.
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
        /// Stop after N events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Remove what `run --persist` left attached and pinned (programs, links, maps, state).
    Detach(DetachArgs),
    /// Ask the running daemon to re-read its configuration file (SIGHUP).
    Reload {
        /// The daemon's pid (default: from /run/pktguard/daemon.pid).
        #[arg(long)]
        pid: Option<i32>,
    },
    /// Configuration file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Rebuild an incident in network namespaces and show the guard fixing it.
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("clamp").args(["mtu", "tunnel_dev", "underlay_mtu"])))]
struct RunArgs {
    /// Interface to guard (repeat for several). On a node: its uplink and/or pod-facing devices.
    /// Without --iface, the interfaces come from the configuration file.
    #[arg(long = "iface", value_name = "IFACE")]
    ifaces: Vec<String>,
    /// Also run the drop monitor (host-wide), whose figures `pktguard drops` then shows.
    #[arg(long)]
    drop_monitor: bool,
    /// Configuration file (default /etc/pktguard/config.toml when no --iface is given);
    /// --iface sections given here override the file's. SIGHUP re-reads it.
    #[arg(long, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Leave the programs attached and pinned on exit: a restart (or an upgrade) adopts them
    /// without a gap; `pktguard detach` removes them. Before 6.6 TC programs stay as
    /// netlink filters in pktguard's slot, replaced in place; XDP needs XDP links (5.9+).
    #[arg(long)]
    persist: bool,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9436.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log level of the daemon's log (stderr): error, warn, info, debug, trace (default: the
    /// config file's log_level, else info; RUST_LOG overrides both).
    #[arg(long, value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: Option<String>,
    /// Where to attach. auto: native XDP on physical NICs whose driver supports it, TC on
    /// virtual devices (where native XDP copies every frame) and when the driver refuses.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    attach: AttachMode,
    /// Which traffic to clamp: ingress, egress or both. XDP sees ingress only: egress is
    /// always guarded at TC.
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    direction: Direction,
    /// MTU of the narrowest link on the path (the tunnel): IPv4 MSS <= MTU-40, IPv6 MSS <= MTU-60.
    #[arg(long, value_name = "N")]
    mtu: Option<u32>,
    /// Read the MTU from this tunnel device (e.g. flannel.1, tunl0, vxlan.calico).
    #[arg(long, value_name = "DEV")]
    tunnel_dev: Option<String>,
    /// MTU of the underlay (physical) network; the tunnel MTU is this minus --encap's overhead.
    #[arg(long, value_name = "N", requires = "encap")]
    underlay_mtu: Option<u32>,
    /// Encapsulation used with --underlay-mtu.
    #[arg(long, value_enum, requires = "underlay_mtu")]
    encap: Option<Encap>,
    /// Repair the outer UDP checksum of VXLAN frames mangled by a second SNAT (incident 4),
    /// on the receiving node's underlay interface, at ingress. Opt-in: a frame is repaired only
    /// when its inner TCP/UDP checksum proves the payload intact; real corruption is counted
    /// and left alone.
    #[arg(long)]
    csum_repair: bool,
    /// VXLAN UDP port to repair (repeat; default 8472 and 4789).
    #[arg(long = "vxlan-port", value_name = "P", requires = "csum_repair")]
    vxlan_ports: Vec<u16>,
    /// Only repair frames from these underlay peers (repeat; default any), e.g. 10.0.0.0/16.
    #[arg(long = "peer-cidr", value_name = "C", requires = "csum_repair")]
    peer_cidrs: Vec<Cidr>,
    /// How to repair: recompute the checksum, or (IPv4 outer only) set it to 0, "none".
    #[arg(long, value_enum, default_value_t = RepairMode::Recompute, requires = "csum_repair")]
    vxlan_csum: RepairMode,
    /// Find GSO packets whose offload metadata does not fit their headers (incident 1: LRO
    /// super-packets dropped deep in the stack when forwarded) at TC ingress, and drop them
    /// counted under their reason, or only count them (flag). Needs Linux 5.7+.
    #[arg(long, value_enum, value_name = "ACTION")]
    gso_guard: Option<GsoGuardAction>,
    /// Smallest gso_size accepted (TCP_MIN_MSS; gso_size 1 cuts a 64 KB packet into 64 000 pieces).
    #[arg(long, value_name = "N", default_value_t = GSO_MIN_SIZE_DEFAULT, requires = "gso_guard")]
    gso_min_size: u32,
    /// Most segments accepted: a 64 KB aggregate at the minimum gso_size needs 745, a 512 KB
    /// BIG TCP one at MSS 1448 about 360; legitimate GRO traffic never comes near 1024.
    #[arg(long, value_name = "N", default_value_t = GSO_MAX_SEGS_DEFAULT, requires = "gso_guard")]
    gso_max_segs: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GsoGuardAction {
    /// Drop malformed GSO packets (TC_ACT_SHOT) and count them.
    Drop,
    /// Count them only.
    Flag,
}

#[derive(Args)]
struct DropsArgs {
    /// How often to redraw (or print): 1s, 500ms, 2.
    #[arg(long, default_value = "1s", value_parser = drops::parse_interval)]
    interval: Duration,
    /// Show at most this many rows, most frequent first (by rate, then total).
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Stop after K intervals (default: until Ctrl-C).
    #[arg(long, value_name = "K")]
    count: Option<u64>,
    /// One JSON document per interval, one per line.
    #[arg(long)]
    json: bool,
    /// Only drops of packets on this interface (of this network namespace).
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// Only this drop reason, as the kernel names it: NO_SOCKET, TCP_CSUM, NETFILTER_DROP...
    #[arg(long, value_name = "NAME")]
    reason: Option<String>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").args(["iface", "all"]).required(true)))]
struct DetachArgs {
    /// The interface to detach.
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// Every interface of this network namespace.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file: every error with its line and field.
    Check {
        /// The file (default /etc/pktguard/config.toml).
        path: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct DoctorArgs {
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Apply the safe fixes (offload toggles: LRO/hardware GRO off on a forwarding host,
    /// VXLAN tx checksum offload off on a kernel without the NAT fix), say what changed,
    /// and check again. Nothing else is ever changed.
    #[arg(long)]
    fix: bool,
    /// Read a captured tree instead of this host (procfs files under DIR, plus `links`,
    /// `ethtool/IFACE` and `commands/TOOL` files: see the README).
    #[arg(long, value_name = "DIR")]
    root: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct StatsArgs {
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this interface.
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Incident 3: a tunnel MTU smaller than the segments that reach it, ICMP lost.
    Mss {
        /// Bytes to send in each transfer.
        #[arg(long, default_value_t = 4 << 20)]
        bytes: usize,
        /// How long to wait for the transfer without the guard before calling it stalled.
        #[arg(long, default_value_t = 3)]
        stall_secs: u64,
    },
    /// Incident 1: malformed GSO packets (as LRO/virtio hand them over) on a forwarding node.
    Gso,
    /// Incident 4: VXLAN outer checksums broken by a second SNAT (kernels before 5.7).
    Csum {
        /// Bytes to echo over the overlay.
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
        /// How long to wait without the guard before calling the connect failed.
        #[arg(long, default_value_t = 3)]
        stall_secs: u64,
    },
}

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
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Stats(args) => show_stats(args),
        Command::Events { json, iface, count } => {
            guard_user::events::run(json, iface.as_deref(), count)
        }
        Command::Detach(args) => guard_user::daemon::detach(args.iface.as_deref()),
        Command::Reload { pid } => guard_user::daemon::reload(pid),
        Command::Config(ConfigCommand::Check { path }) => {
            let path = path.unwrap_or_else(|| guard_user::config::DEFAULT_PATH.into());
            return match guard_user::config::load(&path) {
                Ok(c) => {
                    println!(
                        "{}: ok: {} interface(s){}",
                        path.display(),
                        c.interfaces.len(),
                        if c.daemon.drop_monitor {
                            ", drop monitor"
                        } else {
                            ""
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("pktguard: error: {e}");
                    }
                    ExitCode::FAILURE
                }
            };
        }
        Command::Doctor(args) => {
            let result = match &args.root {
                Some(root) => {
                    let host = doctor::Fixture { root: root.clone() };
                    doctor::doctor(&host, args.json, args.fix)
                }
                None => {
                    if args.fix
                        && let Err(e) = sys::check_privileges()
                    {
                        eprintln!("pktguard: error: --fix: {e:#}");
                        return ExitCode::from(2);
                    }
                    doctor::doctor(&doctor::Live, args.json, args.fix)
                }
            };
            return match result {
                Ok(false) => ExitCode::SUCCESS,
                Ok(true) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("pktguard: error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Drops(args) => {
            if args.top == 0 || args.count == Some(0) {
                Err(anyhow::anyhow!("--top and --count must be at least 1"))
            } else {
                drops::run(&drops::Options {
                    interval: args.interval,
                    top: args.top,
                    count: args.count,
                    json: args.json,
                    iface: args.iface,
                    reason: args.reason,
                })
            }
        }
        Command::Lab(LabCommand::Mss { bytes, stall_secs }) => sys::check_privileges()
            .and_then(|()| lab::report(bytes, Duration::from_secs(stall_secs))),
        Command::Lab(LabCommand::Gso) => sys::check_privileges().and_then(|()| lab_gso::report()),
        Command::Lab(LabCommand::Csum { bytes, stall_secs }) => sys::check_privileges()
            .and_then(|()| lab_csum::report(bytes, Duration::from_secs(stall_secs))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktguard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The interfaces named on the command line, all with the flags' features.
fn ifaces_of(args: &RunArgs) -> Result<Vec<IfaceConfig>> {
    let repair = if args.csum_repair {
        Some(RepairSpec::new(
            &args.vxlan_ports,
            &args.peer_cidrs,
            args.vxlan_csum,
        )?)
    } else {
        None
    };
    let gso = args.gso_guard.map(|action| GsoConfig {
        min_size: args.gso_min_size,
        max_segs: args.gso_max_segs,
        action: match action {
            GsoGuardAction::Drop => GsoAction::Drop as u8,
            GsoGuardAction::Flag => GsoAction::Flag as u8,
        },
        _pad: [0; 7],
    });
    if gso.is_some() && (args.gso_min_size == 0 || args.gso_max_segs == 0) {
        bail!("--gso-min-size and --gso-max-segs must be at least 1");
    }
    let clamp = match (args.mtu, &args.tunnel_dev, args.underlay_mtu, args.encap) {
        (Some(m), ..) => Some(ClampSource::Mtu(m)),
        (None, Some(d), ..) => Some(ClampSource::TunnelDev(d.clone())),
        (None, None, Some(m), Some(e)) => Some(ClampSource::Underlay(m, e)),
        _ => None,
    };
    if !args.ifaces.is_empty() && clamp.is_none() && repair.is_none() && gso.is_none() {
        bail!(
            "give a clamp (--mtu, --tunnel-dev, or --underlay-mtu with --encap), --csum-repair, --gso-guard and/or --drop-monitor"
        );
    }
    Ok(args
        .ifaces
        .iter()
        .map(|iface| IfaceConfig {
            iface: iface.clone(),
            attach: args.attach,
            direction: args.direction,
            clamp: clamp.clone(),
            repair: repair.clone(),
            gso,
        })
        .collect())
}

fn run(args: RunArgs) -> Result<()> {
    let ifaces = ifaces_of(&args)?;
    guard_user::daemon::run(guard_user::daemon::Options {
        ifaces,
        config: args.config,
        metrics_addr: args.metrics_addr,
        drop_monitor: args.drop_monitor,
        persist: args.persist,
        log_level: args.log_level,
    })
}

fn show_stats(args: StatsArgs) -> Result<()> {
    let all = stats::collect(args.iface.as_deref())?;
    if let Some(iface) = &args.iface
        && all.is_empty()
    {
        bail!("{iface} is not guarded in this network namespace");
    }
    if args.json {
        print!("{}", stats::render_json(&all));
    } else {
        print!("{}", stats::render_table(&all));
    }
    Ok(())
}
