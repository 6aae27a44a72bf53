//! Incident 2: IPv6 dst entries against net.ipv6.route.max_size, which
//! kernels before 6.3 enforce by dropping in ip6_pkt_drop.

use crate::doctor::{
    Check, Host, Status,
    proc::{kernel, read_trim, snmp6_value},
};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new(
        "ipv6_route_cache",
        Some(2),
        "IPv6 dst entries vs route.max_size",
    )
}

/// Incident 2: IPv6 dst entries against net.ipv6.route.max_size.
pub(in crate::doctor) fn check(host: &dyn Host) -> Check {
    let c = blank();
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
