//! Incident 4: VXLAN tx checksum offload, a kernel without the NAT fix,
//! `--random-fully` masquerading, and UdpInCsumErrors.

use super::{IPTABLES_SAVES, rulesets};
use crate::{
    doctor::{
        Check, Fix, Host, Status,
        proc::{kernel, read_trim, snmp_value},
    },
    host::rtnl::Link,
};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new("vxlan_csum", Some(4), "VXLAN checksums and double SNAT")
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

/// Incident 4: VXLAN tx checksum offload, a kernel without the NAT fix,
/// `--random-fully` masquerading, and UdpInCsumErrors.
pub(in crate::doctor) fn check(host: &dyn Host, links: &[Link]) -> Check {
    let mut c = blank();
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
            IPTABLES_SAVES[0],
            IPTABLES_SAVES[1],
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nat_fix() {
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
}
