//! The drop monitor against real drops provoked in namespaces: each is
//! counted at least once per packet sent, under the kernel's own reason
//! name, in the function that drops it, on the interface it arrived on.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::Context as _;
use guard_ebpf::csum::{fold, sum_words};
use guard_user::lab::netns::{self, Netns, VethEnd};
use pktguard_tests::{DropsWatch, RawTcp};

const SENT: u64 = 20;
const WAIT: Duration = Duration::from_secs(10);

/// Two namespaces joined by a veth pair: `a` (a0, 10.77.0.1, fd77::1) and
/// `b` (b0, 10.77.0.2, fd77::2).
fn pair(mtu_b: u32) -> (Netns, Netns) {
    let tag = netns::unique_tag();
    let a = Netns::new(&format!("pg-{tag}-da")).unwrap();
    let b = Netns::new(&format!("pg-{tag}-db")).unwrap();
    netns::veth(
        &VethEnd::new(&a, "a0", &["10.77.0.1/24", "fd77::1/64"], 1500),
        &VethEnd::new(&b, "b0", &["10.77.0.2/24", "fd77::2/64"], mtu_b),
    )
    .unwrap();
    // No neighbour discovery: under load a lost solicitation would lose the
    // packets queued behind it, before they reach the drop under test.
    for (ns, dev, peer, peer_dev, addrs) in [
        (&a, "a0", &b, "b0", ["10.77.0.2", "fd77::2"]),
        (&b, "b0", &a, "a0", ["10.77.0.1", "fd77::1"]),
    ] {
        let mac = peer.mac_text(peer_dev).unwrap();
        for addr in addrs {
            ns.ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                &mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])
            .unwrap();
        }
    }
    (a, b)
}

fn udp_flood(ns: &Netns, to: SocketAddr, len: usize, df_probe: bool) {
    ns.run(|| {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let s = UdpSocket::bind(bind)?;
        if df_probe {
            // Set DF, ignore the path MTU: every datagram leaves whole.
            let probe: libc::c_int = libc::IP_PMTUDISC_PROBE;
            pktguard_tests::setsockopt(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &probe)
                .context("IP_MTU_DISCOVER")?;
        }
        for _ in 0..SENT {
            // Refusals (ICMP errors coming back) are expected here.
            let _ = s.send_to(&vec![0x5a; len], to);
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    })
    .unwrap();
}

/// The row of a drop `reason` in one of `functions` on `iface`, counted at
/// least once per packet sent.
/// Drop reasons arrived in 5.17.
fn has_reasons() -> bool {
    pktguard_tests::kernel_at_least(5, 17)
}

/// `args` and `--reason REASON` where the kernel has drop reasons (5.17+;
/// before, `--reason` is refused and the rows are told apart by location).
fn with_reason<'a>(mut args: Vec<&'a str>, reason: &'a str) -> Vec<&'a str> {
    if has_reasons() {
        args.extend(["--reason", reason]);
    }
    args
}

/// Before 5.17 the kernel gives no reason: the row says `-` and the
/// location alone tells the drop apart.
/// Without the kernel's BTF (4.19) the device is not read: ifindex 0.
fn is(row: &serde_json::Value, reason: &str, functions: &[&str], iface: &str) -> bool {
    let reason = if has_reasons() { reason } else { "-" };
    let device = if devices_readable() {
        row["iface"] == iface
    } else {
        row["ifindex"] == 0
    };
    row["reason"] == reason
        && functions.iter().any(|f| row["function"] == *f)
        && device
        && row["total"].as_u64().unwrap_or(0) >= SENT
}

use guard_user::host::kernel::{Feature, has};

fn devices_readable() -> bool {
    has(Feature::KernelBtf)
}

/// `args` for a watch on this kernel: where drops carry no device (no
/// BTF), `--iface` is refused in one line (asserted) and left out.
fn for_this_kernel<'a>(at: &Netns, args: &[&'a str]) -> Vec<&'a str> {
    let Some(i) = args.iter().position(|a| *a == "--iface") else {
        return args.to_vec();
    };
    if devices_readable() {
        return args.to_vec();
    }
    let out = pktguard_tests::pktguard_in(at, &["drops", "--count", "1", "--iface", args[i + 1]])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--iface accepted without BTF");
    assert!(stderr.contains("needs the kernel's BTF"), "{stderr}");
    [&args[..i], &args[i + 2..]].concat()
}

