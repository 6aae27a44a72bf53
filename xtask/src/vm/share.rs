//! Which privileged tests each guest runs. A test whose claim is about the
//! kernel (the verifier, a hook, a helper, a kernel's own bug, how an
//! attachment is made and undone) runs on every kernel of the matrix. A
//! test whose claim is about pktguard's userspace (parsing arguments,
//! a signal's handling, printing) or one the guests prove another way runs
//! on the host, and at most on 4.19, the oldest kernel, as a sample. The
//! host runs every test whatever this says. Under TCG a guest spends 4 to
//! 16 s on each test: the matrix is most of the CI time.

use anyhow::{Result, bail};

/// Where a test the guests do not all run runs instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// On the host only.
    HostOnly,
    /// On the host and in this guest of the matrix only.
    AlsoOn(&'static str),
}

/// The oldest kernel of the matrix, where the userspace samples run.
const OLDEST: &str = "4.19";

/// The privileged test binaries that run inside the guests, each with the
/// tests not every guest runs (libtest names, exact) and why not.
pub const GUEST_TESTS: [(&str, &[(&str, Runs)]); 13] = [
    (
        "verifier",
        // A search of the release binary's bytes: no kernel in it.
        &[(
            "the_release_binary_carries_no_bench_program",
            Runs::HostOnly,
        )],
    ),
    ("prog_mss", &[]),
    ("prog_gso", &[]),
    ("prog_repair", &[]),
    (
        "e2e_mss",
        &[
            // The guests have IPIP and run the incident on tunl0; the
            // host, which may not, runs it on the veth lab.
            ("incident3_tunnel_dev", Runs::HostOnly),
            // --tunnel-dev reads the device's MTU from netlink, the same
            // attribute on every kernel; --mtu runs on all of them.
            ("incident3_ipip_tunl0_tunnel_dev", Runs::AlsoOn(OLDEST)),
        ],
    ),
    (
        "e2e_repair",
        // Both underlays, both hooks, jumbo frames and corruption, in four
        // of the eight combinations.
        &[
            ("ipv4_underlay_xdp", Runs::HostOnly),
            ("ipv6_underlay_tc", Runs::HostOnly),
            ("jumbo_underlay_tc", Runs::HostOnly),
            ("real_corruption_is_left_alone_xdp", Runs::HostOnly),
        ],
    ),
    ("e2e_gso", &[]),
    (
        "e2e_drops",
        &[("bad_drops_arguments_are_refused", Runs::AlsoOn(OLDEST))],
    ),
    (
        "cli",
        // Every guest detaches each attachment kind once, with every
        // feature; which signal asked for it is pktguard's business.
        &[
            ("sigterm_leaves_nothing_tc", Runs::AlsoOn(OLDEST)),
            ("sigint_leaves_nothing_tc", Runs::AlsoOn(OLDEST)),
            ("sigterm_leaves_nothing_xdp", Runs::AlsoOn(OLDEST)),
            (
                "sigterm_leaves_nothing_with_both_features_xdp",
                Runs::AlsoOn(OLDEST),
            ),
        ],
    ),
    (
        "cli_input",
        &[
            (
                "bad_input_gets_one_clear_line_and_nothing_attached",
                Runs::AlsoOn(OLDEST),
            ),
            (
                "bad_daemon_input_is_refused_and_nothing_is_attached",
                Runs::AlsoOn(OLDEST),
            ),
        ],
    ),
    (
        "daemon",
        // Userspace over the maps: the reload and the metrics.
        &[
            (
                "sighup_applies_a_new_mtu_through_the_maps_and_rejects_a_broken_file",
                Runs::AlsoOn(OLDEST),
            ),
            ("metrics_match_stats", Runs::AlsoOn(OLDEST)),
        ],
    ),
    ("doctor", &[]),
    ("doctor_vxlan", &[]),
];

/// The libtest arguments of `binary` in the guest of `kernel`: `--exact`
/// and a `--skip` for each test that guest leaves out.
pub fn guest_args(binary: &str, kernel: &str) -> Vec<String> {
    let Some((_, except)) = GUEST_TESTS.iter().find(|(b, _)| *b == binary) else {
        return Vec::new();
    };
    let mut args = vec!["--exact".to_string()];
    for (test, runs) in except.iter() {
        if !matches!(runs, Runs::AlsoOn(k) if *k == kernel) {
            args.extend(["--skip".to_string(), test.to_string()]);
        }
    }
    args
}

/// Every test GUEST_TESTS names is one of the binary's (`listed`: its
/// `--list --format terse`): a renamed test would otherwise run everywhere,
/// or its skip would silently match nothing.
pub fn check_names(binary: &str, listed: &str) -> Result<()> {
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    let Some((_, except)) = GUEST_TESTS.iter().find(|(b, _)| *b == binary) else {
        return Ok(());
    };
    for (test, _) in except.iter() {
        if !names.contains(test) {
            bail!("GUEST_TESTS names {binary}::{test}, which is not one of its tests");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guest_skips_what_it_does_not_run() {
        assert_eq!(guest_args("prog_mss", "6.1"), ["--exact"]);
        assert!(guest_args("bench_smoke", "6.1").is_empty());
        let old = guest_args("e2e_mss", "4.19");
        assert_eq!(old, ["--exact", "--skip", "incident3_tunnel_dev"]);
        let new = guest_args("e2e_mss", "6.12");
        assert_eq!(
            new,
            [
                "--exact",
                "--skip",
                "incident3_tunnel_dev",
                "--skip",
                "incident3_ipip_tunl0_tunnel_dev"
            ]
        );
    }

    #[test]
    fn the_kernels_named_are_the_matrix() {
        for (binary, except) in GUEST_TESTS {
            for (test, runs) in except {
                if let Runs::AlsoOn(k) = runs {
                    assert!(
                        super::super::KERNELS.iter().any(|(name, _)| name == k),
                        "{binary}::{test}: {k} is not a kernel of the matrix"
                    );
                }
            }
        }
    }

    #[test]
    fn a_name_that_is_not_a_test_is_refused() {
        let listed = "incident3_tunnel_dev: test\nincident3_ipip_tunl0_tunnel_dev: test\n\n2 tests, 0 benchmarks\n";
        assert!(check_names("e2e_mss", listed).is_ok());
        let renamed = "incident3_tunnel_dev: test\n";
        let err = check_names("e2e_mss", renamed).unwrap_err().to_string();
        assert!(err.contains("incident3_ipip_tunl0_tunnel_dev"), "{err}");
    }
}
