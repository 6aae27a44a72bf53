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

/// The kernels: (name, Debian suite).
pub const KERNELS: [(&str, &str); 3] = [
    ("5.10", "bullseye"),
    ("6.1", "bookworm"),
    ("6.12", "bookworm-backports"),
];

/// The privileged test binaries that run inside the guests, with libtest
/// filters (none: all of the binary's tests).
pub const GUEST_TESTS: [(&str, &[&str]); 11] = [
    ("verifier", &[]),
    ("prog_mss", &[]),
    ("prog_gso", &[]),
    ("prog_csum", &[]),
    ("e2e_mss", &[]),
    // Both underlays, both hooks, jumbo frames and corruption, in four of
    // the eight combinations (the host runs all eight).
    (
        "e2e_csum",
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
    ("daemon", &[]),
    ("doctor", &[]),
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

/// Tools the guest tests call, copied with their libraries to the same
/// paths as on the host (busybox provides the rest).
const TOOLS: [&str; 11] = [
    "/usr/sbin/ip",
    "/usr/sbin/tc",
    "/usr/sbin/sysctl",
    "/usr/bin/nsenter",
    "/usr/bin/setpriv",
    "/usr/sbin/trafgen",
    "/usr/sbin/ethtool",
    "/usr/sbin/nft",
    "/usr/sbin/bpftool",
    "/usr/sbin/xtables-nft-multi",
    "/usr/sbin/xtables-legacy-multi",
];

/// Names the xtables binaries answer to (argv[0]).
const TOOL_LINKS: [(&str, &str); 4] = [
    ("iptables-nft", "xtables-nft-multi"),
    ("iptables-nft-save", "xtables-nft-multi"),
    ("iptables-legacy", "xtables-legacy-multi"),
    ("iptables-legacy-save", "xtables-legacy-multi"),
];

/// Modules the tests need, loaded in the guest with their dependencies
/// where the kernel has them as modules (built-in ones need nothing).
const MODULES: [&str; 20] = [
    "veth",
    "sch_ingress",
    "cls_bpf",
    "vxlan",
    "tun",
    "nf_tables",
    "nft_counter",
    "nft_objref",
    "nft_ct",
    "nft_compat",
    "nft_chain_nat",
    "nft_masq",
    "ip_tables",
    "iptable_filter",
    "iptable_nat",
    "xt_tcpudp",
    "xt_MASQUERADE",
    "xt_nat",
    "xt_comment",
    "xt_mark",
];

/// Files of /etc the tools read.
const ETC: [&str; 4] = ["protocols", "services", "passwd", "group"];

fn copy_with_libs(root: &Path, path: &Path, dst: &Path, strip: bool) -> Result<()> {
    std::fs::create_dir_all(dst.parent().expect("a file"))?;
    if strip {
        out(Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(dst)
            .arg(path))?;
    } else {
        std::fs::copy(path, dst).with_context(|| format!("copying {}", path.display()))?;
    }
    for lib in out(Command::new("ldd").arg(path))?
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = root.join(lib.trim_start_matches('/'));
        if !to.exists() {
            std::fs::create_dir_all(to.parent().expect("a file"))?;
            std::fs::copy(lib, &to).with_context(|| format!("copying {lib}"))?;
        }
    }
    Ok(())
}

/// The part of the initramfs every kernel shares: busybox, the tools, the
/// test binaries (debug info stripped) and pktguard, and the init, which
/// loads the modules listed in /lib/modules/pktguard/order, runs each test
/// binary and prints `VMTEST` lines.
fn common_cpio(vm: &Path, pktguard: &Path, binaries: &[(String, PathBuf)]) -> Result<PathBuf> {
    let root = vm.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "run", "tests", "etc", "var",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .context("busybox (busybox-static; cargo xtask setup installs it)")?;
    std::os::unix::fs::symlink("busybox", root.join("bin/sh"))?;
    std::os::unix::fs::symlink("../run", root.join("var/run"))?;
    for tool in TOOLS {
        let tool = Path::new(tool);
        if !tool.exists() {
            bail!(
                "{} is missing (cargo xtask setup installs it)",
                tool.display()
            );
        }
        copy_with_libs(&root, tool, &root.join(tool.strip_prefix("/")?), false)?;
    }
    for (name, target) in TOOL_LINKS {
        std::os::unix::fs::symlink(target, root.join("usr/sbin").join(name))?;
    }
    let xtables = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    if xtables.exists() {
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu"))?;
        out(Command::new("cp")
            .arg("-a")
            .arg(xtables)
            .arg(root.join("usr/lib/x86_64-linux-gnu/")))?;
    }
    for f in ETC {
        let _ = std::fs::copy(Path::new("/etc").join(f), root.join("etc").join(f));
    }
    copy_with_libs(&root, pktguard, &root.join("tests/pktguard"), true)?;
    let mut script = String::from(
        "#!/bin/sh\n/bin/busybox --install -s /bin\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         mount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n\
         mount -t tmpfs run /run\nmount -t bpf bpf /sys/fs/bpf\n\
         mount -t tracefs nodev /sys/kernel/tracing\nulimit -l unlimited\n\
         for m in $(cat /lib/modules/pktguard/order); do\n\
         \x20 insmod /lib/modules/pktguard/$m.ko || echo \"VMTEST module $m not loaded\"\ndone\n\
         ip link set lo up\nexport PKTGUARD_BIN=/tests/pktguard RUST_BACKTRACE=1\n\
         echo \"VMTEST kernel $(cat /proc/sys/kernel/osrelease)\"\n",
    );
    for (name, path) in binaries {
        copy_with_libs(&root, path, &root.join("tests").join(name), true)?;
        let filters = GUEST_TESTS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.join(" "))
            .unwrap_or_default();
        script.push_str(&format!(
            "echo \"VMTEST {name} start\"\n\
             timeout -s KILL {BINARY_LIMIT_SECS} /tests/{name} --test-threads 1 {filters} 2>&1\n\
             echo \"VMTEST {name} exit $?\"\n"
        ));
    }
    script.push_str("echo VMTEST done\npoweroff -f\n");
    let init = root.join("init");
    std::fs::write(&init, script)?;
    out(Command::new("chmod").arg("+x").arg(&init))?;
    cpio(&root, &vm.join("common.cpio.gz"))
}