/// Watches `at` (with `args`) while `send` runs: the row of `reason` in one
/// of `functions` on b0, counted at least once per packet sent.
#[track_caller]
fn dropped_as(
    at: &Netns,
    args: &[&str],
    send: impl FnOnce(),
    reason: &str,
    functions: &[&str],
) -> serde_json::Value {
    let w = DropsWatch::start(at, &for_this_kernel(at, args)).unwrap();
    send();
    w.wait_for(WAIT, |r| is(r, reason, functions, "b0"))
        .unwrap()
}

/// Incident 2's path: a forwarded IPv6 packet to a destination behind an
/// `unreachable` route dies in ip6_pkt_drop. The tracepoint's location is a
/// return address: where ip6_pkt_drop ends in a tail call to the free (6.x),
/// it names ip6_pkt_drop's caller, ip6_pkt_discard.
#[test]
fn ipv6_unreachable_route_drops_in_ip6_pkt_drop() {
    let (a, b) = pair(1500);
    b.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    b.ip(&["-6", "route", "add", "unreachable", "fd99::/64"])
        .unwrap();
    a.ip(&["-6", "route", "add", "fd99::/64", "via", "fd77::2"])
        .unwrap();
    let to = SocketAddr::new(IpAddr::V6("fd99::1".parse::<Ipv6Addr>().unwrap()), 9);
    let row = dropped_as(
        &b,
        &["--iface", "b0"],
        || udp_flood(&a, to, 100, false),
        "IP_INNOROUTES",
        &["ip6_pkt_drop", "ip6_pkt_discard"],
    );
    // The protocol is read at an offset from the kernel's BTF.
    if devices_readable() {
        assert_eq!(row["protocol"], "ipv6");
    }
    assert!(
        row["location"].as_str().unwrap().starts_with("ip6_pkt_"),
        "{row}"
    );
}

