//! `pktguard run` as an operator meets it: it leaves nothing behind on any
//! exit path, and bad input gets one clear line and a non-zero exit.

use std::{fs, path::Path};

use aya::programs::{SchedClassifier, TcAttachType};
use guard_common::{PIN_DIR, RUN_DIR};
use guard_user::lab::netns::{self, Netns, VethEnd};
use pktguard_tests::{Running, kernel_at_least, pktguard_bin, pktguard_in};

const IFACE: &str = "g0";

/// A namespace with a veth `g0` (its peer in a second namespace).
fn host() -> (Netns, Netns) {
    let tag = netns::unique_tag();
    let ns = Netns::new(&format!("pg-{tag}-host")).unwrap();
    let peer = Netns::new(&format!("pg-{tag}-peer")).unwrap();
    let end = |ns, name| VethEnd {
        ns,
        name,
        addrs: &[],
        mtu: 1500,
    };
    netns::veth(&end(&ns, IFACE), &end(&peer, "g1")).unwrap();
    (ns, peer)
}

/// Everything pktguard could have left on `IFACE` of `ns`, described.
fn leftovers(ns: &Netns) -> Vec<String> {
    let mut found = Vec::new();
    let link = ns.ip(&["link", "show", "dev", IFACE]).unwrap();
    if link.contains("xdp") {
        found.push(format!("XDP program: {link}"));
    }
    for dir in ["ingress", "egress"] {
        let filters = ns
            .exec(&["tc", "filter", "show", "dev", IFACE, dir])
            .unwrap();
        if !filters.trim().is_empty() {
            found.push(format!("tc {dir} filter: {filters}"));
        }
    }
    let qdisc = ns.exec(&["tc", "qdisc", "show", "dev", IFACE]).unwrap();
    if qdisc.contains("clsact") {
        found.push(format!("clsact qdisc: {qdisc}"));
    }
    // Kernels without TCX (before 6.6) show netlink filters above only.
    if pktguard_tests::has_tcx() {
        let tcx = ns
            .run(|| {
                let mut progs = Vec::new();
                for at in [TcAttachType::Ingress, TcAttachType::Egress] {
                    let (_, p) =
                        SchedClassifier::query_tcx(&guard_user::host::iface::ifname(IFACE)?, at)?;
                    progs.extend(p.iter().map(|i| format!("tcx {at:?}: prog {}", i.id())));
                }
                Ok(progs)
            })
            .unwrap();
        found.extend(tcx);
    }
    let inode = {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(ns.path()).unwrap().ino()
    };
    let suffix = format!("{IFACE}@{inode}");
    for dir in [PIN_DIR, RUN_DIR] {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&suffix) {
                    found.push(format!("{}", e.path().display()));
                }
            }
        }
    }
    found
}

fn stops_clean(attach: &str, signal: libc::c_int) {
    stops_clean_with(attach, signal, &["--mtu", "1440"]);
}

fn stops_clean_with(attach: &str, signal: libc::c_int, features: &[&str]) {
    let (ns, _peer) = host();
    let mut args = vec!["--iface", IFACE, "--attach", attach];
    args.extend_from_slice(features);
    if attach == "xdp" && features.contains(&"--csum-repair") && !kernel_at_least(5, 18) {
        // The repair at XDP needs multi-buffer XDP: refused in one line.
        let mut all = vec!["run"];
        all.extend_from_slice(&args);
        let (code, stderr) = fails(&ns, &all);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("needs Linux 5.18+"), "{stderr}");
        assert!(!stderr.contains("verifier"), "{stderr}");
        let left = leftovers(&ns);
        assert!(left.is_empty(), "left behind after a refusal: {left:?}");
        return;
    }
    let run = Running::start(&ns, &args).unwrap();
    let attached = leftovers(&ns);
    assert!(
        attached.len() >= 3,
        "{attach}: not attached as expected: {attached:?}"
    );
    let (status, out) = run.stop(signal).unwrap();
    assert!(status.success(), "{status}: {out:?}");
    assert!(out.iter().any(|l| l.contains("detaching")), "{out:?}");
    let left = leftovers(&ns);
    assert!(
        left.is_empty(),
        "{attach}: left behind after signal {signal}: {left:?}"
    );
}

#[test]
fn sigterm_leaves_nothing_tc() {
    stops_clean("tc", libc::SIGTERM);
}

#[test]
fn sigint_leaves_nothing_tc() {
    stops_clean("tc", libc::SIGINT);
}

#[test]
fn sigterm_leaves_nothing_xdp() {
    stops_clean("xdp", libc::SIGTERM);
}

#[test]
fn sigterm_leaves_nothing_with_both_features_tc() {
    stops_clean_with("tc", libc::SIGTERM, &["--mtu", "1440", "--csum-repair"]);
}

