//! `cargo xtask vm-test`: the privileged suite on the kernels operators
//! run, under qemu. Debian's cloud kernels (5.10 from bullseye, 6.1 from
//! bookworm, 6.12 from bookworm-backports) are fetched with apt through a
//! private sources list (the system's is not touched) and cached under
//! target/vm. Kernels Debian no longer ships (4.19.90, the incident kernel)
//! come built, every driver built in, from a kernels folder
//! ($PKTGUARD_KERNELS, or `shared/kernels` beside the checkout) and join the
//! matrix where it holds them. Each kernel's initramfs is a common part
//! (busybox, the tools the tests call with their libraries, pktguard and the
//! test binaries, debug info stripped, and the init) followed by that
//! kernel's modules, decompressed, with an order to load them in. qemu boots
//! each under TCG (`-cpu max,-cx16`: 6.12 crashes under TCG otherwise;
//! /dev/kvm here is a nested hypervisor that cannot boot them), as many at
//! once as the machine has CPUs; the init prints each binary's libtest
//! output and `VMTEST` lines.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

mod guest;
mod kernels;
mod qemu;
mod share;

use guest::*;
use kernels::*;
use qemu::*;
pub use share::{GUEST_TESTS, check_names};

/// Where a kernel of the matrix comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// Debian's linux-image-cloud-amd64 of this suite, with its modules.
    Debian(&'static str),
    /// `DIR/bzImage` of the kernels folder, every driver built in.
    Built(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Source::Debian(suite) => write!(f, "Debian {suite}"),
            Source::Built(dir) => write!(f, "kernels/{dir}"),
        }
    }
}

/// The kernels, oldest first: the incident kernel, then Debian's.
pub const KERNELS: [(&str, Source); 4] = [
    ("4.19", Source::Built("4.19.90")),
    ("5.10", Source::Debian("bullseye")),
    ("6.1", Source::Debian("bookworm")),
    ("6.12", Source::Debian("bookworm-backports")),
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

/// The kernel names, for messages.
pub fn kernel_names() -> String {
    KERNELS.map(|(k, _)| k).join(", ")
}

/// Runs the guest tests on `which` kernels ("all" or one name), as many
/// guests at once as there are CPUs.
pub fn run(which: &str, pktguard: &Path, binaries: &[(String, PathBuf)]) -> Result<(u32, u32)> {
    std::fs::create_dir_all("target/vm")?;
    let vm = std::fs::canonicalize("target/vm")?;
    let kernels: Vec<_> = KERNELS
        .iter()
        .filter(|(k, _)| which == "all" || which == *k)
        .collect();
    if kernels.is_empty() {
        bail!("unknown kernel {which:?}: {} or all", kernel_names());
    }
    let common = common_cpio(&vm, pktguard, binaries)?;
    let mut guests = Vec::new();
    for (name, source) in &kernels {
        let vmlinuz = match source {
            Source::Debian(suite) => kernel(&vm, name, &fetch(&vm, suite)?)?,
            Source::Built(dir) => match built_kernel(dir)? {
                Ok(k) => k,
                // Asked for by name: an error; in "all": said, and left out.
                Err(why) if which != "all" => bail!("kernel {name}: {why}"),
                Err(why) => {
                    println!("== kernel {name}: left out of this run: {why}");
                    continue;
                }
            },
        };
        let names: Vec<&str> = binaries.iter().map(|(n, _)| n.as_str()).collect();
        let initrd = initramfs(&vm, name, *source, &common, &names)?;
        guests.push(Guest {
            name,
            source: *source,
            vmlinuz,
            initrd,
        });
    }
    let results = boot_all(&vm, &guests);
    let (mut passed, mut failed) = (0, 0);
    for (
        Guest {
            name,
            source: suite,
            ..
        },
        console,
        took,
    ) in results
    {
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
        for (binary, last) in binaries_out_of_time(&console.text) {
            println!(
                "== kernel {name}: {binary} TIMED OUT: killed at its {BINARY_LIMIT_SECS} s limit \
                 (counted as 1 failure); last test: {}",
                last.unwrap_or("none")
            );
        }
        passed += p;
        failed += f;
    }
    Ok((passed, failed))
}

/// The test binaries the guest killed at BINARY_LIMIT_SECS (`timeout -s
/// KILL` exits 137), each with the last test it started.
pub fn binaries_out_of_time(console: &str) -> Vec<(&str, Option<&str>)> {
    let mut found = Vec::new();
    let mut last = None;
    for line in console.lines().map(str::trim) {
        if line.starts_with("test ") {
            last = Some(line);
        } else if let Some(rest) = line.strip_prefix("VMTEST ") {
            if rest.ends_with(" start") {
                last = None;
            } else if let Some((binary, code)) = rest.split_once(" exit ")
                && code.trim() == "137"
            {
                found.push((binary, last));
            }
        }
    }
    found
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
        assert_eq!(
            super::binaries_out_of_time(killed),
            [("cli", Some("test c ..."))]
        );
        assert!(super::binaries_out_of_time(console).is_empty());
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
