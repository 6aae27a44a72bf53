//! Incident 1: LRO or hardware GRO on a forwarding host, whose super-packets
//! die in skb_warn_bad_offload when re-segmented.

use crate::{
    doctor::{Check, Fix, Host, Status, proc::read_trim},
    host::rtnl::Link,
};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new("lro", Some(1), "LRO / hardware GRO while forwarding")
}

/// Incident 1: LRO or hardware GRO on an interface of a forwarding host.
pub(in crate::doctor) fn check(host: &dyn Host, links: &[Link]) -> Check {
    let c = blank();
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
