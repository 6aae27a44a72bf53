//! The deployment files: the DaemonSet is yamllint-clean (strict), every
//! shipped configuration passes `config check`, and the systemd unit's
//! capability set is enough to run the daemon for real.

use std::path::PathBuf;

use guard_user::lab::netns::{self, Netns};
use pktguard_tests::Running;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

#[test]
fn daemonset_is_yamllint_clean() {
    pktguard_tests::run_ok(
        std::process::Command::new("yamllint")
            .args(["-s", "-f", "parsable"])
            .arg(deploy("daemonset.yaml")),
        "yamllint (cargo xtask setup installs it)",
    );
}

#[test]
fn shipped_configurations_pass_config_check() {
    let file = std::fs::read_to_string(deploy("config.toml")).unwrap();
    guard_user::config::parse(&file, "deploy/config.toml").unwrap();
    // The ConfigMap's copy, as the DaemonSet mounts it.
    let ds = std::fs::read_to_string(deploy("daemonset.yaml")).unwrap();
    let at = ds
        .find("config.toml: |\n")
        .expect("the ConfigMap's config.toml")
        + 15;
    let embedded: String = ds[at..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let cfg = guard_user::config::parse(&embedded, "daemonset.yaml").unwrap();
    assert_eq!(cfg.interfaces.len(), 1);
    assert!(cfg.daemon.persist && cfg.daemon.drop_monitor);
}

/// The unit's CapabilityBoundingSet, applied with setpriv: pktguard runs,
/// clamps, monitors drops and stops clean with nothing more.
#[test]
fn the_units_capabilities_are_enough() {
    let unit = std::fs::read_to_string(deploy("pktguard.service")).unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let bounding = format!("-all,{}", caps.join(","));
    // systemd mounts bpffs and tracefs at boot (sys-fs-bpf.mount,
    // sys-kernel-tracing.mount; the unit orders itself after them): the
    // capability set need not include mounting them.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    for (fs, at) in [("bpf", "/sys/fs/bpf"), ("tracefs", "/sys/kernel/tracing")] {
        let mounted = mounts.lines().any(|l| {
            let mut w = l.split_whitespace().skip(1);
            w.next() == Some(at) && w.next() == Some(fs)
        });
        if !mounted {
            guard_user::host::sys::mount_fs(fs, at).unwrap();
        }
    }
    let ns = Netns::new(&format!("pg-{}-caps", netns::unique_tag())).unwrap();
    ns.ip(&["link", "add", "ca0", "type", "veth", "peer", "name", "ca1"])
        .unwrap();
    ns.ip(&["link", "set", "ca0", "up"]).unwrap();
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.path().display()))
        .args(["--", "setpriv", "--bounding-set", &bounding])
        .arg(pktguard_tests::pktguard_bin())
        .args(["run", "--iface", "ca0", "--mtu", "1440", "--drop-monitor"]);
    let daemon = Running::spawn(cmd).unwrap();
    let json = pktguard_tests::stats_json(&ns);
    assert!(json.contains("\"mss_v4\":1400"), "{json}");
    daemon.stop_ok();
}
