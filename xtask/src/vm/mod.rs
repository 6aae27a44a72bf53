//! `cargo xtask vm-test`: the privileged suite on the kernels operators
//! run, under qemu. Debian's cloud kernels (5.10 from bullseye, 6.1 from
//! bookworm, 6.12 from bookworm-backports) are fetched with apt through a
//! private sources list (the system's is not touched) and cached under
//! target/vm. Each kernel's initramfs is a common part (busybox, the tools
//! the tests call with their libraries, pktguard and the test binaries,
//! debug info stripped, and the init) followed by that kernel's modules,
//! decompressed, with an order to load them in. qemu boots each under TCG
//! (`-cpu max,-cx16`: 6.12 crashes under TCG otherwise; /dev/kvm here is a
//! nested hypervisor that cannot boot them), all at once; the init prints
//! each binary's libtest output and `VMTEST` lines.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

mod guest;
mod kernels;
mod qemu;

use guest::*;
use kernels::*;
use qemu::*;

/// The kernels: (name, Debian suite).
pub const KERNELS: [(&str, &str); 3] = [
    ("5.10", "bullseye"),
    ("6.1", "bookworm"),
    ("6.12", "bookworm-backports"),
];

/// The privileged test binaries that run inside the guests, with libtest
/// filters (none: all of the binary's tests).
pub const GUEST_TESTS: [(&str, &[&str]); 13] = [
    ("verifier", &[]),
    ("prog_mss", &[]),
    ("prog_gso", &[]),
    ("prog_repair", &[]),
    ("e2e_mss", &[]),
    // Both underlays, both hooks, jumbo frames and corruption, in four of
    // the eight combinations (the host runs all eight).
    (
        "e2e_repair",
        &[
            "ipv4_underlay_tc",
            "ipv6_underlay_xdp",
            "jumbo_underlay_xdp",
            "real_corruption_is_left_alone_tc",
        ],
    ),
    ("e2e_gso", &[]),
    ("e2e_drops", &[]),
    ("cli", &[]),
    ("cli_input", &[]),
    ("daemon", &[]),
    ("doctor", &[]),
    ("doctor_vxlan", &[]),
];

/// A guest that prints nothing for this long is stuck (a test prints a
/// line at its start and at its end; the slowest single test under TCG on a
/// loaded machine takes about 2 minutes).
const STALL_LIMIT: Duration = Duration::from_secs(480);
/// The whole guest, however busy: about 3x the slowest guest's time on a
/// quiet 2-core machine, for a machine shared with other work.
const BOOT_LIMIT: Duration = Duration::from_secs(2400);
/// One test binary inside the guest (busybox `timeout`, guest time): a
/// hung binary is killed and reported, and the next one runs.
const BINARY_LIMIT_SECS: u32 = 900;

/// The stdout of `cmd` (which must succeed), its stderr shown.
fn out(cmd: &mut Command) -> Result<String> {
    crate::stdout_of(cmd, Stdio::inherit())
}

