//! `pktguard run` as an operator meets it: it leaves nothing behind on any
//! exit path (signals, a refused second run, no privileges, the drop
//! monitor). Bad input is in `cli_input.rs`.

use std::path::Path;

use pktguard_tests::cli::{IFACE, fails, host, leftovers};
use pktguard_tests::{Running, kernel_at_least, pktguard_bin, pktguard_in};

fn stops_clean(attach: &str, signal: libc::c_int) {
    stops_clean_with(attach, signal, &["--mtu", "1440"]);
}

fn stops_clean_with(attach: &str, signal: libc::c_int, features: &[&str]) {
    let (ns, _peer) = host();
    let mut args = vec!["--iface", IFACE, "--attach", attach];
    args.extend_from_slice(features);
    // The GSO guard needs __sk_buff.gso_size (5.7), the repair at XDP
    // multi-buffer XDP (5.18): where the kernel lacks one, `run` refuses in
    // one line and leaves nothing.
    let refusal = if features.contains(&"--gso-guard") && !kernel_at_least(5, 7) {
        Some("lacks (it exists since 5.7)")
    } else if attach == "xdp" && features.contains(&"--csum-repair") && !kernel_at_least(5, 18) {
        Some("needs Linux 5.18+")
    } else {
        None
    };
    if let Some(want) = refusal {
        let mut all = vec!["run"];
        all.extend_from_slice(&args);
        let (code, stderr) = fails(&ns, &all);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
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
    first.stop_ok();
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
    let mut args = vec!["drops", "--json", "--count", "1", "--interval", "100ms"];
    // The device is read through the kernel's BTF: without it (4.19)
    // --iface is refused, and rows carry no device.
    use guard_user::host::kernel::{Feature, has};
    let devices = has(Feature::KernelBtf);
    if devices {
        args.extend(["--iface", "lo"]);
    } else {
        let (code, err) = fails(&ns, &["drops", "--count", "1", "--iface", "lo"]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("needs the kernel's BTF"), "{err}");
    }
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
            && (if devices {
                r["iface"] == "lo"
            } else {
                r["ifindex"] == 0
            })
            && r["total"].as_u64().unwrap() >= 20),
        "{doc}"
    );
    let output = run.stop_ok();
    assert!(
        output
            .iter()
            .any(|l| l.contains("drop monitor:") && l.contains("drops counted")),
        "{output:?}"
    );
    assert!(!Path::new(guard_common::PIN_DROPS_DIR).exists());
    assert!(!Path::new(guard_common::DROPS_LOCK).exists());
}
