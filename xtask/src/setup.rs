//! `cargo xtask setup`: install exactly the pinned pieces that are missing,
//! then check the chain end to end. The pins live in one place each: the
//! userspace toolchain in `rust-toolchain.toml`, the eBPF nightly in
//! `guard-ebpf/rust-toolchain.toml`, bpf-linker and its LLVM here. Nothing
//! here follows a floating channel: a fresh machine next year gets what CI
//! got today, or one line that says what differs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::pin::channel_of;
use crate::{privileged, run};

/// bpf-linker, installed with `--locked` against Debian's LLVM of the same
/// major as the pinned nightly's (bitcode is read only by the LLVM that
/// wrote it, or a newer one).
pub const BPF_LINKER_VERSION: &str = "0.13.0";
pub const LLVM_MAJOR: u32 = 22;

/// Debian packages the build needs.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libclang-22-dev",
    "libpolly-22-dev",
    "build-essential",
];
/// Debian packages the tests, the lab and the benchmarks need besides.
const TEST_PACKAGES: &[&str] = &[
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

fn llvm_prefix() -> String {
    format!("/usr/lib/llvm-{LLVM_MAJOR}")
}

/// The two toolchain pins, read from their files.
pub struct Pins {
    /// The userspace toolchain (an exact version, e.g. "1.99.0").
    pub rust: String,
    /// The eBPF build's dated nightly (e.g. "nightly-2026-07-15").
    pub ebpf: String,
}

impl Pins {
    pub fn read(root: &Path) -> Result<Self> {
        Ok(Self {
            rust: channel_of(&root.join("rust-toolchain.toml"))?,
            ebpf: channel_of(&root.join("guard-ebpf/rust-toolchain.toml"))?,
        })
    }
}

/// The `release:` of `rustc -vV` output.
pub fn rustc_release(vv: &str) -> Option<&str> {
    vv.lines().find_map(|l| l.strip_prefix("release: "))
}

/// The LLVM major of `rustc -vV` output ("LLVM version: 22.1.8").
pub fn rustc_llvm_major(vv: &str) -> Option<u32> {
    let v = vv.lines().find_map(|l| l.strip_prefix("LLVM version: "))?;
    v.split('.').next()?.trim().parse().ok()
}

/// The LLVM major a binary is dynamically linked against, from `ldd`
/// output (`libLLVM.so.22.1 => ...` or `libLLVM-22.so => ...`).
pub fn ldd_llvm_major(ldd: &str) -> Option<u32> {
    ldd.split_whitespace().find_map(|w| {
        let name = w.rsplit('/').next()?;
        let rest = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-"))?;
        rest.split(['.', '-']).next()?.parse().ok()
    })
}

/// The verdict on the nightly's and bpf-linker's LLVM majors: one line
/// naming both and the fix when they differ.
pub fn llvm_verdict(ebpf_pin: &str, nightly: u32, linker: u32) -> Result<(), String> {
    if nightly == linker {
        return Ok(());
    }
    let fix = if nightly > linker {
        format!(
            "pin a nightly with LLVM {linker} in guard-ebpf/rust-toolchain.toml, or install \
             bpf-linker against LLVM {nightly}"
        )
    } else {
        format!(
            "reinstall it: LLVM_PREFIX={} cargo install bpf-linker --version ={BPF_LINKER_VERSION} \
             --locked --force --no-default-features --features llvm-{LLVM_MAJOR}",
            llvm_prefix()
        )
    };
    Err(format!(
        "setup: {ebpf_pin} emits LLVM {nightly} bitcode but bpf-linker is linked against LLVM \
         {linker}, which cannot read it: {fix}"
    ))
}

/// The stdout of `cmd` (which must succeed), its stderr silenced.
fn output(cmd: &mut Command) -> Result<String> {
    crate::stdout_of(cmd, Stdio::null())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn installed_toolchains() -> Result<String> {
    output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed: the toolchains are pinned through it (https://rustup.rs)")
}

/// `rustup toolchain list` names `pin` (as `pin-<host triple>`).
fn has_toolchain(list: &str, pin: &str) -> bool {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|t| t == pin || t.strip_prefix(pin).is_some_and(|r| r.starts_with('-')))
}

/// What `cargo xtask setup` installs: everything (the tests, lab and
/// benchmarks too) or only what building `pktguard` needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Build,
}

pub fn setup(root: &Path, scope: Scope) -> Result<()> {
    let started = Instant::now();
    let pins = Pins::read(root)?;
    packages(&pins, scope)?;
    userspace_toolchain(root, &pins)?;
    ebpf_toolchain(root, &pins)?;
    let linker = bpf_linker()?;
    check_chain(root, &pins, &linker)?;
    println!("setup: done in {:.1?}", started.elapsed());
    Ok(())
}

fn packages(pins: &Pins, scope: Scope) -> Result<()> {
    let debian = Path::new("/etc/debian_version").exists() && which("dpkg-query").is_some();
    if !debian {
        println!(
            "setup: not a Debian system. Install these (or your distribution's equivalents), then run again:\n  \
             LLVM {LLVM_MAJOR} development files (llvm, clang, polly), a C toolchain{}\n  \
             rustup toolchain install  (run in the repository, then in guard-ebpf/: \
             {} and {} with the components their rust-toolchain.toml files name)\n  \
             LLVM_PREFIX=<llvm-{LLVM_MAJOR} prefix> cargo install bpf-linker --version ={BPF_LINKER_VERSION} \
             --locked --no-default-features --features llvm-{LLVM_MAJOR}",
            if scope == Scope::All {
                ", iproute2, ethtool, nftables, iptables, tcpdump, netsniff-ng (trafgen), bpftool, \
                 iperf3, scapy, util-linux (nsenter, setpriv), yamllint, qemu-system-x86, \
                 a static busybox, cpio"
            } else {
                ""
            },
            pins.rust,
            pins.ebpf
        );
        return Ok(());
    }
    let wanted = BUILD_PACKAGES.iter().chain(if scope == Scope::All {
        TEST_PACKAGES
    } else {
        &[]
    });
    let missing: Vec<&str> = wanted.copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
        return Ok(());
    }
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
    )
}