/// Runs the guest tests on `which` kernels ("all" or one name), every
/// guest at once.
pub fn run(which: &str, pktguard: &Path, binaries: &[(String, PathBuf)]) -> Result<(u32, u32)> {
    std::fs::create_dir_all("target/vm")?;
    let vm = std::fs::canonicalize("target/vm")?;
    let kernels: Vec<_> = KERNELS
        .iter()
        .filter(|(k, _)| which == "all" || which == *k)
        .collect();
    if kernels.is_empty() {
        bail!("unknown kernel {which:?}: 5.10, 6.1, 6.12 or all");
    }
    let common = common_cpio(&vm, pktguard, binaries)?;
    let mut guests = Vec::new();
    for (name, suite) in &kernels {
        let deb = fetch(&vm, suite)?;
        let vmlinuz = kernel(&vm, name, &deb)?;
        let initrd = initramfs(&vm, name, &common)?;
        guests.push((*name, *suite, vmlinuz, initrd));
    }
    // All at once, even on fewer CPUs: each guest is one TCG thread, and
    // a guest left alone at the end would leave the other CPUs idle.
    let results: Vec<_> = std::thread::scope(|s| {
        let running: Vec<_> = guests
            .iter()
            .map(|(name, suite, vmlinuz, initrd)| {
                let log = vm.join(format!("console-{name}.log"));
                s.spawn(move || {
                    let started = Instant::now();
                    let console = boot(vmlinuz, initrd, &log);
                    (*name, *suite, console, started.elapsed())
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("a guest's thread"))
            .collect()
    });
    let (mut passed, mut failed) = (0, 0);
    for (name, suite, console, took) in results {
        let console = match console {
            Ok(c) => c,
            Err(e) => {
                println!("== kernel {name} ({suite}): FAILED: {e:#}");
                failed += 1;
                continue;
            }
        };
        let (p, f) = tally(&console.text, binaries.len());
        for line in console
            .text
            .lines()
            .filter(|l| l.starts_with("test ") || l.contains("VMTEST") || l.contains("panicked"))
        {
            println!("  [{name}] {}", line.trim_end());
        }
        let log = format!("target/vm/console-{name}.log");
        match console.stuck {
            None => println!(
                "== kernel {name} ({suite}): {p} passed, {f} failed in {took:.0?}{}",
                if f > 0 {
                    format!(" (console: {log})")
                } else {
                    String::new()
                }
            ),
            Some(stuck) => println!(
                "== kernel {name} ({suite}): TIMED OUT ({}) after {took:.0?}, {p} passed, {} failed \
                 before it; last step: {}; console: {log}",
                match stuck {
                    Stuck::Stalled => format!("no console output for {STALL_LIMIT:?}"),
                    Stuck::OutOfTime => format!("still running at {BOOT_LIMIT:?}"),
                },
                // tally counts the unfinished run itself as one failure.
                f.saturating_sub(1),
                last_step(&console.text).unwrap_or("none (the kernel did not start the init)")
            ),
        }
        passed += p;
        failed += f;
    }
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tally_reads_libtest_summaries() {
        let console = "VMTEST kernel 6.1\ntest a ... ok\ntest result: ok. 3 passed; 0 failed; 0 ignored\nVMTEST verifier exit 0\n\
                       test result: FAILED. 1 passed; 2 failed; 0 ignored\nVMTEST prog_mss exit 101\nVMTEST done\n";
        assert_eq!(super::tally(console, 2), (4, 2));
        assert_eq!(super::tally("VMTEST kernel 6.1\n", 2), (0, 1));
        // Killed by its time limit after two tests passed: one failure.
        let killed = "VMTEST cli start\ntest a ... ok\ntest b ... ok\ntest c ... \nVMTEST cli exit 137\nVMTEST done\n";
        assert_eq!(super::tally(killed, 1), (0, 1));
    }

    #[test]
    fn last_step_names_the_test_that_was_running() {
        let console =
            "VMTEST kernel 6.1\nVMTEST cli start\ntest a ... ok\ntest b ... \n[  9.1] veth0: up\n";
        assert_eq!(super::last_step(console), Some("test b ..."));
        assert_eq!(super::last_step("Booting\n"), None);
    }

    #[test]
    fn module_depends_reads_modinfo() {
        let ko = b"\x7fELF...license=GPL\0depends=udp_tunnel,ip6_udp_tunnel\0intree=Y\0";
        assert_eq!(
            super::module_depends(ko),
            vec!["udp_tunnel".to_string(), "ip6_udp_tunnel".to_string()]
        );
        assert!(super::module_depends(b"license=GPL\0depends=\0").is_empty());
        assert!(super::module_depends(b"no modinfo").is_empty());
        assert_eq!(super::module_name("nf-tables.ko.xz"), "nf_tables");
    }
}
