//! The procfs text the checks read, parsed: kernel release, SNMP counters,
//! the default route.

use super::Host;

/// The running kernel's release string.
pub(super) const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// (major, minor, patch) of a kernel release string: `5.4.41-1-amd64`.
pub fn kernel_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut nums = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = nums.next()?.parse().ok()?;
    let minor = nums.next()?.parse().ok()?;
    let patch = nums.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
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

pub(super) fn read_trim(host: &dyn Host, path: &str) -> Option<String> {
    host.read(path).ok().map(|s| s.trim().to_string())
}

pub(super) fn kernel(host: &dyn Host) -> Option<(u32, u32, u32)> {
    kernel_release(&read_trim(host, OSRELEASE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(kernel_release("5.4.41-1-amd64"), Some((5, 4, 41)));
        assert_eq!(kernel_release("3.10.0-693.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(kernel_release("6.18"), Some((6, 18, 0)));
        assert_eq!(kernel_release("x"), None);
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
}