/// The toolchain cargo runs here is the root pin. rustup installs it when
/// cargo first runs in the workspace; a `+toolchain` or RUSTUP_TOOLCHAIN
/// that overrides it is refused, since CI must build with the pin.
fn userspace_toolchain(root: &Path, pins: &Pins) -> Result<()> {
    if !has_toolchain(&installed_toolchains()?, &pins.rust) {
        println!("setup: installing Rust {}", pins.rust);
        install_pinned(root)?;
    }
    let vv =
        output(Command::new("rustc").arg("-vV").current_dir(root)).context("running rustc -vV")?;
    let in_use = rustc_release(&vv).unwrap_or("unknown");
    if in_use != pins.rust {
        bail!(
            "setup: the toolchain in use is Rust {in_use}, but rust-toolchain.toml pins {}: \
             drop the `+toolchain` and unset RUSTUP_TOOLCHAIN{}",
            pins.rust,
            std::env::var("RUSTUP_TOOLCHAIN")
                .map(|t| format!(" (now {t})"))
                .unwrap_or_default()
        );
    }
    println!("setup: Rust {} (rust-toolchain.toml)", pins.rust);
    Ok(())
}

fn ebpf_toolchain(root: &Path, pins: &Pins) -> Result<()> {
    let present = has_toolchain(&installed_toolchains()?, &pins.ebpf)
        && output(Command::new("rustup").args([
            "component",
            "list",
            "--toolchain",
            &pins.ebpf,
            "--installed",
        ]))
        .is_ok_and(|c| c.lines().any(|l| l.starts_with("rust-src")));
    if present {
        println!(
            "setup: {} with rust-src (guard-ebpf/rust-toolchain.toml)",
            pins.ebpf
        );
        return Ok(());
    }
    println!("setup: installing {} with rust-src", pins.ebpf);
    install_pinned(&root.join("guard-ebpf"))
}

