//! `pktguard doctor`: the host settings behind each incident, checked.
//! Every check reads through a [`Host`] (the live machine or a fixture
//! tree), says ok / warn / fail / skipped, shows the evidence it read and
//! the exact command that fixes what it found. `--fix` applies the safe
//! fixes (offload toggles) and says what it changed.

pub mod host;

use std::collections::BTreeMap;

use anyhow::Result;

use crate::{rtnl::Link, stats::json_str};
pub use host::{Fixture, Host, Live, Overlay};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Skipped,
    Warn,
    Fail,
}

impl Status {
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
    }
}

/// A change `--fix` may make: turn an offload feature off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    pub iface: String,
    /// The kernel's feature name.
    pub feature: String,
    /// The same as an `ethtool -K` command.
    pub command: String,
}

/// The result of one check.
#[derive(Clone, Debug)]
pub struct Check {
    pub id: &'static str,
    pub incident: Option<u8>,
    pub title: &'static str,
    pub status: Status,
    /// One line: what was found (or why skipped).
    pub summary: String,
    /// What was read.
    pub evidence: Vec<String>,
    /// Commands that fix it (for the operator to run, or `--fix`).
    pub fix: Vec<String>,
    pub fixes: Vec<Fix>,
}

impl Check {
    fn new(id: &'static str, incident: Option<u8>, title: &'static str) -> Check {
        Check {
            id,
            incident,
            title,
            status: Status::Ok,
            summary: String::new(),
            evidence: Vec::new(),
            fix: Vec::new(),
            fixes: Vec::new(),
        }
    }

    fn set(mut self, status: Status, summary: impl Into<String>) -> Check {
        self.status = status;
        self.summary = summary.into();
        self
    }
}

/// (major, minor, patch) of a kernel release string: `5.4.41-1-amd64`.
pub fn kernel_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut nums = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = nums.next()?.parse().ok()?;
    let minor = nums.next()?.parse().ok()?;
    let patch = nums.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether a kernel has ea64d8d6c675 ("netfilter: nat: never update the UDP
/// checksum when it's 0"): mainline 5.7, stable 4.14.181, 4.19.123, 5.4.41.
pub fn has_nat_csum_fix(v: (u32, u32, u32)) -> bool {
    match (v.0, v.1) {
        (4, 14) => v.2 >= 181,
        (4, 19) => v.2 >= 123,
        (5, 4) => v.2 >= 41,
        _ => (v.0, v.1) >= (5, 7),
    }
}

/// `Name value` lines of /proc/net/snmp6, or the `Proto: names` /
/// `Proto: values` line pairs of /proc/net/snmp: `("Udp", "InCsumErrors")`.
pub fn snmp_value(text: &str, proto: &str, name: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if let Some(i) = names.split_whitespace().position(|n| n == name) {
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

pub fn snmp6_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == name).then(|| w.next()?.parse().ok())?
    })
}

/// The device of the IPv4 default route, from /proc/net/route.
pub fn default_route_dev(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() > 7 && w[1] == "00000000" && w[7] == "00000000").then(|| w[0].to_string())
    })
}

fn read_trim(host: &dyn Host, path: &str) -> Option<String> {
    host.read(path).ok().map(|s| s.trim().to_string())
}

fn kernel(host: &dyn Host) -> Option<(u32, u32, u32)> {
    kernel_release(&read_trim(host, "/proc/sys/kernel/osrelease")?)
}

