//! Incident 4 end to end: VXLAN between two namespaces, outer checksums
//! broken by a second SNAT: the kernel's own NAT under kube-proxy's rules
//! where the kernel lacks the fix (4.19.90 in the matrix), and a test-only
//! program that does what that NAT did on every kernel. Without the guard
//! the overlay connect fails and the receiver counts UDP checksum errors;
//! with `pktguard run --csum-repair` on the receiver's underlay the echo
//! completes and every mangled frame was repaired. Real corruption is left
//! alone and counted.

use std::time::Duration;

use guard_user::lab::repair::{RECEIVER_IF, SecondSnat, VxlanLab, kernel_has_nat_bug};
use pktguard_tests::{Running, kernel_at_least, pktguard_in, stats_counter, stats_json};

const ECHO: usize = 1 << 20;
const FAIL_WAIT: Duration = Duration::from_secs(2);
const DONE_WAIT: Duration = Duration::from_secs(30);

fn incident4(v6: bool, mtu: u32, attach: &str, corrupt: bool) {
    let what = format!("v6={v6} mtu={mtu} attach={attach} corrupt={corrupt}");
    let lab = VxlanLab::new(v6, mtu, SecondSnat::Program { corrupt }).expect("lab namespaces");
    let errors = lab.csum_errors().unwrap();
    let before = lab.echo(ECHO, FAIL_WAIT).unwrap();
    assert!(before.is_err(), "{what}: the echo worked without the guard");
    assert!(
        lab.csum_errors().unwrap() > errors,
        "{what}: no UDP checksum error counted"
    );

    if attach == "xdp" && !kernel_at_least(5, 18) {
        // The repair at XDP needs multi-buffer XDP (5.18): refused plainly,
        // nothing attached, the overlay still broken.
        let out = pktguard_in(
            &lab.b,
            &[
                "run",
                "--iface",
                RECEIVER_IF,
                "--csum-repair",
                "--attach",
                "xdp",
            ],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains("needs Linux 5.18+"), "{what}: {stderr}");
        let link = lab.b.ip(&["link", "show", "dev", RECEIVER_IF]).unwrap();
        assert!(!link.contains("xdp"), "{what}: left attached: {link}");
        return;
    }
    let guard = Running::start(
        &lab.b,
        &[
            "--iface",
            RECEIVER_IF,
            "--csum-repair",
            "--attach",
            attach,
            "--direction",
            "ingress",
        ],
    )
    .expect("pktguard run");
    let mangled = lab.mangled().unwrap();
    let after = lab
        .echo(ECHO, if corrupt { FAIL_WAIT } else { DONE_WAIT })
        .unwrap();
    let mangled = lab.mangled().unwrap() - mangled;
    let json = stats_json(&lab.b);
    let hook = if attach == "tc" {
        "tc-ingress"
    } else {
        "xdp-ingress"
    };
    let count = |name| stats_counter(&json, RECEIVER_IF, "csum", hook, name);
    assert!(mangled > 0, "{what}: nothing was mangled");
    if corrupt {
        assert!(after.is_err(), "{what}: a corrupt frame got through");
        assert_eq!(count("unrepairable_inner_bad"), mangled, "{what}: {json}");
        assert_eq!(count("outer_repaired"), 0, "{what}: {json}");
    } else {
        assert!(after.is_ok(), "{what}: with the guard: {after:?}");
        assert_eq!(count("outer_repaired"), mangled, "{what}: {json}");
    }
    let (status, out) = guard.stop(libc::SIGTERM).unwrap();
    assert!(status.success(), "{what}: {out:?}");
}

// (IPv6 underlay, underlay MTU, attach point, real corruption).
pktguard_tests::test_cases!(incident4 {
    ipv4_underlay_tc: false, 1500, "tc", false;
    ipv4_underlay_xdp: false, 1500, "xdp", false;
    ipv6_underlay_tc: true, 1500, "tc", false;
    ipv6_underlay_xdp: true, 1500, "xdp", false;
    jumbo_underlay_tc: false, 9000, "tc", false;
    jumbo_underlay_xdp: false, 9000, "xdp", false;
    real_corruption_is_left_alone_tc: false, 1500, "tc", true;
    real_corruption_is_left_alone_xdp: false, 1500, "xdp", true;
});