/// `rustup toolchain install` in `dir`: the toolchain, profile and
/// components of the rust-toolchain.toml that governs `dir`, so that the
/// component lists, too, are written only in those files. RUSTUP_TOOLCHAIN
/// (set for cargo's children under `cargo +x`) would override the file.
fn install_pinned(dir: &Path) -> Result<()> {
    run(Command::new("rustup")
        .args(["toolchain", "install"])
        .current_dir(dir)
        .env_remove("RUSTUP_TOOLCHAIN"))
}

/// bpf-linker at the pinned version, installed if absent or another
/// version; its path.
fn bpf_linker() -> Result<PathBuf> {
    let version = which("bpf-linker")
        .and_then(|p| output(Command::new(p).arg("--version")).ok())
        .unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
    } else {
        if !Path::new(&llvm_prefix()).join("bin/llvm-config").exists() {
            bail!(
                "setup: bpf-linker {BPF_LINKER_VERSION} needs LLVM {LLVM_MAJOR} development files \
                 in {} (Debian: llvm-{LLVM_MAJOR}-dev libclang-{LLVM_MAJOR}-dev libpolly-{LLVM_MAJOR}-dev)",
                llvm_prefix()
            );
        }
        println!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR} (a few minutes)"
        );
        run(Command::new("cargo")
            .env("LLVM_PREFIX", llvm_prefix())
            .args(["install", "bpf-linker", "--locked", "--force"])
            .args(["--version", &format!("={BPF_LINKER_VERSION}")])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{LLVM_MAJOR}"),
            ]))?;
    }
    which("bpf-linker")
        .context("setup: bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH")
}

/// A smallest BPF program, for the pinned nightly alone: no core, so it
/// builds without rust-src in well under a second (its lang items are the
/// ones this nightly's compiler asks for).
const PROBE: &str = r#"#![feature(no_core, lang_items)]
#![no_core]
#![no_main]
#[lang = "pointee_sized"]
pub trait PointeeSized {}
#[lang = "meta_sized"]
pub trait MetaSized: PointeeSized {}
#[lang = "sized"]
pub trait Sized: MetaSized {}
#[unsafe(no_mangle)]
#[unsafe(link_section = "xdp")]
pub extern "C" fn probe() -> u32 {
    2
}
"#;

/// The nightly's LLVM equals bpf-linker's, and a BPF object links: the
/// failure a floating nightly caused (`ERROR llvm: Invalid record`) is
/// found here, in one line, not deep in guard-user's build script.
fn check_chain(root: &Path, pins: &Pins, linker: &Path) -> Result<()> {
    let vv = output(Command::new("rustup").args(["run", &pins.ebpf, "rustc", "-vV"]))?;
    let nightly =
        rustc_llvm_major(&vv).with_context(|| format!("{} reports no LLVM version", pins.ebpf))?;
    let ldd = output(Command::new("ldd").arg(linker)).unwrap_or_default();
    if let Some(linked) = ldd_llvm_major(&ldd)
        && let Err(line) = llvm_verdict(&pins.ebpf, nightly, linked)
    {
        bail!(line);
    }
    let dir = root.join("target/setup");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("probe.rs"), PROBE)?;
    let compiled = Command::new("rustup")
        .args(["run", &pins.ebpf, "rustc", "--edition", "2024"])
        .args(["--target", "bpfel-unknown-none", "--crate-type", "cdylib"])
        .args([
            "--emit=llvm-bc",
            "-C",
            "opt-level=2",
            "-A",
            "internal_features",
        ])
        .arg("-o")
        .arg(dir.join("probe.bc"))
        .arg(dir.join("probe.rs"))
        .output()?;
    if !compiled.status.success() {
        bail!(
            "setup: {} cannot compile the BPF probe (target/setup/probe.rs): {}",
            pins.ebpf,
            first_error(&compiled.stderr)
        );
    }
    let linked = Command::new(linker)
        .args(["--export", "probe", "-o"])
        .arg(dir.join("probe.o"))
        .arg(dir.join("probe.bc"))
        .output()?;
    let elf = std::fs::read(dir.join("probe.o")).unwrap_or_default();
    // ELF, 64-bit, little-endian, e_machine EM_BPF (247).
    let is_bpf = elf.len() > 20 && elf[..4] == *b"\x7fELF" && elf[18] == 247 && elf[19] == 0;
    if !linked.status.success() || !is_bpf {
        bail!(
            "setup: bpf-linker {BPF_LINKER_VERSION} cannot link {}'s bitcode (LLVM {nightly}): {}",
            pins.ebpf,
            first_error(&linked.stderr)
        );
    }
    println!(
        "setup: {} (LLVM {nightly}) and bpf-linker {BPF_LINKER_VERSION} link a BPF object",
        pins.ebpf
    );
    Ok(())
}