/// Incident 1: LRO or hardware GRO on an interface of a forwarding host.
fn lro(host: &dyn Host, links: &[Link]) -> Check {
    let c = Check::new("lro", Some(1), "LRO / hardware GRO while forwarding");
    let fwd4 = read_trim(host, "/proc/sys/net/ipv4/ip_forward");
    let fwd6 = read_trim(host, "/proc/sys/net/ipv6/conf/all/forwarding");
    if fwd4.is_none() && fwd6.is_none() {
        return c.set(Status::Skipped, "cannot read ip_forward");
    }
    let forwarding = fwd4.as_deref() == Some("1") || fwd6.as_deref() == Some("1");
    let mut c = c;
    c.evidence.push(format!(
        "net.ipv4.ip_forward={}, net.ipv6.conf.all.forwarding={}",
        fwd4.as_deref().unwrap_or("?"),
        fwd6.as_deref().unwrap_or("?")
    ));
    let mut found = Vec::new();
    for link in links.iter().filter(|l| l.name != "lo") {
        let Ok(features) = host.features(&link.name) else {
            continue;
        };
        for (feature, alias) in [("rx-lro", "lro"), ("rx-gro-hw", "rx-gro-hw")] {
            if let Some(f) = features.iter().find(|f| f.name == feature && f.active) {
                found.push(link.name.clone());
                c.evidence.push(format!("{}: {feature} on", link.name));
                let command = format!("ethtool -K {} {alias} off", link.name);
                if f.changeable {
                    c.fixes.push(Fix {
                        iface: link.name.clone(),
                        feature: feature.to_string(),
                        command: command.clone(),
                    });
                }
                c.fix.push(command);
            }
        }
    }
    if !forwarding {
        c.fix.clear();
        c.fixes.clear();
        return c.set(
            Status::Ok,
            "not forwarding: aggregated packets are delivered locally, never re-segmented",
        );
    }
    if found.is_empty() {
        let n = links.iter().filter(|l| l.name != "lo").count();
        return c.set(
            Status::Ok,
            format!("forwarding; none of {n} interfaces aggregates in hardware"),
        );
    }
    found.dedup();
    c.set(
        Status::Fail,
        format!(
            "forwarding with hardware aggregation on {}: forwarded super-packets die in skb_warn_bad_offload",
            found.join(", ")
        ),
    )
}

/// Incident 2: IPv6 dst entries against net.ipv6.route.max_size.
fn rt6(host: &dyn Host) -> Check {
    let c = Check::new(
        "ipv6_route_cache",
        Some(2),
        "IPv6 dst entries vs route.max_size",
    );
    let Some(stats) = read_trim(host, "/proc/net/rt6_stats") else {
        return c.set(Status::Skipped, "no /proc/net/rt6_stats: IPv6 is off");
    };
    let fields: Vec<u64> = stats
        .split_whitespace()
        .filter_map(|f| u64::from_str_radix(f, 16).ok())
        .collect();
    let Some(&used) = fields.get(5) else {
        return c.set(Status::Skipped, format!("unexpected rt6_stats: {stats}"));
    };
    let Some(max) =
        read_trim(host, "/proc/sys/net/ipv6/route/max_size").and_then(|m| m.parse::<u64>().ok())
    else {
        return c.set(Status::Skipped, "cannot read net.ipv6.route.max_size");
    };
    let mut c = c;
    let pct = used as f64 * 100.0 / max.max(1) as f64;
    c.evidence.push(format!(
        "dst entries in use {used} of net.ipv6.route.max_size {max} ({pct:.0}%; 6th field of /proc/net/rt6_stats)"
    ));
    if let Some(snmp6) = read_trim(host, "/proc/net/snmp6") {
        c.evidence.push(format!(
            "Ip6InNoRoutes {}, Ip6OutNoRoutes {}",
            snmp6_value(&snmp6, "Ip6InNoRoutes").unwrap_or(0),
            snmp6_value(&snmp6, "Ip6OutNoRoutes").unwrap_or(0)
        ));
    }
    let v = kernel(host);
    // Mainline removed the limit in 6.3; some stable series have the removal.
    let enforced = v.is_none_or(|v| (v.0, v.1) < (6, 3));
    if !enforced {
        c.evidence
            .push("this kernel no longer enforces max_size (removed in 6.3)".to_string());
        return c.set(
            Status::Ok,
            format!("{used} dst entries; max_size not enforced"),
        );
    }
    let suggest = (max.max(used) * 4).max(65536);
    let fix = format!("sysctl -w net.ipv6.route.max_size={suggest}");
    if pct >= 90.0 {
        c.fix.push(fix);
        c.set(
            Status::Fail,
            format!(
                "{pct:.0}% of max_size: IPv6 route lookups fail and packets die in ip6_pkt_drop"
            ),
        )
    } else if pct >= 50.0 {
        c.fix.push(fix);
        c.set(
            Status::Warn,
            format!("{pct:.0}% of max_size (drops start near 100%)"),
        )
    } else {
        c.set(Status::Ok, format!("{pct:.0}% of max_size"))
    }
}

