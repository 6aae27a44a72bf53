//! Incident 3: tunnels larger than their underlay allows, pods larger than
//! the tunnel, and whether pktguard's clamp covers it.

use super::guard::guard_states;
use crate::{
    doctor::{
        Check, Host, Status,
        proc::{default_route_dev, read_trim},
    },
    host::rtnl::Link,
};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new("tunnel_mtu", Some(3), "tunnel and pod MTUs")
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

/// Incident 3: tunnels larger than their underlay allows, pods larger than
/// the tunnel, and whether pktguard's clamp covers it.
pub(in crate::doctor) fn check(host: &dyn Host, links: &[Link]) -> Check {
    let mut c = blank();
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
    let clamps: Vec<(String, u32)> = guard_states(host)
        .into_iter()
        .filter(|g| g.attached())
        .filter_map(|g| Some((g.key, u32::from(g.state.mss?.0))))
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