#[test]
fn sigterm_leaves_nothing_with_both_features_xdp() {
    stops_clean_with("xdp", libc::SIGTERM, &["--mtu", "1440", "--csum-repair"]);
}

#[test]
fn sigint_leaves_nothing_with_all_three_features_xdp() {
    stops_clean_with(
        "xdp",
        libc::SIGINT,
        &["--mtu", "1440", "--csum-repair", "--gso-guard", "drop"],
    );
}

#[test]
fn sigint_leaves_nothing_xdp_generic() {
    stops_clean("xdp-generic", libc::SIGINT);
}

/// Runs `pktguard ARGS` in `ns`; returns (exit code, stderr).
fn fails(ns: &Netns, args: &[&str]) -> (i32, String) {
    let out = pktguard_in(ns, args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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

#[test]
fn a_second_run_on_a_guarded_interface_is_refused() {
    let (ns, _peer) = host();
    let first =
        Running::start(&ns, &["--iface", IFACE, "--attach", "tc", "--mtu", "1440"]).unwrap();
    let (code, err) = fails(&ns, &["run", "--iface", IFACE, "--mtu", "1400"]);
    assert_ne!(code, 0);
    assert!(err.contains("already guarded"), "{err}");
    // The first guard is untouched by the refused second one.
    let out = pktguard_in(&ns, &["stats", "--json"]).output().unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"mss_v4\":1400"), "{json}");
    assert!(json.contains("\"tc-ingress\",\"tc-egress\""), "{json}");
    let (status, _) = first.stop(libc::SIGTERM).unwrap();
    assert!(status.success());
    assert!(leftovers(&ns).is_empty());
}

#[test]
fn unprivileged_run_is_refused_with_advice() {
    let (ns, _peer) = host();
    let net = format!("--net={}", ns.path().display());
    let bin = pktguard_bin();
    let out = std::process::Command::new("nsenter")
        .args([
            &net,
            "--",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(&bin)
        .args(["run", "--iface", IFACE, "--mtu", "1440"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
    assert!(Path::new(&bin).exists());
    assert!(leftovers(&ns).is_empty());
}

/// `pktguard run --drop-monitor` runs the monitor (pinned, host-wide);
/// `pktguard drops` reads it instead of attaching its own; stopping `run`
/// prints the most frequent drops and removes the pins. (Here, not with the
/// other drop tests: while it runs, every `pktguard drops` reads it.)
#[test]
fn drops_reads_the_monitor_of_run_drop_monitor() {
    let (ns, _peer) = host();
    let run = Running::start(&ns, &["--drop-monitor"]).unwrap();
    assert!(Path::new(guard_common::PIN_DROPS_DIR).exists());
    ns.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
        for _ in 0..20 {
            let _ = s.send_to(b"x", "127.0.0.1:9");
        }
        Ok(())
    })
    .unwrap();
    // Drop reasons arrived in 5.17: before, rows have the location only.
    let reasons = kernel_at_least(5, 17);
    let reason = if reasons { "NO_SOCKET" } else { "-" };
    let mut args = vec![
        "drops",
        "--json",
        "--count",
        "1",
        "--interval",
        "100ms",
        "--iface",
        "lo",
    ];
    if reasons {
        args.extend(["--reason", "NO_SOCKET"]);
    }
    let out = pktguard_in(&ns, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reading the monitor of pktguard run"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let rows = doc["drops"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["reason"] == reason
            && r["function"] == "__udp4_lib_rcv"
            && r["iface"] == "lo"
            && r["total"].as_u64().unwrap() >= 20),
        "{doc}"
    );
    let (status, output) = run.stop(libc::SIGTERM).unwrap();
    assert!(status.success(), "{output:?}");
    assert!(
        output
            .iter()
            .any(|l| l.contains("drop monitor:") && l.contains("drops counted")),
        "{output:?}"
    );
    assert!(!Path::new(guard_common::PIN_DROPS_DIR).exists());
    assert!(!Path::new(guard_common::DROPS_LOCK).exists());
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
    let out = pktguard_in(&ns, &["config", "check", &good])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
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
        &VethEnd {
            ns: &ns,
            name: "g2",
            addrs: &[],
            mtu: 1500,
        },
        &VethEnd {
            ns: &peer,
            name: "g3",
            addrs: &[],
            mtu: 1500,
        },
    )
    .unwrap();
    let run = Running::start(
        &ns,
        &[
            "--iface",
            IFACE,
            "--iface",
            "g2",
            "--attach",
            "tc",
            "--mtu",
            "1440",
            "--gso-guard",
            "drop",
        ],
    )
    .unwrap();
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