/// Encapsulation overhead over an IPv4 underlay (IPv6 adds 20).
fn overhead(kind: &str) -> Option<u32> {
    Some(match kind {
        "vxlan" | "geneve" => 50,
        "ipip" => 20,
        "gre" => 24,
        "wireguard" => 60,
        _ => return None,
    })
}

/// pktguard guards of this network namespace, from their state files:
/// (key, state lines, running).
fn guards(host: &dyn Host) -> Vec<(String, BTreeMap<String, String>, bool)> {
    let dir = guard_common::RUN_DIR;
    let suffix = host.key_suffix();
    host.list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.ends_with(".lock"))
        .filter(|f| crate::sys::iface_of_key(f.trim_end_matches(".lock"), &suffix).is_some())
        .map(|f| {
            let path = format!("{dir}/{f}");
            let state: BTreeMap<String, String> = host
                .read(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let running = host.lock_held(&path);
            (f.trim_end_matches(".lock").to_string(), state, running)
        })
        .collect()
}

/// Incident 3: tunnels larger than their underlay allows, pods larger than
/// the tunnel, and whether pktguard's clamp covers it.
fn tunnel_mtu(host: &dyn Host, links: &[Link]) -> Check {
    let mut c = Check::new("tunnel_mtu", Some(3), "tunnel and pod MTUs");
    let tunnels: Vec<&Link> = links
        .iter()
        .filter(|l| overhead(&l.kind).is_some())
        .collect();
    if tunnels.is_empty() {
        return c.set(
            Status::Ok,
            "no tunnel devices (vxlan, geneve, ipip, gre, wireguard)",
        );
    }
    let default_dev = read_trim(host, "/proc/net/route").and_then(|r| default_route_dev(&r));
    let mut worst = Status::Ok;
    let mut problems = Vec::new();
    let mut underlays = Vec::new();
    for t in &tunnels {
        let oh = overhead(&t.kind).unwrap_or(0);
        let under = t
            .lower
            .and_then(|i| links.iter().find(|l| l.ifindex == i))
            .or_else(|| {
                default_dev
                    .as_ref()
                    .and_then(|d| links.iter().find(|l| &l.name == d))
            });
        let Some(u) = under else {
            c.evidence.push(format!(
                "{} ({}, MTU {}): no lower device and no default route: underlay unknown",
                t.name, t.kind, t.mtu
            ));
            continue;
        };
        underlays.push(u.ifindex);
        let room = u.mtu.saturating_sub(oh);
        c.evidence.push(format!(
            "{} ({}, MTU {}) over {} (MTU {}): at most {room} fits",
            t.name, t.kind, t.mtu, u.name, u.mtu
        ));
        if t.mtu > room {
            worst = Status::Fail;
            problems.push(format!("{} MTU {} > {room}", t.name, t.mtu));
            c.fix.push(format!("ip link set dev {} mtu {room}", t.name));
        }
    }
    let tunnel_min = tunnels.iter().map(|t| t.mtu).min().unwrap_or(0);
    let pods: Vec<&Link> = links
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "veth" | "bridge") && l.mtu > tunnel_min)
        .filter(|l| !underlays.contains(&l.ifindex))
        .collect();
    let clamps: Vec<(String, u32)> = guards(host)
        .into_iter()
        .filter(|(_, s, running)| *running || s.get("persist").is_some_and(|v| v == "1"))
        .filter_map(|(key, s, _)| Some((key, s.get("mss_v4")?.parse().ok()?)))
        .collect();
    for (key, mss) in &clamps {
        c.evidence
            .push(format!("pktguard clamps MSS on {key} (IPv4 {mss})"));
    }
    let covered = clamps.iter().any(|(_, mss)| *mss + 40 <= tunnel_min);
    if !pods.is_empty() {
        let names: Vec<String> = pods
            .iter()
            .take(8)
            .map(|p| format!("{} ({})", p.name, p.mtu))
            .collect();
        c.evidence.push(format!(
            "pod-side devices larger than the tunnel's MTU {tunnel_min}: {}{}",
            names.join(", "),
            if pods.len() > 8 { ", ..." } else { "" }
        ));
        if covered {
            c.evidence
                .push("pktguard's MSS clamp keeps TCP segments within the tunnel".to_string());
        } else {
            worst = worst.max(Status::Warn);
            problems.push(format!(
                "{} pod-side device(s) larger than the tunnel, no MSS clamp",
                pods.len()
            ));
            let t = tunnels.iter().min_by_key(|t| t.mtu).expect("non-empty");
            let uplink = default_dev.as_deref().unwrap_or("eth0");
            c.fix.push(format!(
                "pktguard run --iface {uplink} --tunnel-dev {}   # or set the CNI's pod MTU to {tunnel_min}",
                t.name
            ));
        }
    }
    if clamps.is_empty() {
        c.evidence.push("no pktguard MSS clamp running".to_string());
    }
    if problems.is_empty() {
        c.set(
            Status::Ok,
            format!("{} tunnel(s) fit their underlay", tunnels.len()),
        )
    } else {
        c.set(worst, problems.join("; "))
    }
}

