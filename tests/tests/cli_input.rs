//! `pktguard run` as an operator meets it: bad input (flags, interface,
//! MTU, daemon configuration, missing kernel features) gets one clear line,
//! a non-zero exit and nothing attached.

use std::fs;

use guard_user::lab::netns::{self, VethEnd};
use pktguard_tests::cli::{IFACE, fails, host, leftovers};
use pktguard_tests::{Running, kernel_at_least, pktguard_in, run_ok};

#[test]
fn bad_input_gets_one_clear_line_and_nothing_attached() {
    let (ns, _peer) = host();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--iface", "nosuch0", "--mtu", "1440"],
            "\"nosuch0\" does not exist",
        ),
        (
            &[
                "run", "--iface", IFACE, "--iface", "nosuch0", "--mtu", "1440",
            ],
            "\"nosuch0\" does not exist",
        ),
        (
            &["run", "--iface", IFACE, "--mtu", "100"],
            "MTU 100 is out of range",
        ),
        (
            &["run", "--iface", IFACE, "--mtu", "70000"],
            "MTU 70000 is out of range",
        ),
        (
            &["run", "--iface", IFACE, "--tunnel-dev", "flannel.9"],
            "\"flannel.9\" does not exist",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--underlay-mtu",
                "600",
                "--encap",
                "vxlan",
            ],
            "out of range",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--attach",
                "xdp",
                "--direction",
                "egress",
                "--mtu",
                "1440",
            ],
            "XDP sees ingress only",
        ),
        (&["run", "--iface", IFACE], "--mtu"),
        (&["stats", "--iface", IFACE], "not guarded"),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--gso-guard",
                "drop",
                "--gso-min-size",
                "0",
            ],
            "at least 1",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--gso-min-size",
                "100",
                "--mtu",
                "1440",
            ],
            "--gso-guard",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--csum-repair",
                "--vxlan-port",
                "0",
            ],
            "not a port",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--csum-repair",
                "--peer-cidr",
                "10.0.0.0/40",
            ],
            "prefix length",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--csum-repair",
                "--direction",
                "egress",
            ],
            "received frames",
        ),
        (
            &[
                "run",
                "--iface",
                IFACE,
                "--vxlan-port",
                "4789",
                "--mtu",
                "1440",
            ],
            "--csum-repair",
        ),
    ];
    for (args, want) in cases {
        let (code, err) = fails(&ns, args);
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: stderr lacks {want:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains("error"),
            "{args:?}: first line is not the error: {err}"
        );
        // One line of ours; clap adds a usage line and a pointer to --help.
        assert!(
            err.trim().lines().count() <= 6,
            "{args:?}: not a short message: {err}"
        );
        assert!(
            leftovers(&ns).is_empty(),
            "{args:?} left something attached"
        );
    }
}

/// The daemon's bad input: one clear line (or one per error, with its line
/// and field), a failing exit, nothing attached.
#[test]
fn bad_daemon_input_is_refused_and_nothing_is_attached() {
    let (ns, _peer) = host();
    let dir = std::env::temp_dir().join(format!("pktguard-cfg-{}", netns::unique_tag()));
    fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let unknown = file(
        "unknown.toml",
        &format!("[interface.{IFACE}]\nmtu = 1440\nmsss = 1\n"),
    );
    let range = file("range.toml", &format!("[interface.{IFACE}]\nmtu = 99999\n"));
    let good = file("good.toml", &format!("[interface.{IFACE}]\nmtu = 1440\n"));
    // A port in use in the namespace, for --metrics-addr.
    let _busy = ns
        .run(|| Ok(std::net::TcpListener::bind("127.0.0.1:9555")?))
        .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "--config", "/nonexistent/pktguard.toml"],
            "No such file",
        ),
        (vec!["run", "--config", &unknown], "unknown.toml:3"),
        (
            vec!["run", "--config", &range],
            "range.toml:2: interface.g0.mtu",
        ),
        (
            vec!["run", "--config", &good, "--metrics-addr", "127.0.0.1:9555"],
            "serving metrics on 127.0.0.1:9555",
        ),
        (vec!["config", "check", &unknown], "msss"),
        (
            vec!["detach", "--iface", IFACE],
            "nothing of pktguard is pinned",
        ),
    ];
    for (args, want) in &cases {
        let (code, err) = fails(&ns, args);
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: stderr lacks {want:?}: {err}");
        assert!(
            leftovers(&ns).is_empty(),
            "{args:?} left something attached"
        );
    }
    let out = run_ok(
        &mut pktguard_in(&ns, &["config", "check", &good]),
        "config check",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 1 interface"));
    let _ = fs::remove_dir_all(&dir);
}

/// What the kernel lacks is said once at start, in words, whatever the
/// number of interfaces, and the guard works with the fallback: on 6.6+
/// nothing is missing; before, TCX (and on older kernels more) is named
/// once, and no verifier output reaches the operator.
#[test]
fn missing_kernel_features_are_reported_once_in_words() {
    let (ns, peer) = host();
    netns::veth(
        &VethEnd::new(&ns, "g2", &[], 1500),
        &VethEnd::new(&peer, "g3", &[], 1500),
    )
    .unwrap();
    let mut args = vec![
        "--iface", IFACE, "--iface", "g2", "--attach", "tc", "--mtu", "1440",
    ];
    // The GSO guard where the kernel can run it (5.7+; refused before, as
    // cli.rs asserts).
    if kernel_at_least(5, 7) {
        args.extend(["--gso-guard", "drop"]);
    }
    let run = Running::start(&ns, &args).unwrap();
    let (status, out) = run.stop(libc::SIGTERM).unwrap();
    assert!(status.success(), "{status}: {out:#?}");
    let expected = [
        ("has no TCX (Linux 6.6+)", !kernel_at_least(6, 6)),
        ("has no XDP links (Linux 5.9+)", !kernel_at_least(5, 9)),
        (
            "has no multi-buffer XDP (Linux 5.18+)",
            !kernel_at_least(5, 18),
        ),
    ];
    for (line, missing) in expected {
        let n = out.iter().filter(|l| l.contains(line)).count();
        assert_eq!(n, usize::from(missing), "{line:?} x{n}: {out:#?}");
    }
    for l in &out {
        assert!(
            !l.contains("verifier") && !l.contains("processed") && !l.contains("R1"),
            "verifier output shown: {l}"
        );
    }
    // Both interfaces guarded with what the kernel has.
    let attached = out.iter().filter(|l| l.contains(": attached ")).count();
    assert_eq!(attached, 2, "{out:#?}");
}