fn cpio(root: &Path, image: &Path) -> Result<PathBuf> {
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
    Ok(image.to_path_buf())
}

/// A module's name as the kernel spells it (`-` and `_` are one).
fn module_name(file: &str) -> String {
    file.trim_end_matches(".xz")
        .trim_end_matches(".ko")
        .replace('-', "_")
}

/// A module file's contents, decompressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let o = Command::new("xz").arg("-dc").arg(path).output()?;
        if !o.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        Ok(o.stdout)
    } else {
        Ok(std::fs::read(path)?)
    }
}

/// The `depends=` of a module's .modinfo.
pub fn module_depends(bytes: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &bytes[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The per-kernel part: MODULES and their dependencies, decompressed, and
/// the order to load them in (dependencies first).
fn modules_cpio(vm: &Path, name: &str) -> Result<PathBuf> {
    let base = std::fs::read_dir(vm.join(format!("kernel-{name}/lib/modules")))?
        .flatten()
        .map(|e| e.path())
        .next()
        .context("no lib/modules in the kernel package")?;
    let mut files = std::collections::HashMap::new();
    let mut stack = vec![base.join("kernel")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(f) = p.file_name().map(|f| f.to_string_lossy().into_owned())
                && f.contains(".ko")
            {
                files.insert(module_name(&f), p);
            }
        }
    }
    let root = vm.join(format!("modules-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("lib/modules/pktguard");
    std::fs::create_dir_all(&dir)?;
    let mut order: Vec<String> = Vec::new();
    // Depth-first, dependencies before their users.
    fn visit(
        m: &str,
        files: &std::collections::HashMap<String, PathBuf>,
        dir: &Path,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|o| o == m) {
            return Ok(());
        }
        let Some(path) = files.get(m) else {
            return Ok(()); // built in (or absent: the test that needs it says so)
        };
        let bytes = module_bytes(path)?;
        for dep in module_depends(&bytes) {
            visit(&dep, files, dir, order)?;
        }
        std::fs::write(dir.join(format!("{m}.ko")), bytes)?;
        order.push(m.to_string());
        Ok(())
    }
    for m in MODULES {
        visit(m, &files, &dir, &mut order)?;
    }
    std::fs::write(dir.join("order"), order.join("\n") + "\n")?;
    cpio(&root, &vm.join(format!("modules-{name}.cpio.gz")))
}

/// The initramfs of kernel `name`: the common part and its modules (the
/// kernel unpacks concatenated archives in turn).
fn initramfs(vm: &Path, name: &str, common: &Path) -> Result<PathBuf> {
    let modules = modules_cpio(vm, name)?;
    let image = vm.join(format!("initramfs-{name}.cpio.gz"));
    let mut bytes = std::fs::read(common)?;
    bytes.extend(std::fs::read(&modules)?);
    std::fs::write(&image, bytes)?;
    Ok(image)
}

/// How a guest's run ended when it did not end by itself.
#[derive(Debug)]
pub enum Stuck {
    /// No console output for STALL_LIMIT.
    Stalled,
    /// Still printing at BOOT_LIMIT.
    OutOfTime,
}

/// One guest's console, with how it ended.
pub struct Console {
    pub text: String,
    pub stuck: Option<Stuck>,
}

/// The last test (or VMTEST step) a console shows, for a guest that did not
/// finish: the test that hung, or how far a slow guest got.
pub fn last_step(console: &str) -> Option<&str> {
    console
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("test ") || l.starts_with("VMTEST "))
}

/// Boots `vmlinuz` with `initrd` under TCG, writing the console to `log`
/// line by line as it comes (kept when the guest is stuck or killed).
fn boot(vmlinuz: &Path, initrd: &Path, log: &Path) -> Result<Console> {
    use std::io::{BufRead as _, Write as _};
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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64 (qemu-system-x86: cargo xtask setup)")?;
    let stdout = child.stdout.take().expect("piped");
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        // The serial console ends lines with CR LF.
        for line in std::io::BufReader::new(stdout)
            .split(b'\n')
            .map_while(Result::ok)
        {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let _ = writeln!(file, "{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut text = String::new();
    let mut last_output = Instant::now();
    let stuck = loop {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                last_output = Instant::now();
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if last_output.elapsed() > STALL_LIMIT {
            break Some(Stuck::Stalled);
        }
        if started.elapsed() > BOOT_LIMIT {
            break Some(Stuck::OutOfTime);
        }
    };
    if stuck.is_some() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = reader.join();
    while let Ok(line) = lines.try_recv() {
        text.push_str(&line);
        text.push('\n');
    }
    Ok(Console { text, stuck })
}

/// (passed, failed) of one guest's run, from libtest's summary lines; an
/// incomplete run (no `VMTEST done`) is a failure.
pub fn tally(console: &str, binaries: usize) -> (u32, u32) {
    let (mut passed, mut failed) = (0, 0);
    // Failures counted since the binary started: one that exits non-zero
    // without a failed test (a crash, or killed by its time limit) is one.
    let mut failed_here = 0;
    let mut exits = 0;
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
            failed_here += num("failed");
        } else if let Some(code) = line
            .strip_prefix("VMTEST ")
            .and_then(|l| l.split(" exit ").nth(1))
        {
            exits += 1;
            if code.trim() != "0" && failed_here == 0 {
                failed += 1;
            }
            failed_here = 0;
        }
    }
    if !console.contains("VMTEST done") || exits < binaries {
        failed += 1;
    }
    (passed, failed)
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