/// Outputs of the tools that exist: (what, output).
fn rulesets(host: &dyn Host, tools: &[&[&str]]) -> (Vec<(String, String)>, Vec<String>) {
    let (mut found, mut notes) = (Vec::new(), Vec::new());
    for args in tools {
        match host.command(args) {
            Ok(Some(out)) => found.push((args.join(" "), out)),
            Ok(None) => notes.push(format!("{} not installed", args[0])),
            Err(e) => notes.push(format!("{e:#}")),
        }
    }
    (found, notes)
}

/// Incident 4: VXLAN tx checksum offload, a kernel without the NAT fix,
/// `--random-fully` masquerading, and UdpInCsumErrors.
fn vxlan_csum(host: &dyn Host, links: &[Link]) -> Check {
    let mut c = Check::new("vxlan_csum", Some(4), "VXLAN checksums and double SNAT");
    let v = kernel(host);
    let fixed = v.is_some_and(has_nat_csum_fix);
    match v {
        Some(v) => c.evidence.push(format!(
            "kernel {}.{}.{}: {} the NAT fix for zero UDP checksums (5.7; 4.14.181, 4.19.123, 5.4.41)",
            v.0,
            v.1,
            v.2,
            if fixed { "has" } else { "lacks" }
        )),
        None => c.evidence.push("kernel version unreadable".to_string()),
    }
    let mut offloaded = Vec::new();
    for l in links.iter().filter(|l| l.kind == "vxlan") {
        let Ok(f) = host.features(&l.name) else {
            continue;
        };
        if let Some(f) = f
            .iter()
            .find(|f| f.name == "tx-checksum-ip-generic" && f.active)
        {
            offloaded.push(l.name.clone());
            let command = format!("ethtool -K {} tx-checksum-ip-generic off", l.name);
            if f.changeable && !fixed {
                c.fixes.push(Fix {
                    iface: l.name.clone(),
                    feature: f.name.clone(),
                    command: command.clone(),
                });
            }
            if !fixed {
                c.fix.push(command);
            }
        }
    }
    c.evidence.push(if offloaded.is_empty() {
        "no VXLAN device with tx checksum offload on".to_string()
    } else {
        format!("tx-checksum-ip-generic on: {}", offloaded.join(", "))
    });
    let (sets, notes) = rulesets(
        host,
        &[
            &["iptables-legacy-save"],
            &["iptables-nft-save"],
            &["nft", "list", "ruleset"],
        ],
    );
    let random_fully: Vec<&str> = sets
        .iter()
        .filter(|(_, out)| out.contains("--random-fully") || out.contains("fully-random"))
        .map(|(what, _)| what.as_str())
        .collect();
    c.evidence.push(if random_fully.is_empty() {
        "no MASQUERADE --random-fully rule".to_string()
    } else {
        format!("MASQUERADE --random-fully in: {}", random_fully.join(", "))
    });
    c.evidence.extend(notes);
    let errors = read_trim(host, "/proc/net/snmp")
        .and_then(|s| snmp_value(&s, "Udp", "InCsumErrors"))
        .unwrap_or(0);
    c.evidence.push(format!("UdpInCsumErrors {errors}"));
    if errors > 0 {
        c.fix.push(
            "pktguard drops --reason UDP_CSUM   # where the bad checksums die; on receivers: pktguard run --iface <underlay> --csum-repair".to_string(),
        );
    }
    if fixed {
        if errors > 0 {
            return c.set(
                Status::Warn,
                format!("{errors} UDP checksum errors (kernel has the NAT fix)"),
            );
        }
        return c.set(Status::Ok, "kernel has the NAT checksum fix");
    }
    match (offloaded.is_empty(), random_fully.is_empty()) {
        (false, false) => c.set(
            Status::Fail,
            "old kernel, VXLAN tx checksum offload and --random-fully SNAT: outer checksums get broken (63 s connects)",
        ),
        (false, true) => c.set(
            Status::Warn,
            "old kernel with VXLAN tx checksum offload: a second SNAT would break outer checksums",
        ),
        _ if errors > 0 => c.set(Status::Warn, format!("{errors} UDP checksum errors")),
        _ => c.set(Status::Ok, "no VXLAN device offloads its checksum"),
    }
}

fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

fn kube_chains(save: &str) -> Vec<&str> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with("KUBE-"))
        .collect()
}

/// Incident 5: rules in both iptables backends at once.
fn iptables_split(host: &dyn Host) -> Check {
    let c = Check::new(
        "iptables_backends",
        Some(5),
        "iptables legacy vs nft backends",
    );
    let (sets, notes) = rulesets(host, &[&["iptables-legacy-save"], &["iptables-nft-save"]]);
    if sets.len() < 2 {
        return c.set(Status::Skipped, notes.join("; "));
    }
    let mut c = c;
    let (legacy, nft) = (count_rules(&sets[0].1), count_rules(&sets[1].1));
    c.evidence.push(format!(
        "legacy backend: {legacy} rules; nft backend: {nft} rules"
    ));
    if legacy > 0 && nft > 0 {
        c.fix.push(
            "make every component use one backend (update-alternatives --set iptables /usr/sbin/iptables-nft), \
             then move the other's rules: iptables-legacy-save > legacy.rules; iptables-legacy -F; iptables-legacy -X"
                .to_string(),
        );
        return c.set(
            Status::Fail,
            "rules in both backends: each tool sees half the rule set (incident 5)",
        );
    }
    c.set(Status::Ok, "one backend in use")
}

/// Incident 5: kube-proxy chains without KUBE-MARK-DROP.
fn kube_mark_drop(host: &dyn Host) -> Check {
    let c = Check::new(
        "kube_mark_drop",
        Some(5),
        "KUBE-* chains without KUBE-MARK-DROP",
    );
    let (sets, notes) = rulesets(host, &[&["iptables-legacy-save"], &["iptables-nft-save"]]);
    if sets.is_empty() {
        return c.set(Status::Skipped, notes.join("; "));
    }
    let mut c = c;
    c.evidence.extend(notes);
    let mut missing = Vec::new();
    let has_mark = |out: &str| kube_chains(out).contains(&"KUBE-MARK-DROP");
    for (what, out) in &sets {
        let chains = kube_chains(out);
        if chains.is_empty() {
            continue;
        }
        let mark = has_mark(out);
        c.evidence.push(format!(
            "{what}: {} KUBE-* chains, KUBE-MARK-DROP {}",
            chains.len(),
            if mark { "present" } else { "missing" }
        ));
        if !mark {
            missing.push(what.clone());
        }
    }
    if c.evidence.iter().all(|e| !e.contains("KUBE-* chains")) {
        return c.set(Status::Ok, "no kube-proxy chains");
    }
    if missing.is_empty() {
        return c.set(Status::Ok, "KUBE-MARK-DROP present");
    }
    if sets.iter().any(|(_, out)| has_mark(out)) {
        c.evidence.push(
            "KUBE-MARK-DROP exists in the other backend: the rule sets are split".to_string(),
        );
    }
    c.fix.push(
        "run kube-proxy and kubelet on the same iptables backend; kube-proxy < 1.16 in IPVS mode needs KUBE-MARK-DROP (kubelet makes it)"
            .to_string(),
    );
    c.set(
        Status::Warn,
        format!(
            "KUBE-* chains without KUBE-MARK-DROP in {} (Service VIPs unreachable with kube-proxy < 1.16 IPVS; harmless on 1.28+)",
            missing.join(", ")
        ),
    )
}

