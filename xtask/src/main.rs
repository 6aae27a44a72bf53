//! What cargo alone cannot do: install the toolchain pieces, build the
//! eBPF object into the binary, run the privileged tests, the lab and the
//! benchmarks. Every command first runs the idempotent set-up.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod vm;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "pktguard's build, test, lab and bench driver"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (Debian packages, nightly rust-src, bpf-linker); skip what is there.
    Setup,
    /// Set up, then build target/release/pktguard with the eBPF object embedded.
    Build,
    /// Set up, build, and run the whole test suite (host tests, then privileged tests).
    Test {
        /// Only run tests whose name contains this string.
        filter: Option<String>,
    },
    /// Set up, build, and rebuild incidents 3, 1 and 4 in namespaces: `pktguard lab mss`,
    /// `pktguard lab gso` and `pktguard lab csum`.
    Lab,
    /// Set up, build, and run the verifier and program-table tests on Debian's 5.10, 6.1 and
    /// 6.12 kernels under qemu (TCG). `cargo xtask test` runs it after the host suite.
    VmTest {
        /// 5.10, 6.1, 6.12 or all.
        #[arg(long, default_value = "all")]
        kernel: String,
        /// Only these test binaries (of the guest list), e.g. `cli,daemon`.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Set up, build, and measure: `mss`, `csum`, `gso` (ns per packet with
    /// BPF_PROG_TEST_RUN), `drops` (the drop monitor's cost on a drop flood),
    /// `rate` (forwarded rates with trafgen against the kernel's clamps) or `all`.
    Bench {
        /// Which benchmark.
        #[arg(default_value = "mss")]
        which: String,
    },
}

/// Debian packages the build, the tests and the lab need.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libclang-22-dev",
    "libpolly-22-dev",
    "build-essential",
    "iproute2",
    "ethtool",
    "nftables",
    "iptables",
    "tcpdump",
    "netsniff-ng",
    "bpftool",
    "iperf3",
    "python3-scapy",
    "util-linux",
    "yamllint",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Setup => setup(),
        Cmd::Build => {
            setup()?;
            build()
        }
        Cmd::Test { filter } => {
            setup()?;
            test(filter.as_deref())
        }
        Cmd::Lab => {
            setup()?;
            build()?;
            privileged(Command::new("target/release/pktguard").args(["lab", "mss"]))?;
            privileged(Command::new("target/release/pktguard").args(["lab", "gso"]))?;
            privileged(Command::new("target/release/pktguard").args(["lab", "csum"]))
        }
        Cmd::VmTest { kernel, only } => {
            setup()?;
            build()?;
            let (p, f) = vm_tests(&kernel, &only, &privileged_test_binaries()?)?;
            println!("vm tests: {p} passed, {f} failed");
            if f > 0 {
                bail!("{f} test(s) failed in the guests");
            }
            Ok(())
        }
        Cmd::Bench { which } => {
            setup()?;
            build()?;
            run(Command::new("cargo").args([
                "build",
                "--release",
                "-p",
                "pktguard-tests",
                "--bin",
                "bench",
            ]))?;
            privileged(Command::new("target/release/bench").arg(which))
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command as root: directly when we are root, else through sudo.
fn privileged(cmd: &mut Command) -> Result<()> {
    if is_root() {
        return run(cmd);
    }
    let mut sudo = Command::new("sudo");
    sudo.arg("--preserve-env=PKTGUARD_BIN,RUST_BACKTRACE")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    run(&mut sudo)
}

fn setup() -> Result<()> {
    let started = Instant::now();
    let debian = Path::new("/etc/debian_version").exists() && which("dpkg-query");
    let missing: Vec<&str> = if debian {
        PACKAGES
            .iter()
            .copied()
            .filter(|p| !dpkg_installed(p))
            .collect()
    } else {
        Vec::new()
    };
    if !debian {
        println!(
            "setup: not a Debian system. Install these (or your distribution's equivalents), then run again:\n  \
             LLVM 22 development files (llvm, clang, polly), iproute2, ethtool, nftables, iptables, \
             tcpdump, netsniff-ng (trafgen), bpftool, iperf3, scapy, util-linux (nsenter, setpriv)\n  \
             rustup toolchain install nightly --component rust-src\n  \
             LLVM_PREFIX=<llvm-22 prefix> cargo install bpf-linker --version {BPF_LINKER_VERSION} --no-default-features --features llvm-22"
        );
    } else if missing.is_empty() {
        println!("setup: Debian packages present");
    } else {
        println!("setup: installing {}", missing.join(" "));
        privileged(Command::new("apt-get").args(["update", "-qq"]))?;
        privileged(
            Command::new("env")
                .args([
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "install",
                    "-y",
                    "-qq",
                ])
                .args(&missing),
        )?;
    }

    let nightly = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output();
    match nightly {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src") => {
            println!("setup: nightly with rust-src present");
        }
        Ok(_) => {
            println!("setup: installing nightly rust-src");
            run(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
        }
        Err(e) => bail!("rustup is needed for the nightly eBPF build: {e}"),
    }

    let linker = Command::new("bpf-linker").arg("--version").output();
    match linker {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION) => {
            println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        }
        _ if !debian => bail!("setup: bpf-linker {BPF_LINKER_VERSION} is missing (see above)"),
        _ => {
            println!(
                "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)"
            );
            run(Command::new("cargo")
                .env("LLVM_PREFIX", LLVM_PREFIX)
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features", "llvm-22"]))?;
        }
    }
    println!("setup: done in {:.1?}", started.elapsed());
    Ok(())
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn build() -> Result<()> {
    run(Command::new("cargo").args(["build", "--release", "-p", "guard-user"]))?;
    println!("build: target/release/pktguard");
    Ok(())
}

/// Passed and failed counts from libtest's `test result:` lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn read(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs a test command, echoing its output and counting its results.
fn run_tests(cmd: &mut Command, tally: &mut Tally) -> Result<bool> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        tally.read(&line);
    }
    Ok(child.wait()?.success())
}