/// Incident 4 for real: kube-proxy's rules on node A (the node's traffic to
/// the Service marked 0x4000, KUBE-POSTROUTING masquerading marked packets
/// with --random-fully) and the kernel's own NAT masquerading the VXLAN packet a
/// second time. Where the kernel lacks ea64d8d6c675 (4.19.90 in the matrix)
/// the outer checksum comes out wrong: the connect hangs and B counts
/// checksum errors; with the guard on B the echo completes, every frame
/// repaired and no more errors. Where the kernel has the fix, the fix is
/// asserted: the outer packet is masqueraded again and yet the echo
/// completes without the guard, with no checksum error.
fn kernel_nat(v6: bool) {
    let lab = VxlanLab::new(v6, 1500, SecondSnat::Kernel).expect("lab namespaces");
    let bug = kernel_has_nat_bug();
    let errors = lab.csum_errors().unwrap();
    let before = lab
        .echo(ECHO, if bug { FAIL_WAIT } else { DONE_WAIT })
        .unwrap();
    let errors = lab.csum_errors().unwrap() - errors;
    // The inner TCP connection and the outer UDP flow, one packet each.
    let masqueraded = lab.mangled().unwrap();
    assert!(
        masqueraded >= 2,
        "v6={v6}: the outer packet was not masqueraded again ({masqueraded} packets)"
    );
    if !bug {
        assert!(
            before.is_ok(),
            "v6={v6}: a kernel with the NAT fix: {before:?}"
        );
        assert_eq!(
            errors, 0,
            "v6={v6}: checksum errors on a kernel with the NAT fix"
        );
        return;
    }
    assert!(
        before.is_err(),
        "v6={v6}: the echo worked through the kernel's NAT bug"
    );
    assert!(errors > 0, "v6={v6}: no UDP checksum error counted");
    let guard = Running::start(
        &lab.b,
        &[
            "--iface",
            RECEIVER_IF,
            "--csum-repair",
            "--attach",
            "tc",
            "--direction",
            "ingress",
        ],
    )
    .expect("pktguard run");
    let errors = lab.csum_errors().unwrap();
    let after = lab.echo(ECHO, DONE_WAIT).unwrap();
    assert!(after.is_ok(), "v6={v6}: with the guard: {after:?}");
    assert_eq!(
        lab.csum_errors().unwrap(),
        errors,
        "v6={v6}: checksum errors with the guard"
    );
    let json = stats_json(&lab.b);
    let repaired = stats_counter(&json, RECEIVER_IF, "csum", "tc-ingress", "outer_repaired");
    assert!(repaired > 0, "v6={v6}: nothing repaired: {json}");
    let (status, out) = guard.stop(libc::SIGTERM).unwrap();
    assert!(status.success(), "v6={v6}: {out:?}");
}

// (IPv6 underlay).
pktguard_tests::test_cases!(kernel_nat {
    kernel_nat_ipv4_underlay: false;
    kernel_nat_ipv6_underlay: true;
});

/// `pktguard lab csum` as an operator runs it: where the kernel has the NAT
/// bug it breaks the checksums with the bug itself and says so, elsewhere
/// with the test-only program, and says that; either way the verdict is OK.
/// Its report goes to the console as well (the guest's log keeps it).
#[test]
fn lab_csum_uses_the_real_bug_where_the_kernel_has_it() {
    use std::io::Write as _;
    let out = std::process::Command::new(pktguard_tests::pktguard_bin())
        .args(["lab", "csum"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::io::stderr().write_all(out.stdout.as_slice());
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict: OK"), "{stdout}");
    let said = if kernel_has_nat_bug() {
        "lacks ea64d8d6c675, so its own NAT"
    } else {
        "has the NAT fix (ea64d8d6c675): a test-only program"
    };
    assert!(stdout.contains(said), "{stdout}");
}