/// pktguard itself: what runs where.
fn pktguard(host: &dyn Host) -> Check {
    let mut c = Check::new("pktguard", None, "pktguard on this host");
    let gs = guards(host);
    let mut stale = 0;
    let mut pinned = 0;
    for (key, s, running) in &gs {
        let persisted = s.get("persist").is_some_and(|v| v == "1");
        if !running && !persisted {
            stale += 1;
            c.evidence
                .push(format!("{key}: state left by a pktguard that was killed"));
            continue;
        }
        let who = if *running {
            format!("pid {}", s.get("pid").map_or("?", String::as_str))
        } else {
            pinned += 1;
            "pinned, no daemon: `pktguard run --persist` adopts it, `pktguard detach` removes it"
                .to_string()
        };
        let mut what = vec![format!(
            "{key}: {} ({who})",
            s.get("hooks").map_or("", String::as_str),
        )];
        if let (Some(v4), Some(v6)) = (s.get("mss_v4"), s.get("mss_v6")) {
            what.push(format!("MSS clamp {v4}/{v6}"));
        }
        if let Some(r) = s.get("repair") {
            what.push(format!("repair {r}"));
        }
        if let Some(g) = s.get("gso") {
            what.push(format!("gso guard {g}"));
        }
        c.evidence.push(what.join(", "));
    }
    if host.lock_held(guard_common::DROPS_LOCK) {
        c.evidence
            .push("drop monitor running (pktguard run --drop-monitor)".to_string());
    }
    let running = gs.iter().filter(|g| g.2).count() + pinned;
    if stale > 0 {
        c.fix.push(format!(
            "rm {}/<iface>.lock   # or start pktguard run on it again, which cleans up",
            guard_common::RUN_DIR
        ));
        return c.set(Status::Warn, format!("{running} running, {stale} stale"));
    }
    if running == 0 {
        c.evidence
            .push("`pktguard stats` shows counters while one runs".to_string());
        return c.set(Status::Ok, "no pktguard runs on this host");
    }
    c.evidence.extend(host.guard_counters());
    c.evidence.push("all counters: pktguard stats".to_string());
    c.set(Status::Ok, format!("{running} interface(s) guarded"))
}

/// Every check, in incident order.
pub fn run_checks(host: &dyn Host) -> Vec<Check> {
    let links = host.links();
    let no_links = |id, incident, title, e: &anyhow::Error| {
        Check::new(id, Some(incident), title)
            .set(Status::Skipped, format!("cannot list interfaces: {e:#}"))
    };
    let mut checks = Vec::new();
    match &links {
        Ok(l) => checks.push(lro(host, l)),
        Err(e) => checks.push(no_links("lro", 1, "LRO / hardware GRO while forwarding", e)),
    }
    checks.push(rt6(host));
    match &links {
        Ok(l) => {
            checks.push(tunnel_mtu(host, l));
            checks.push(vxlan_csum(host, l));
        }
        Err(e) => {
            checks.push(no_links("tunnel_mtu", 3, "tunnel and pod MTUs", e));
            checks.push(no_links(
                "vxlan_csum",
                4,
                "VXLAN checksums and double SNAT",
                e,
            ));
        }
    }
    checks.push(iptables_split(host));
    checks.push(kube_mark_drop(host));
    checks.push(pktguard(host));
    checks
}

/// Applies the safe fixes of `checks`; returns what changed and what failed.
pub fn apply_fixes(host: &dyn Host, checks: &[Check]) -> (Vec<String>, Vec<String>) {
    let (mut changed, mut failed) = (Vec::new(), Vec::new());
    for fix in checks.iter().flat_map(|c| &c.fixes) {
        match host.set_feature(&fix.iface, &fix.feature, false) {
            Ok(()) => changed.push(fix.command.clone()),
            Err(e) => failed.push(format!("{}: {e:#}", fix.command)),
        }
    }
    (changed, failed)
}

