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

mod pin;
mod setup;
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
    /// Install what is missing of the pinned pieces (Debian packages, the Rust toolchain of
    /// rust-toolchain.toml, the eBPF nightly of guard-ebpf/rust-toolchain.toml with rust-src,
    /// bpf-linker against LLVM 22), skip what is there, then check that the nightly's LLVM is
    /// bpf-linker's and that a BPF object links.
    Setup {
        /// Only what building `pktguard` needs (no test, lab or benchmark packages).
        #[arg(long)]
        build_only: bool,
    },
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
    /// Set up, build, and run the guest suite (verifier, program tables, e2e, cli, daemon,
    /// doctor) on the incident kernel 4.19 (from the kernels folder, where it is) and Debian's
    /// 5.10, 6.1 and 6.12 under qemu (TCG). `cargo xtask test` runs it after the host suite.
    VmTest {
        /// 4.19, 5.10, 6.1, 6.12 or all.
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One line per failure (an anyhow Result from main would print a
    // backtrace wherever RUST_BACKTRACE is set).
    match xtask(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask(cli: Cli) -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Setup { build_only } => setup::setup(
            &root,
            if build_only {
                setup::Scope::Build
            } else {
                setup::Scope::All
            },
        ),
        Cmd::Build => {
            setup::setup(&root, setup::Scope::All)?;
            build()
        }
        Cmd::Test { filter } => {
            setup::setup(&root, setup::Scope::All)?;
            test(filter.as_deref())
        }
        Cmd::Lab => {
            setup::setup(&root, setup::Scope::All)?;
            build()?;
            privileged(Command::new("target/release/pktguard").args(["lab", "mss"]))?;
            privileged(Command::new("target/release/pktguard").args(["lab", "gso"]))?;
            privileged(Command::new("target/release/pktguard").args(["lab", "csum"]))
        }
        Cmd::VmTest { kernel, only } => {
            setup::setup(&root, setup::Scope::All)?;
            build()?;
            let (p, f) = vm_tests(&kernel, &only, &privileged_test_binaries()?)?;
            println!("vm tests: {p} passed, {f} failed");
            if f > 0 {
                bail!("{f} test(s) failed in the guests");
            }
            Ok(())
        }
        Cmd::Bench { which } => {
            setup::setup(&root, setup::Scope::All)?;
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
/// The stdout of `cmd`, which must succeed; its stderr goes to `stderr`.
fn stdout_of(cmd: &mut Command, stderr: Stdio) -> Result<String> {
    let o = cmd
        .stderr(stderr)
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", o.status);
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

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
    for (name, exe) in &binaries {
        let listed = stdout_of(
            Command::new(exe).args(["--list", "--format", "terse"]),
            Stdio::inherit(),
        )?;
        vm::check_names(name, &listed)?;
    }
    let pktguard = std::fs::canonicalize("target/release/pktguard")?;
    // No privileges needed: apt works on a private state directory, qemu
    // under TCG, and the guest is root in itself.
    vm::run(kernel, &pktguard, &binaries)
}

/// Whether the running kernel has the IPIP driver (built in, loaded, or
/// loadable).
fn host_has_ipip() -> bool {
    Path::new("/sys/module/ipip").exists()
        || Command::new("modprobe")
            .args(["-q", "ipip"])
            .status()
            .is_ok_and(|s| s.success())
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
    let mut skips: Vec<&str> = Vec::new();
    if !host_has_ipip() {
        println!(
            "privileged tests: this kernel has no IPIP driver: the ipip cases (incident 3 over \
             tunl0) run in the guests only"
        );
        skips.extend(["--skip", "ipip"]);
    }
    for exe in &executables {
        let mut cmd = if is_root() {
            Command::new(exe)
        } else {
            let mut c = Command::new("sudo");
            c.arg("--preserve-env=PKTGUARD_BIN,RUST_BACKTRACE").arg(exe);
            c
        };
        cmd.env("PKTGUARD_BIN", &bin)
            .args(&filter_args)
            .args(&skips);
        ok &= run_tests(&mut cmd, &mut tally)?;
    }
    if filter.is_none() {
        println!(
            "== the same programs on kernels {} (qemu, TCG)",
            vm::kernel_names()
        );
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
