//! `cargo xtask vm-test`: the programs on the kernels operators run, under
//! qemu. Debian's cloud kernels (5.10 from bullseye, 6.1 from bookworm,
//! 6.12 from bookworm-backports) are fetched with apt through a private
//! sources list (the system's is not touched) and cached under target/vm;
//! an initramfs holds busybox and the test binaries with their libraries;
//! qemu boots each kernel under TCG (`-cpu max,-cx16`: 6.12 crashes under
//! TCG otherwise; /dev/kvm here is a nested hypervisor that cannot boot
//! them) and the init prints one result line per test binary.
//!
//! Run there: the verifier budget test (every program loaded into that
//! kernel's verifier) and the BPF_PROG_TEST_RUN tables of the clamp and the
//! GSO guard. The namespace end-to-end tests, which need iproute2, nftables,
//! trafgen and modules inside the guest, do not run there yet.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The kernels: (name, Debian suite).
pub const KERNELS: [(&str, &str); 3] = [
    ("5.10", "bullseye"),
    ("6.1", "bookworm"),
    ("6.12", "bookworm-backports"),
];

/// The privileged test binaries that run inside the guests.
pub const GUEST_TESTS: [&str; 3] = ["verifier", "prog_mss", "prog_gso"];

const BOOT_LIMIT: Duration = Duration::from_secs(600);

fn out(cmd: &mut Command) -> Result<String> {
    let o = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", o.status);
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// apt with a private sources list and state under `dir`.
fn apt(dir: &Path, tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.arg(format!(
        "-o=Dir::Etc::sourcelist={}",
        dir.join("sources.list").display()
    ))
    .arg("-o=Dir::Etc::sourceparts=-")
    .arg(format!("-o=Dir::State={}", dir.join("state").display()))
    .arg(format!("-o=Dir::Cache={}", dir.join("cache").display()))
    .arg("-o=APT::Get::List-Cleanup=0")
    .arg("-o=Debug::NoLocking=1");
    c
}

/// The kernel package of `suite`, resolved through the
/// linux-image-cloud-amd64 metapackage (ABI names change); its .deb path.
fn fetch(vm: &Path, suite: &str) -> Result<PathBuf> {
    let aptdir = vm.join("apt");
    std::fs::create_dir_all(aptdir.join("state/lists/partial"))?;
    std::fs::create_dir_all(aptdir.join("cache/archives/partial"))?;
    std::fs::write(
        aptdir.join("sources.list"),
        "deb http://deb.debian.org/debian bullseye main\n\
         deb http://deb.debian.org/debian bookworm main\n\
         deb http://deb.debian.org/debian bookworm-backports main\n",
    )?;
    if !aptdir
        .join("state/lists")
        .read_dir()?
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains("Packages")))
    {
        out(apt(&aptdir, "apt-get").args(["-qq", "update"]))?;
    }
    let madison = out(apt(&aptdir, "apt-cache").args(["madison", "linux-image-cloud-amd64"]))?;
    let version = madison
        .lines()
        .find(|l| l.contains(&format!(" {suite}/main")))
        .and_then(|l| l.split('|').nth(1))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no linux-image-cloud-amd64 in {suite}"))?;
    let show = out(
        apt(&aptdir, "apt-cache").args(["show", &format!("linux-image-cloud-amd64={version}")])
    )?;
    let image = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .and_then(|d| d.split([' ', ',']).next())
        .with_context(|| format!("no kernel package behind linux-image-cloud-amd64 {version}"))?
        .to_string();
    let debs = vm.join("debs");
    std::fs::create_dir_all(&debs)?;
    let found = |debs: &Path| {
        std::fs::read_dir(debs).ok().and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{image}_")))
            })
        })
    };
    if let Some(p) = found(&debs) {
        return Ok(p);
    }
    out(apt(&aptdir, "apt-get")
        .current_dir(&debs)
        .args(["-qq", "download", &image]))?;
    found(&debs).with_context(|| format!("apt-get download {image} left no .deb"))
}

/// Extracts the kernel image; returns the vmlinuz path.
fn kernel(vm: &Path, name: &str, deb: &Path) -> Result<PathBuf> {
    let dir = vm.join(format!("kernel-{name}"));
    if !dir.join("boot").exists() {
        std::fs::create_dir_all(&dir)?;
        out(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&dir))?;
    }
    std::fs::read_dir(dir.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz in the kernel package")
}