pub fn render_text(
    kernel: &str,
    checks: &[Check],
    changed: &[String],
    failed: &[String],
) -> String {
    let mut out = format!("pktguard doctor: kernel {kernel}\n");
    for c in checks {
        let incident = c
            .incident
            .map_or("          ".to_string(), |i| format!("incident {i}"));
        out.push_str(&format!(
            "{:<8} {incident}  {}: {}\n",
            format!("[{}]", c.status.name()),
            c.title,
            c.summary
        ));
        for e in &c.evidence {
            out.push_str(&format!("{:21}- {e}\n", ""));
        }
        for f in &c.fix {
            out.push_str(&format!("{:21}fix: {f}\n", ""));
        }
    }
    for ch in changed {
        out.push_str(&format!("changed: {ch}\n"));
    }
    for f in failed {
        out.push_str(&format!("could not fix: {f}\n"));
    }
    let n = |s| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "summary: {} ok, {} warn, {} fail, {} skipped\n",
        n(Status::Ok),
        n(Status::Warn),
        n(Status::Fail),
        n(Status::Skipped)
    ));
    out
}

pub fn render_json(
    kernel: &str,
    checks: &[Check],
    changed: &[String],
    failed: &[String],
) -> String {
    let list = |v: &[String]| v.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",");
    let items: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{{\"id\":{},\"incident\":{},\"title\":{},\"status\":{},\"summary\":{},\"evidence\":[{}],\"fix\":[{}]}}",
                json_str(c.id),
                c.incident.map_or("null".to_string(), |i| i.to_string()),
                json_str(c.title),
                json_str(c.status.name()),
                json_str(&c.summary),
                list(&c.evidence),
                list(&c.fix)
            )
        })
        .collect();
    format!(
        "{{\"kernel\":{},\"checks\":[{}],\"changed\":[{}],\"fix_failed\":[{}]}}\n",
        json_str(kernel),
        items.join(","),
        list(changed),
        list(failed)
    )
}

/// `pktguard doctor`: runs the checks on `host`, applies the fixes with
/// `fix` (then checks again), prints, and returns whether any check failed.
pub fn doctor(host: &dyn Host, json: bool, fix: bool) -> Result<bool> {
    let kernel = read_trim(host, "/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".into());
    let mut checks = run_checks(host);
    let (mut changed, mut failed) = (Vec::new(), Vec::new());
    if fix {
        (changed, failed) = apply_fixes(host, &checks);
        if !changed.is_empty() {
            checks = run_checks(host);
        }
    }
    if json {
        print!("{}", render_json(&kernel, &checks, &changed, &failed));
    } else {
        print!("{}", render_text(&kernel, &checks, &changed, &failed));
        if !fix && checks.iter().any(|c| !c.fixes.is_empty()) {
            println!("`pktguard doctor --fix` applies the offload changes above");
        }
    }
    Ok(checks.iter().any(|c| c.status == Status::Fail) || !failed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_and_the_nat_fix() {
        assert_eq!(kernel_release("5.4.41-1-amd64"), Some((5, 4, 41)));
        assert_eq!(kernel_release("3.10.0-693.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(kernel_release("6.18"), Some((6, 18, 0)));
        assert_eq!(kernel_release("x"), None);
        for (v, fixed) in [
            ((4, 14, 180), false),
            ((4, 14, 181), true),
            ((4, 19, 122), false),
            ((4, 19, 123), true),
            ((5, 4, 40), false),
            ((5, 4, 41), true),
            ((5, 6, 99), false),
            ((5, 7, 0), true),
            ((3, 10, 0), false),
            ((6, 1, 0), true),
        ] {
            assert_eq!(has_nat_csum_fix(v), fixed, "{v:?}");
        }
    }

    #[test]
    fn proc_files() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors InCsumErrors\nUdp: 10 2 3 7\n";
        assert_eq!(snmp_value(snmp, "Udp", "InCsumErrors"), Some(7));
        assert_eq!(snmp_value(snmp, "Ip", "DefaultTTL"), Some(64));
        assert_eq!(snmp_value(snmp, "Tcp", "X"), None);
        let snmp6 = "Ip6InReceives 5\nIp6InNoRoutes 12\nIp6OutNoRoutes 0\n";
        assert_eq!(snmp6_value(snmp6, "Ip6InNoRoutes"), Some(12));
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_route_dev(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_dev("Iface\n"), None);
    }

    #[test]
    fn iptables_save_parsing() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-DROP - [0:0]\n-A INPUT -j KUBE-SERVICES\nCOMMIT\n";
        assert_eq!(count_rules(save), 1);
        assert_eq!(kube_chains(save), ["KUBE-SERVICES", "KUBE-MARK-DROP"]);
    }
}