/// A TCP SYN with a bad checksum to a listening socket.
#[test]
fn bad_tcp_checksum_is_tcp_csum() {
    let (a, b) = pair(1500);
    // veth would mark the segment's checksum as verified: let b check it.
    b.exec(&["ethtool", "-K", "b0", "rx", "off"]).unwrap();
    let _listener = b
        .run(|| Ok(std::net::TcpListener::bind("10.77.0.2:8080")?))
        .unwrap();
    let w = DropsWatch::start(&b, &with_reason(vec![], "tcp_csum")).unwrap();
    let mut syn = vec![0u8; 20];
    syn[0..2].copy_from_slice(&40000u16.to_be_bytes());
    syn[2..4].copy_from_slice(&8080u16.to_be_bytes());
    syn[12] = 5 << 4;
    syn[13] = 0x02;
    syn[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = [&[10, 77, 0, 1, 10, 77, 0, 2, 0, 6, 0, 20][..], &syn].concat();
    let good = !fold(sum_words(&pseudo, 0));
    syn[16..18].copy_from_slice(&(good ^ 0x0101).to_be_bytes());
    a.run(|| {
        let raw = RawTcp::new(false)?;
        for _ in 0..SENT {
            raw.send("10.77.0.2".parse()?, &syn)?;
        }
        Ok(())
    })
    .unwrap();
    w.wait_for(WAIT, |r| is(r, "TCP_CSUM", &["tcp_v4_rcv"], "b0"))
        .unwrap();
}

/// UDP to a port nobody listens on.
#[test]
fn udp_to_a_closed_port_is_no_socket() {
    let (a, b) = pair(1500);
    dropped_as(
        &b,
        &with_reason(vec!["--iface", "b0"], "NO_SOCKET"),
        || udp_flood(&a, "10.77.0.2:9".parse().unwrap(), 100, false),
        "NO_SOCKET",
        &["__udp4_lib_rcv"],
    );
}

/// A forwarded IPv4 packet with DF set, larger than the next hop's MTU.
#[test]
fn forwarded_df_packet_over_the_mtu_is_pkt_too_big() {
    let (a, r) = pair(1500);
    let tag = netns::unique_tag();
    let c = Netns::new(&format!("pg-{tag}-dc")).unwrap();
    netns::veth(
        &VethEnd::new(&r, "r1", &["10.78.0.1/24"], 1280),
        &VethEnd::new(&c, "c0", &["10.78.0.2/24"], 1280),
    )
    .unwrap();
    r.sysctl("net.ipv4.ip_forward", "1").unwrap();
    a.ip(&["route", "add", "10.78.0.0/24", "via", "10.77.0.2"])
        .unwrap();
    dropped_as(
        &r,
        &["--iface", "b0"],
        || udp_flood(&a, "10.78.0.2:9".parse().unwrap(), 1400, true),
        "PKT_TOO_BIG",
        &["ip_forward"],
    );
}

/// An nftables rule that drops: in nf_hook_slow, or (nf_tables on newer
/// kernels) in nft_do_chain itself.
#[test]
fn nftables_drop_is_netfilter_drop() {
    let (a, b) = pair(1500);
    b.exec(&[
        "nft",
        "add table inet pgdrop; \
         add chain inet pgdrop input { type filter hook input priority 0; }; \
         add rule inet pgdrop input udp dport 7777 drop",
    ])
    .unwrap();
    dropped_as(
        &b,
        &["--iface", "b0"],
        || udp_flood(&a, "10.77.0.2:7777".parse().unwrap(), 100, false),
        "NETFILTER_DROP",
        &["nf_hook_slow", "nft_do_chain"],
    );
}

/// Bad input: one line naming the problem, a failing exit.
#[test]
fn bad_drops_arguments_are_refused() {
    let (_a, b) = pair(1500);
    for (args, want) in [
        (
            &["--reason", "NOT_A_REASON"][..],
            if has_reasons() {
                "unknown drop reason"
            } else {
                "needs drop reasons, which this kernel lacks (5.17+)"
            },
        ),
        // Refused for the name (no BTF: for --iface itself, naming it).
        (&["--iface", "nosuch0"][..], "nosuch0"),
        (&["--interval", "0s"][..], "--interval"),
        (&["--top", "0"][..], "--top"),
    ] {
        let mut all = vec!["drops", "--count", "1"];
        all.extend_from_slice(args);
        let out = pktguard_tests::pktguard_in(&b, &all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

/// The raw-tracepoint fallback (kernels without BTF tracepoints) counts the
/// same drops under the same reason, location and device (none where the
/// kernel has no BTF to find the device's fields: 4.19).
#[test]
fn raw_tracepoint_fallback_counts_the_same() {
    let (a, b) = pair(1500);
    let mon = guard_user::drops::DropMonitor::start_with(false, true).unwrap();
    assert_eq!(mon.program, guard_common::PROG_DROP_MONITOR);
    udp_flood(&a, "10.77.0.2:9".parse().unwrap(), 100, false);
    // Without drop reasons (before 5.17) every row has reason 0.
    let no_socket = if has_reasons() {
        mon.reasons.lookup("NO_SOCKET").unwrap()
    } else {
        0
    };
    let (ifindex, netns, protocol) = if devices_readable() {
        let ifindex = b.run(|| guard_user::host::sys::ifindex("b0")).unwrap();
        let netns = guard_user::host::sys::netns_inode(&b.path()).unwrap() as u32;
        (ifindex, netns, 0x0800)
    } else {
        (0, 0, 0)
    };
    let (snap, _) = mon.snapshot().unwrap();
    let hits: u64 = snap
        .iter()
        .filter(|(k, _)| {
            k.reason == no_socket
                && k.ifindex == ifindex
                && k.netns == netns
                && k.protocol == protocol
                && mon.syms.name(k.location).starts_with("__udp4_lib_rcv+")
        })
        .map(|(_, n)| n)
        .sum();
    assert!(hits >= SENT, "{hits} of {SENT}: {snap:?}");
}

/// Distinct IPv6 destinations of the incident-2 test: each a /128 route
/// of its own on the router, so each needs a dst entry of its own.
const DESTINATIONS: usize = 200;
/// The router's net.ipv6.route.max_size, and the garbage collector's
/// threshold under it (the default, 1024, would never run the collector
/// before a few hundred entries; the limit is what the incident is about).
const ROUTE_MAX_SIZE: usize = 16;

/// Incident 2: a router with a small `net.ipv6.route.max_size` forwarding
/// to many IPv6 destinations. Once the dst entries pass the limit, a new
/// route lookup fails, falls back to the null entry, and the packet dies
/// in ip6_pkt_drop with no log line (4.19): `pktguard drops` names the
/// location, and `pktguard doctor` shows the dst usage against max_size
/// as a failure. On a kernel that no longer enforces the limit (6.3+) the
/// fix is asserted instead: every datagram is forwarded, nothing dies in
/// ip6_pkt_drop, and the doctor says the limit is not enforced. On 5.10 and
/// 6.1 this pattern, measured, reaches no drop (their per-CPU dst
/// accounting differs; not explained yet): there the doctor's usage line is
/// asserted, and nothing about the drops.
#[test]
fn incident2_small_route_max_size_drops_in_ip6_pkt_drop() {
    let (a, b) = pair(1500);
    let tag = netns::unique_tag();
    let c = Netns::new(&format!("pg-{tag}-dc")).unwrap();
    netns::veth(
        &VethEnd::new(&b, "b1", &["fd78::1/64"], 1500),
        &VethEnd::new(&c, "c0", &["fd78::2/64"], 1500),
    )
    .unwrap();
    let c_mac = c.mac_text("c0").unwrap();
    b.ip(&[
        "neigh",
        "replace",
        "fd78::2",
        "lladdr",
        &c_mac,
        "dev",
        "b1",
        "nud",
        "permanent",
    ])
    .unwrap();
    // c takes every destination as its own (no forwarding, no null entry
    // there): only b's lookups can fail.
    c.ip(&["-6", "route", "add", "local", "fd99::/64", "dev", "lo"])
        .unwrap();
    a.ip(&["-6", "route", "add", "fd99::/64", "via", "fd77::2"])
        .unwrap();
    b.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    let batch = std::env::temp_dir().join(format!("pktguard-routes-{tag}"));
    let routes: String = (1..=DESTINATIONS)
        .map(|i| format!("route add fd99::{i:x}/128 via fd78::2 dev b1\n"))
        .collect();
    std::fs::write(&batch, routes).unwrap();
    let added = b.ip(&["-batch", batch.to_str().unwrap()]);
    let _ = std::fs::remove_file(&batch);
    added.unwrap();
    b.sysctl(
        "net.ipv6.route.gc_thresh",
        &(ROUTE_MAX_SIZE / 2).to_string(),
    )
    .unwrap();
    b.sysctl("net.ipv6.route.max_size", &ROUTE_MAX_SIZE.to_string())
        .unwrap();

    let enforced = !pktguard_tests::kernel_at_least(6, 3);
    // Seen on 4.19.90; not on 5.10 or 6.1 (see above).
    let drops_expected = !pktguard_tests::kernel_at_least(5, 10);
    let forwarded = || -> u64 {
        let text = b.exec(&["cat", "/proc/net/snmp6"]).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("Ip6OutForwDatagrams"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Ip6OutForwDatagrams")
    };
    let before = forwarded();
    let w = DropsWatch::start(&b, &for_this_kernel(&b, &["--iface", "b0"])).unwrap();
    a.run(|| {
        let s = UdpSocket::bind("[::]:0")?;
        for round in 0..2 {
            for i in 1..=DESTINATIONS {
                let to = SocketAddr::new(IpAddr::V6(format!("fd99::{i:x}").parse()?), 9);
                let _ = s.send_to(&[round as u8; 64], to);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })
    .unwrap();
    let in_ip6_pkt_drop = |r: &serde_json::Value| {
        r["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("ip6_pkt_drop") || l.starts_with("ip6_pkt_discard"))
            && r["total"].as_u64().unwrap_or(0) >= SENT
    };
    let sent = 2 * DESTINATIONS as u64;
    let forwarded = forwarded() - before;
    let out = pktguard_tests::pktguard_in(&b, &["doctor", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "ipv6_route_cache")
        .cloned()
        .expect("the ipv6_route_cache check");
    let usage = format!("of net.ipv6.route.max_size {ROUTE_MAX_SIZE} (");
    if drops_expected {
        let row = w.wait_for(WAIT, in_ip6_pkt_drop).unwrap();
        assert!(forwarded < sent, "all {sent} forwarded: {row}");
        assert_eq!(check["status"], "fail", "{check}");
        assert!(check.to_string().contains(&usage), "{check}");
    } else if enforced {
        assert!(check.to_string().contains(&usage), "{check}");
    } else {
        assert!(
            w.wait_for(Duration::from_secs(3), in_ip6_pkt_drop).is_err(),
            "drops in ip6_pkt_drop on a kernel without the limit"
        );
        assert!(forwarded >= sent, "{forwarded} of {sent} forwarded");
        assert_eq!(check["status"], "ok", "{check}");
        assert!(check.to_string().contains("not enforced"), "{check}");
    }
}
