//! `pktguard run`: its flags, turned into interface sections through the
//! same validator as the file's, and the daemon started with them.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use guard_common::{GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT};

use crate::{
    config::{
        ClampSource, GsoGuardAction, IfaceConfig,
        clamp::Encap,
        repair::{Cidr, RepairMode, RepairSpec},
        validate::{self, Door},
    },
    daemon,
    guard::{AttachMode, Direction},
};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("clamp").args(["mtu", "tunnel_dev", "underlay_mtu"])))]
pub struct RunArgs {
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
    config: Option<PathBuf>,
    /// Leave the programs attached and pinned on exit: a restart (or an upgrade) adopts them
    /// without a gap; `pktguard detach` removes them. Before 6.6 TC programs stay as
    /// netlink filters in pktguard's slot, replaced in place; XDP needs XDP links (5.9+).
    #[arg(long)]
    persist: bool,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9436.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Log level of the daemon's log (stderr): error, warn, info, debug, trace (default: the
    /// config file's log_level, else info; RUST_LOG overrides both).
    #[arg(long, value_parser = validate::LOG_LEVELS)]
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
    let limit = |flag: &str, v: u32| {
        validate::gso_limit(v).map_err(|e| anyhow!("{}: {e}", Door::Flags.spell(flag)))
    };
    let gso = match args.gso_guard {
        Some(action) => Some(action.config(
            limit("gso-min-size", args.gso_min_size)?,
            limit("gso-max-segs", args.gso_max_segs)?,
        )),
        None => None,
    };
    let clamp = match (args.mtu, &args.tunnel_dev, args.underlay_mtu, args.encap) {
        (Some(m), ..) => Some(ClampSource::Mtu(m)),
        (None, Some(d), ..) => Some(ClampSource::TunnelDev(d.clone())),
        (None, None, Some(m), Some(e)) => Some(ClampSource::Underlay(m, e)),
        _ => None,
    };
    if !args.ifaces.is_empty() && clamp.is_none() && repair.is_none() && gso.is_none() {
        bail!("{}", validate::nothing_to_do(Door::Flags));
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

pub fn run(args: RunArgs) -> Result<()> {
    let ifaces = ifaces_of(&args)?;
    daemon::run(daemon::Options {
        ifaces,
        config: args.config,
        metrics_addr: args.metrics_addr,
        drop_monitor: args.drop_monitor,
        persist: args.persist,
        log_level: args.log_level,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cmd::{Cli, Command};

    fn run_args(flags: &[&str]) -> RunArgs {
        let argv = ["pktguard", "run", "--iface", "eth0"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => a,
            _ => unreachable!(),
        }
    }

    /// The flags refuse what the file refuses, with the file's words.
    #[test]
    fn flags_and_file_refuse_the_same_gso_limits() {
        for (flag, key) in [
            ("--gso-min-size", "gso_min_size"),
            ("--gso-max-segs", "gso_max_segs"),
        ] {
            for v in ["0", "100000"] {
                let flags = ["--gso-guard", "drop", flag, v];
                let cli = ifaces_of(&run_args(&flags)).unwrap_err().to_string();
                let text = format!("[interface.eth0]\ngso_guard = \"drop\"\n{key} = {v}\n");
                let file = crate::config::parse(&text, "c.toml")
                    .unwrap_err()
                    .join("\n");
                let why = validate::gso_limit(v.parse().unwrap()).unwrap_err();
                assert_eq!(cli, format!("{flag}: {why}"));
                assert!(
                    file.contains(&format!("c.toml:3: interface.eth0.{key}: {why}")),
                    "{file}"
                );
            }
        }
        let ok = ifaces_of(&run_args(&[
            "--gso-guard",
            "flag",
            "--gso-min-size",
            "65535",
        ]))
        .unwrap();
        assert_eq!(ok[0].gso.unwrap().min_size, 65535);
    }

    #[test]
    fn no_feature_is_nothing_to_do() {
        let err = ifaces_of(&run_args(&[])).unwrap_err().to_string();
        assert_eq!(err, validate::nothing_to_do(Door::Flags));
        assert!(err.contains("--mtu"), "{err}");
    }
}
