//! `pktguard doctor`'s VXLAN checks (incidents 3 and 4): tunnel MTUs against
//! their underlay and the pods, and the tx checksum offload under a second
//! SNAT, with `--fix` tested on a real VXLAN device.

use guard_user::{
    doctor::{self, Fixture, Overlay, Status},
    host::ethtool,
    lab::netns::{self, Netns, VethEnd},
};
use pktguard_tests::Running;
use pktguard_tests::doctor::{Tree, check, live_checks, node, ns, overlay_checks, vxlan};

/// The kernel refuses a VXLAN MTU above what its `dev` allows, but not an
/// underlay lowered later, nor a VXLAN device without `dev` (its underlay is
/// the default route's device).
#[test]
fn vxlan_larger_than_its_underlay_fails() {
    let (n, _p) = node();
    vxlan(&n, 1450);
    n.ip(&["link", "set", "u0", "mtu", "1400"]).unwrap();
    let checks = live_checks(&n);
    let c = check(&checks, "tunnel_mtu", Status::Fail);
    assert!(
        c.fix.contains(&"ip link set dev vx0 mtu 1350".to_string()),
        "{c:?}"
    );

    let (n, _p) = node();
    n.ip(&["route", "add", "default", "via", "10.88.0.2", "dev", "u0"])
        .unwrap();
    n.ip(&[
        "link",
        "add",
        "vx1",
        "type",
        "vxlan",
        "id",
        "43",
        "dstport",
        "4789",
        "local",
        "10.88.0.1",
    ])
    .unwrap();
    n.ip(&["link", "set", "vx1", "mtu", "1500", "up"]).unwrap();
    let checks = live_checks(&n);
    let c = check(&checks, "tunnel_mtu", Status::Fail);
    assert!(c.evidence[0].contains("over u0 (MTU 1500)"), "{c:?}");
}

#[test]
fn vxlan_that_fits_is_ok_until_a_pod_is_larger() {
    let (n, _p) = node();
    vxlan(&n, 1450);
    let c = live_checks(&n);
    check(&c, "tunnel_mtu", Status::Ok);
    // A pod-side veth of 1500 behind a 1450 tunnel: a warning, until
    // pktguard clamps the MSS.
    let pod = ns("docpod");
    netns::veth(
        &VethEnd::new(&n, "pod0", &[], 1500),
        &VethEnd::new(&pod, "eth0", &[], 1500),
    )
    .unwrap();
    let checks = live_checks(&n);
    let c = check(&checks, "tunnel_mtu", Status::Warn);
    assert!(c.fix[0].contains("--tunnel-dev vx0"), "{c:?}");
    let guard = Running::start(&n, &["--iface", "pod0", "--tunnel-dev", "vx0"]).unwrap();
    let checks = live_checks(&n);
    let c = check(&checks, "tunnel_mtu", Status::Ok);
    assert!(
        c.evidence.iter().any(|e| e.contains("pktguard clamps MSS")),
        "{c:?}"
    );
    let p = check(&checks, "pktguard", Status::Ok);
    assert!(p.summary.contains("1 interface"), "{p:?}");
    assert!(
        p.evidence
            .iter()
            .any(|e| e.starts_with("pod0 counters: seen")),
        "{p:?}"
    );
    drop(guard);
}

// Incident 4 -------------------------------------------------------------

fn masquerade_random_fully(n: &Netns) {
    n.exec(&[
        "iptables-nft",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "u0",
        "-j",
        "MASQUERADE",
        "--random-fully",
    ])
    .unwrap();
}

/// Live: ok where the running kernel has the NAT fix, a failure on one
/// that lacks it (4.19.90 in the matrix).
#[test]
fn vxlan_csum_offload_is_judged_by_the_running_kernels_nat_fix() {
    let (n, _p) = node();
    vxlan(&n, 1450);
    masquerade_random_fully(&n);
    let checks = live_checks(&n);
    let fixed = !guard_user::lab::repair::kernel_has_nat_bug();
    let want = if fixed { Status::Ok } else { Status::Fail };
    let c = check(&checks, "vxlan_csum", want);
    assert!(
        c.evidence
            .iter()
            .any(|e| e.contains("tx-checksum-ip-generic on: vx0")),
        "{c:?}"
    );
    assert!(
        c.evidence.iter().any(|e| e.contains("--random-fully in")),
        "{c:?}"
    );
}

/// The real VXLAN device and rule seen as on 4.19.90 (before the NAT fix):
/// fail; --fix turns the offload off for real; checked again: ok.
#[test]
fn vxlan_csum_offload_with_random_fully_on_4_19_fails_and_fix_turns_it_off() {
    let (n, _p) = node();
    vxlan(&n, 1450);
    masquerade_random_fully(&n);
    let tree = Tree::new(&[(
        "proc/sys/kernel/osrelease",
        "4.19.90-24.4.v2101.ky10.x86_64\n",
    )]);
    let checks = overlay_checks(&n, &tree);
    let c = check(&checks, "vxlan_csum", Status::Fail);
    assert_eq!(c.fix, ["ethtool -K vx0 tx-checksum-ip-generic off"]);
    let root = tree.0.clone();
    let (changed, failed) = n
        .run(move || {
            let host = Overlay {
                files: Fixture { root },
            };
            Ok(doctor::apply_fixes(&host, &doctor::run_checks(&host)))
        })
        .unwrap();
    assert_eq!(
        changed,
        ["ethtool -K vx0 tx-checksum-ip-generic off"],
        "{failed:?}"
    );
    let off = n
        .run(|| ethtool::features("vx0"))
        .unwrap()
        .into_iter()
        .find(|f| f.name == "tx-checksum-ip-generic")
        .unwrap();
    assert!(!off.active, "{off:?}");
    let checks = overlay_checks(&n, &tree);
    check(&checks, "vxlan_csum", Status::Ok);
}

// Incident 5 -------------------------------------------------------------
