//! `pktguard`: loads, configures, attaches, reports and detaches the guard.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use guard_common::{
    CsumOutcome, GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoAction, GsoConfig, GsoOutcome,
};
use guard_user::{
    clamp::{Clamp, Encap},
    doctor, drops, lab, lab_csum, lab_gso,
    loader::{AttachMode, Direction, Features, Guard},
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
    /// Rebuild an incident in network namespaces and show the guard fixing it.
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("clamp").args(["mtu", "tunnel_dev", "underlay_mtu"])))]
struct RunArgs {
    /// Interface to guard (repeat for several). On a node: its uplink and/or pod-facing devices.
    #[arg(
        long = "iface",
        required_unless_present = "drop_monitor",
        value_name = "IFACE"
    )]
    ifaces: Vec<String>,
    /// Also run the drop monitor (host-wide), whose figures `pktguard drops` then shows.
    #[arg(long)]
    drop_monitor: bool,
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
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Stats(args) => show_stats(args),
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

fn features_of(args: &RunArgs) -> Result<Features> {
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
    let clamp = if args.mtu.is_some() || args.tunnel_dev.is_some() || args.underlay_mtu.is_some() {
        Some(clamp_of(args)?)
    } else if repair.is_none() && gso.is_none() && !args.drop_monitor {
        bail!(
            "give a clamp (--mtu, --tunnel-dev, or --underlay-mtu with --encap), --csum-repair, --gso-guard and/or --drop-monitor"
        );
    } else {
        None
    };
    Ok(Features { clamp, repair, gso })
}

fn clamp_of(args: &RunArgs) -> Result<Clamp> {
    if let Some(mtu) = args.mtu {
        return Clamp::from_mtu(mtu);
    }
    if let Some(dev) = &args.tunnel_dev {
        sys::ifindex(dev).with_context(|| format!("--tunnel-dev {dev}"))?;
        let mtu = sys::mtu(dev)?;
        return Clamp::from_mtu(mtu).with_context(|| format!("MTU of tunnel device {dev}"));
    }
    match (args.underlay_mtu, args.encap) {
        (Some(mtu), Some(encap)) => Clamp::from_underlay(mtu, encap),
        _ => bail!("give --mtu, --tunnel-dev, or --underlay-mtu with --encap"),
    }
}

fn run(args: RunArgs) -> Result<()> {
    sys::check_privileges()?;
    sys::check_kernel()?;
    let features = features_of(&args)?;
    if features.repair.is_some() && args.direction == Direction::Egress {
        bail!("--csum-repair works on received frames: use --direction ingress or both");
    }
    for iface in &args.ifaces {
        sys::ifindex(iface)?;
    }
    if args
        .ifaces
        .iter()
        .enumerate()
        .any(|(i, a)| args.ifaces[..i].contains(a))
    {
        bail!("an interface is named twice in --iface");
    }
    if args.direction == Direction::Egress
        && matches!(args.attach, AttachMode::Xdp | AttachMode::XdpGeneric)
    {
        bail!("XDP sees ingress only: use --attach tc (or auto) for --direction egress");
    }
    if let Some(clamp) = &features.clamp {
        println!("pktguard: {clamp}");
    }
    if let Some(repair) = &features.repair {
        println!("pktguard: {repair}");
    }
    if let Some(g) = &features.gso {
        println!(
            "pktguard: GSO guard: {} malformed GSO packets (gso_size >= {}, <= {} segments)",
            if g.action == GsoAction::Drop as u8 {
                "drop"
            } else {
                "flag"
            },
            g.min_size,
            g.max_segs
        );
    }
    if !args.ifaces.is_empty()
        && features.clamp.is_none()
        && features.repair.is_none()
        && features.gso.is_none()
    {
        bail!("--iface needs something to do there: a clamp, --csum-repair or --gso-guard");
    }
    let monitor = if args.drop_monitor {
        let m = drops::DropMonitor::start(true).context("starting the drop monitor")?;
        println!("pktguard: drop monitor attached to skb:kfree_skb; `pktguard drops` shows it");
        for n in &m.notes {
            println!("pktguard: drop monitor: {n}");
        }
        Some(m)
    } else {
        None
    };
    let mut guards = Vec::new();
    for iface in &args.ifaces {
        // An error here drops the guards already started: nothing stays attached.
        let guard = Guard::start(iface, args.attach, args.direction, &features)
            .with_context(|| format!("guarding {iface}"))?;
        let hooks: Vec<_> = guard.attached.iter().map(|a| a.name()).collect();
        println!("pktguard: {iface}: attached {}", hooks.join(" + "));
        for note in &guard.notes {
            println!("pktguard: {iface}: {note}");
        }
        guards.push(guard);
    }
    println!("pktguard: running; `pktguard stats` shows the counters; SIGINT/SIGTERM detaches");
    wait_for_signal()?;
    println!("pktguard: detaching");
    for guard in &guards {
        if let Ok(hooks) = guard.counters() {
            let clamped: u64 = hooks
                .iter()
                .map(|h| h.get(guard_common::MssCounter::Clamped))
                .sum();
            let syn: u64 = hooks
                .iter()
                .map(|h| h.get(guard_common::MssCounter::Syn))
                .sum();
            println!(
                "pktguard: {}: {syn} SYNs seen, {clamped} clamped",
                guard.iface
            );
        }
        if let Ok(g) = guard.gso_counters()
            && guard
                .attached
                .contains(&guard_user::loader::Attachment::TcGso)
        {
            let bad: u64 = GsoOutcome::ALL
                .iter()
                .filter(|o| o.is_malformed())
                .map(|o| g[*o as usize])
                .sum();
            println!(
                "pktguard: {}: {} GSO packets, {bad} malformed",
                guard.iface,
                g.iter().sum::<u64>() - g[GsoOutcome::NotGso as usize]
            );
        }
        if let Ok(hooks) = guard.csum_counters()
            && !hooks.is_empty()
        {
            let seen: u64 = hooks.iter().map(|h| h.vxlan_seen()).sum();
            let fixed: u64 = hooks
                .iter()
                .map(|h| h.get(CsumOutcome::OuterRepaired))
                .sum();
            let bad: u64 = hooks.iter().map(|h| h.get(CsumOutcome::InnerBad)).sum();
            println!(
                "pktguard: {}: {seen} VXLAN frames, {fixed} outer checksums repaired, {bad} corrupt left alone",
                guard.iface
            );
        }
    }
    drop(guards);
    if let Some(m) = monitor {
        let (snap, _) = m.snapshot()?;
        let mut names = drops::IfaceNames::new()?;
        let rows = drops::rows(
            &snap,
            &Default::default(),
            Duration::from_secs(1),
            &Default::default(),
            5,
            |k| drops::name_key(&m, &mut names, k),
        );
        println!(
            "pktguard: drop monitor: {} drops counted; most frequent:",
            snap.values().sum::<u64>()
        );
        for r in rows {
            println!(
                "pktguard:   {:>10}  {:<24} {:<6} {:<16} {}",
                r.total, r.reason, r.protocol, r.iface, r.location
            );
        }
    }
    Ok(())
}

fn wait_for_signal() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
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