fn first_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find(|l| l.contains("error") || l.contains("ERROR"))
        .or_else(|| text.lines().next())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::is_floating;

    #[test]
    fn floating_channels_are_told_apart() {
        for floating in ["nightly", "stable", "beta", "1.99", "1"] {
            assert!(is_floating(floating), "{floating}");
        }
        for pinned in ["1.99.0", "nightly-2026-07-15", "beta-2026-07-01"] {
            assert!(!is_floating(pinned), "{pinned}");
        }
    }

    #[test]
    fn versions_are_read_from_rustc_and_ldd() {
        let vv = "rustc 1.99.0-nightly (da80ed070 2026-07-14)\nbinary: rustc\n\
                  release: 1.99.0-nightly\nLLVM version: 22.1.8\n";
        assert_eq!(rustc_release(vv), Some("1.99.0-nightly"));
        assert_eq!(rustc_llvm_major(vv), Some(22));
        assert_eq!(rustc_llvm_major("release: 1.0.0\n"), None);
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007f9c)\n";
        assert_eq!(ldd_llvm_major(ldd), Some(22));
        assert_eq!(
            ldd_llvm_major("libLLVM-21.so => /usr/lib/llvm-21/lib/libLLVM-21.so (0x1)"),
            Some(21)
        );
        assert_eq!(ldd_llvm_major("\tstatically linked\n"), None);
    }

    #[test]
    fn a_mismatch_is_one_line_naming_both_and_the_fix() {
        assert!(llvm_verdict("nightly-2026-07-15", 22, 22).is_ok());
        let newer = llvm_verdict("nightly-2026-10-29", 23, 22).unwrap_err();
        assert!(!newer.contains('\n'));
        assert!(newer.contains("LLVM 23") && newer.contains("LLVM 22"));
        assert!(newer.contains("guard-ebpf/rust-toolchain.toml"));
        let older = llvm_verdict("nightly-2026-01-01", 21, 22).unwrap_err();
        assert!(older.contains("cargo install bpf-linker"), "{older}");
    }

    #[test]
    fn toolchain_list_is_matched_by_whole_name() {
        let list = "stable-x86_64-unknown-linux-gnu (default)\n\
                    nightly-2026-07-15-x86_64-unknown-linux-gnu\n1.99.0-x86_64-unknown-linux-gnu\n";
        assert!(has_toolchain(list, "1.99.0"));
        assert!(has_toolchain(list, "nightly-2026-07-15"));
        assert!(!has_toolchain(list, "1.99"));
        assert!(!has_toolchain(list, "nightly-2026-07-1"));
        assert!(!has_toolchain(list, "1.98.0"));
    }

    #[test]
    fn the_repository_pins_are_exact() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let pins = Pins::read(root).unwrap();
        assert!(!is_floating(&pins.rust) && !is_floating(&pins.ebpf));
        assert!(pins.ebpf.starts_with("nightly-"));
    }

    /// The image is built with the same pins: rustup brings no toolchain of
    /// its own, setup installs the pinned ones, cargo keeps the lock file.
    #[test]
    fn the_containerfile_uses_the_pins() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let file = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
        assert!(file.contains("--default-toolchain none"));
        assert!(file.contains("cargo xtask setup --build-only"));
        assert!(file.contains("cargo build --release --locked"));
        assert!(
            !file.contains("toolchain install"),
            "a second copy of a pin"
        );
        let ignore = std::fs::read_to_string(root.join(".containerignore")).unwrap();
        assert!(ignore.lines().any(|l| l.trim() == "target/"));
    }
}
