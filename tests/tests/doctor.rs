//! `pktguard doctor`: for every check a passing and a failing case, made for
//! real in a namespace where a namespace can hold the state (sysctls,
//! devices, offloads, iptables rules in both backends), and with fixture
//! trees for what it cannot fake (kernel version, rt6_stats near the
//! limit, LRO). The VXLAN checks are in `doctor_vxlan.rs`.

use std::fs;

use guard_user::doctor::{self, Status};
use pktguard_tests::doctor::{Tree, check, live_check, live_checks, node};
use pktguard_tests::pktguard_in;

#[test]
fn lro_forwarding_namespace_without_lro_is_ok() {
    let (n, _p) = node();
    n.sysctl("net.ipv4.ip_forward", "1").unwrap();
    let c = live_check(&n, "lro", Status::Ok);
    assert!(c.summary.contains("forwarding"), "{c:?}");
    assert!(c.evidence[0].contains("ip_forward=1"), "{c:?}");
}

#[test]
fn lro_on_a_forwarding_host_fails_and_fix_turns_it_off() {
    let tree = Tree::new(&[
        ("proc/sys/net/ipv4/ip_forward", "1\n"),
        ("links", "1 lo - 65536\n2 eth0 - 1500\n3 eth1 - 1500\n"),
        (
            "ethtool/eth0",
            "rx-gro on\nrx-lro on\nrx-gro-hw off fixed\n",
        ),
        ("ethtool/eth1", "rx-gro on\nrx-lro off\n"),
    ]);
    let checks = doctor::run_checks(&tree.host());
    let c = check(&checks, "lro", Status::Fail);
    assert_eq!(c.fix, ["ethtool -K eth0 lro off"]);
    // The same through the CLI: exit 1, then --fix, exit 0.
    let root = tree.0.to_str().unwrap();
    let out = std::process::Command::new(pktguard_tests::pktguard_bin())
        .args(["doctor", "--root", root])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = std::process::Command::new(pktguard_tests::pktguard_bin())
        .args(["doctor", "--root", root, "--fix"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("changed: ethtool -K eth0 lro off"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    let after = fs::read_to_string(tree.0.join("ethtool/eth0")).unwrap();
    assert!(after.contains("rx-lro off"), "{after}");
}

#[test]
fn lro_on_a_host_that_does_not_forward_is_ok() {
    let tree = Tree::new(&[
        ("proc/sys/net/ipv4/ip_forward", "0\n"),
        ("proc/sys/net/ipv6/conf/all/forwarding", "0\n"),
        ("links", "2 eth0 - 1500\n"),
        ("ethtool/eth0", "rx-lro on\n"),
    ]);
    let c = doctor::run_checks(&tree.host());
    let c = check(&c, "lro", Status::Ok);
    assert!(c.fixes.is_empty());
}

// Incident 2 -------------------------------------------------------------

#[test]
fn rt6_reads_the_namespace_and_is_ok_on_this_kernel() {
    let (n, _p) = node();
    n.sysctl("net.ipv6.route.max_size", "123456").unwrap();
    let c = live_check(&n, "ipv6_route_cache", Status::Ok);
    assert!(c.evidence[0].contains("max_size 123456"), "{c:?}");
    assert!(c.evidence[1].starts_with("Ip6InNoRoutes"), "{c:?}");
}

#[test]
fn rt6_near_the_limit_on_4_19_fails_and_at_60_percent_warns() {
    for (used, status) in [
        (0xf00, Status::Fail),
        (0x99a, Status::Warn),
        (0x100, Status::Ok),
    ] {
        let stats = format!("0010 0008 0000 0008 0000 {used:04x} 0000\n");
        let tree = Tree::new(&[
            ("proc/sys/kernel/osrelease", "4.19.113-300.el7.x86_64\n"),
            ("proc/net/rt6_stats", &stats),
            ("proc/sys/net/ipv6/route/max_size", "4096\n"),
            ("proc/net/snmp6", "Ip6InNoRoutes 17\nIp6OutNoRoutes 3\n"),
            ("links", ""),
        ]);
        let checks = doctor::run_checks(&tree.host());
        let c = check(&checks, "ipv6_route_cache", status);
        assert!(c.evidence[1].contains("Ip6InNoRoutes 17"), "{c:?}");
        if status != Status::Ok {
            assert!(
                c.fix[0].starts_with("sysctl -w net.ipv6.route.max_size="),
                "{c:?}"
            );
        }
    }
}

// Incident 3 -------------------------------------------------------------

#[test]
fn rules_in_both_iptables_backends_fail_one_backend_is_ok() {
    let (n, _p) = node();
    n.exec(&[
        "iptables-nft",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "22",
        "-j",
        "ACCEPT",
    ])
    .unwrap();
    let checks = live_checks(&n);
    check(&checks, "iptables_backends", Status::Ok);
    n.exec(&[
        "iptables-legacy",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "80",
        "-j",
        "ACCEPT",
    ])
    .unwrap();
    let c = live_check(&n, "iptables_backends", Status::Fail);
    assert!(
        c.evidence[0].contains("legacy backend: 1 rules; nft backend: 1 rules"),
        "{c:?}"
    );
    let _ = n.exec(&["iptables-legacy", "-F"]);
}

#[test]
fn kube_chains_without_kube_mark_drop_are_flagged() {
    let (n, _p) = node();
    n.exec(&["iptables-nft", "-N", "KUBE-SERVICES"]).unwrap();
    let checks = live_checks(&n);
    let c = check(&checks, "kube_mark_drop", Status::Warn);
    assert!(c.summary.contains("iptables-nft-save"), "{c:?}");
    n.exec(&["iptables-nft", "-N", "KUBE-MARK-DROP"]).unwrap();
    let checks = live_checks(&n);
    check(&checks, "kube_mark_drop", Status::Ok);
}

#[test]
fn a_missing_tool_is_skipped_with_the_reason() {
    let tree = Tree::new(&[("links", "1 lo - 65536\n")]);
    let checks = doctor::run_checks(&tree.host());
    let c = check(&checks, "iptables_backends", Status::Skipped);
    assert!(
        c.summary.contains("iptables-legacy-save not installed"),
        "{c:?}"
    );
    // Nothing readable: every check still answers.
    check(&checks, "ipv6_route_cache", Status::Skipped);
}

// pktguard itself and the CLI --------------------------------------------

#[test]
fn stale_pktguard_state_warns() {
    let tree = Tree::new(&[
        ("links", ""),
        (
            "run/pktguard/eth0.lock",
            "pid=4242\niface=eth0\nhooks=tc-ingress\nmss_v4=1400\nmss_v6=1380\n",
        ),
    ]);
    // A fixture counts every state file as running...
    let checks = doctor::run_checks(&tree.host());
    let c = check(&checks, "pktguard", Status::Ok);
    assert!(c.evidence[0].contains("MSS clamp 1400/1380"), "{c:?}");
    // ...a live host only those whose lock is held.
    let (n, _p) = node();
    let dir = std::path::Path::new(guard_common::RUN_DIR);
    fs::create_dir_all(dir).unwrap();
    let key = n.run(|| guard_user::host::sys::iface_key("u0")).unwrap();
    let stale = dir.join(format!("{key}.lock"));
    fs::write(&stale, "pid=4242\niface=u0\n").unwrap();
    let checks = live_checks(&n);
    check(&checks, "pktguard", Status::Warn);
    // Left by `run --persist`: pinned on purpose, not stale.
    fs::write(
        &stale,
        "pid=4242\niface=u0\nhooks=tc-ingress\npersist=1\nmss_v4=1400\nmss_v6=1380\n",
    )
    .unwrap();
    let checks = live_checks(&n);
    let _ = fs::remove_file(&stale);
    let c = check(&checks, "pktguard", Status::Ok);
    assert!(c.evidence[0].contains("pinned, no daemon"), "{c:?}");
}

#[test]
fn doctor_json_parses_and_names_every_check() {
    let (n, _p) = node();
    let out = pktguard_in(&n, &["doctor", "--json"]).output().unwrap();
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ids: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "lro",
            "ipv6_route_cache",
            "tunnel_mtu",
            "vxlan_csum",
            "iptables_backends",
            "kube_mark_drop",
            "pktguard"
        ]
    );
    for c in doc["checks"].as_array().unwrap() {
        assert!(
            ["ok", "warn", "fail", "skipped"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
}