/// Builds the privileged test binaries; their paths.
fn privileged_test_binaries() -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args([
            "test",
            "-p",
            "pktguard-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the privileged tests failed");
    }
    let executables: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"test\":true"))
        .filter_map(|l| {
            let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            Some(l[at..].split('"').next()?.to_string())
        })
        .collect();
    if executables.is_empty() {
        bail!("no privileged test binary was built");
    }
    Ok(executables)
}

/// The guest tests (vm::GUEST_TESTS) on `kernel` ("all" or one), from the
/// privileged test binaries `exes` (built, as is target/release/pktguard).
fn vm_tests(kernel: &str, only: &[String], exes: &[String]) -> Result<(u32, u32)> {
    let wanted: Vec<_> = vm::GUEST_TESTS
        .iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| o == name))
        .collect();
    if wanted.is_empty() {
        bail!(
            "--only names none of the guest tests: {:?}",
            vm::GUEST_TESTS.map(|(n, _)| n)
        );
    }
    let binaries: Vec<(String, PathBuf)> = wanted
        .iter()
        .filter_map(|(name, _)| {
            let exe = exes.iter().find(|e| {
                Path::new(e)
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&format!("{name}-")))
            })?;
            Some((name.to_string(), PathBuf::from(exe)))
        })
        .collect();
    if binaries.len() != wanted.len() {
        bail!("missing guest test binaries: {:?}", vm::GUEST_TESTS);
    }
    let pktguard = std::fs::canonicalize("target/release/pktguard")?;
    // No privileges needed: apt works on a private state directory, qemu
    // under TCG, and the guest is root in itself.
    vm::run(kernel, &pktguard, &binaries)
}

fn test(filter: Option<&str>) -> Result<()> {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut ok = true;
    let filter_args: Vec<&str> = filter.into_iter().collect();

    println!("== host tests (pure logic, no privileges)");
    ok &= run_tests(
        Command::new("cargo")
            .args([
                "test",
                "-p",
                "guard-common",
                "-p",
                "guard-user",
                "-p",
                "xtask",
                "--",
            ])
            .args(&filter_args),
        &mut tally,
    )?;
    ok &= run_tests(
        Command::new("cargo")
            .args(["test", "-p", "guard-ebpf", "--lib", "--"])
            .args(&filter_args),
        &mut tally,
    )?;

    println!("== building pktguard and the privileged tests");
    build()?;
    let executables = privileged_test_binaries()?;
    let bin = std::fs::canonicalize("target/release/pktguard")?;
    println!("== privileged tests (BPF in the running kernel, namespaces)");
    for exe in &executables {
        let mut cmd = if is_root() {
            Command::new(exe)
        } else {
            let mut c = Command::new("sudo");
            c.arg("--preserve-env=PKTGUARD_BIN,RUST_BACKTRACE").arg(exe);
            c
        };
        cmd.env("PKTGUARD_BIN", &bin).args(&filter_args);
        ok &= run_tests(&mut cmd, &mut tally)?;
    }
    if filter.is_none() {
        println!("== the same programs on Debian's 5.10, 6.1 and 6.12 kernels (qemu, TCG)");
        match vm_tests("all", &[], &executables) {
            Ok((p, f)) => {
                tally.passed += u64::from(p);
                tally.failed += u64::from(f);
            }
            Err(e) => {
                println!("vm tests: {e:#}");
                ok = false;
            }
        }
    }
    println!(
        "== {} in {:.0?}",
        if ok && tally.failed == 0 {
            "all tests passed"
        } else {
            "FAILURES"
        },
        started.elapsed()
    );
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    if !ok || tally.failed > 0 {
        bail!("{} test(s) failed", tally.failed.max(1));
    }
    Ok(())
}
