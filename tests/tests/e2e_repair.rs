//! Incident 4 end to end: VXLAN between two namespaces, outer checksums
//! broken by a (simulated) second SNAT of a pre-5.7 kernel. Without the guard
//! the overlay connect fails and the receiver counts UDP checksum errors;
//! with `pktguard run --csum-repair` on the receiver's underlay the echo
//! completes and every mangled frame was repaired. Real corruption is left
//! alone and counted.

use std::time::Duration;

use guard_user::lab::repair::{RECEIVER_IF, VxlanLab};
use pktguard_tests::{Running, kernel_at_least, pktguard_in, stats_counter, stats_json};

const ECHO: usize = 1 << 20;
const FAIL_WAIT: Duration = Duration::from_secs(2);
const DONE_WAIT: Duration = Duration::from_secs(30);

fn incident4(v6: bool, mtu: u32, attach: &str, corrupt: bool) {
    let what = format!("v6={v6} mtu={mtu} attach={attach} corrupt={corrupt}");
    let lab = VxlanLab::new(v6, mtu, corrupt).expect("lab namespaces");
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