/// An initramfs with busybox, `binaries` and their libraries, and an init
/// that runs each and prints `VMTEST` lines.
fn initramfs(vm: &Path, binaries: &[(String, PathBuf)]) -> Result<PathBuf> {
    let root = vm.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "proc", "sys", "dev", "tmp", "run", "tests"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .context("busybox (busybox-static; cargo xtask setup installs it)")?;
    for tool in ["sh", "mount", "echo", "cat", "poweroff", "mkdir"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool))?;
    }
    let mut script = String::from(
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n\
         mount -t bpf bpf /sys/fs/bpf\nmount -t tracefs nodev /sys/kernel/tracing\n\
         ulimit -l unlimited\necho \"VMTEST kernel $(cat /proc/sys/kernel/osrelease)\"\n",
    );
    for (name, path) in binaries {
        std::fs::copy(path, root.join("tests").join(name))?;
        for lib in out(Command::new("ldd").arg(path))?
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dst = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().expect("a file"))?;
            std::fs::copy(lib, &dst).with_context(|| format!("copying {lib}"))?;
        }
        script.push_str(&format!(
            "/tests/{name} --test-threads 1 2>&1\necho \"VMTEST {name} exit $?\"\n"
        ));
    }
    script.push_str("echo VMTEST done\npoweroff -f\n");
    let init = root.join("init");
    std::fs::write(&init, script)?;
    out(Command::new("chmod").arg("+x").arg(&init))?;
    let image = vm.join("initramfs.cpio.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
            root.display(),
            image.display()
        ))
        .status()?;
    if !status.success() {
        bail!("building the initramfs failed (cpio and gzip: cargo xtask setup)");
    }
    Ok(image)
}

/// Boots `vmlinuz` with `initrd` under TCG; returns the console output.
fn boot(vmlinuz: &Path, initrd: &Path) -> Result<String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max,-cx16",
            "-m",
            "512M",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 oops=panic quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64 (qemu-system-x86: cargo xtask setup)")?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + BOOT_LIMIT;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the guest did not finish within {BOOT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(reader.join().unwrap_or_default())
}

/// (passed, failed) of one guest's run, from libtest's summary lines; an
/// incomplete run (no `VMTEST done`) is a failure.
pub fn tally(console: &str, binaries: usize) -> (u32, u32) {
    let (mut passed, mut failed) = (0, 0);
    for line in console.lines() {
        if let Some(rest) = line.split("test result: ").nth(1) {
            let num = |key: &str| -> u32 {
                rest.split(';')
                    .find(|p| p.contains(key))
                    .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
                    .unwrap_or(0)
            };
            passed += num("passed");
            failed += num("failed");
        }
    }
    let exits = console
        .lines()
        .filter(|l| l.starts_with("VMTEST ") && l.contains(" exit "))
        .count();
    if !console.contains("VMTEST done") || exits < binaries {
        failed += 1;
    }
    (passed, failed)
}

/// Runs the guest tests on `which` kernels ("all" or one name).
pub fn run(which: &str, binaries: &[(String, PathBuf)]) -> Result<(u32, u32)> {
    std::fs::create_dir_all("target/vm")?;
    let vm = std::fs::canonicalize("target/vm")?;
    let kernels: Vec<_> = KERNELS
        .iter()
        .filter(|(k, _)| which == "all" || which == *k)
        .collect();
    if kernels.is_empty() {
        bail!("unknown kernel {which:?}: 5.10, 6.1, 6.12 or all");
    }
    let initrd = initramfs(&vm, binaries)?;
    let (mut passed, mut failed) = (0, 0);
    for (name, suite) in kernels {
        let started = Instant::now();
        let deb = fetch(&vm, suite)?;
        let vmlinuz = kernel(&vm, name, &deb)?;
        let console = boot(&vmlinuz, &initrd)?;
        std::fs::write(vm.join(format!("console-{name}.log")), &console)?;
        let (p, f) = tally(&console, binaries.len());
        for line in console
            .lines()
            .filter(|l| l.starts_with("test ") || l.contains("VMTEST"))
        {
            println!("  [{name}] {}", line.trim_end());
        }
        println!(
            "== kernel {name} ({suite}): {p} passed, {f} failed in {:.0?}{}",
            started.elapsed(),
            if f > 0 {
                format!(" (console: target/vm/console-{name}.log)")
            } else {
                String::new()
            }
        );
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
    }
}
