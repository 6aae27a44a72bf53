//! The guest's common initramfs: busybox, the tools the tests call with
//! their libraries, pktguard, the test binaries and the init.

use super::*;

/// Tools the guest tests call, copied with their libraries to the same
/// paths as on the host (busybox provides the rest).
pub(crate) const TOOLS: [&str; 11] = [
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
pub(crate) const TOOL_LINKS: [(&str, &str); 5] = [
    ("iptables-nft", "xtables-nft-multi"),
    ("ip6tables-nft", "xtables-nft-multi"),
    ("iptables-nft-save", "xtables-nft-multi"),
    ("iptables-legacy", "xtables-legacy-multi"),
    ("iptables-legacy-save", "xtables-legacy-multi"),
];

/// Modules the tests need, loaded in the guest with their dependencies
/// where the kernel has them as modules (built-in ones need nothing).
pub(crate) const MODULES: [&str; 23] = [
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
    "xt_TCPMSS",
    "iptable_mangle",
    "ipip",
];

/// Files of /etc the tools read.
pub(crate) const ETC: [&str; 4] = ["protocols", "services", "passwd", "group"];

pub(crate) fn copy_with_libs(root: &Path, path: &Path, dst: &Path, strip: bool) -> Result<()> {
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
pub(crate) fn common_cpio(
    vm: &Path,
    pktguard: &Path,
    binaries: &[(String, PathBuf)],
) -> Result<PathBuf> {
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
    // A measurement shim preloaded into every test binary (the README's
    // "instructions processed on 4.19": xtask/insncount.c).
    let preload = match std::env::var_os("PKTGUARD_GUEST_PRELOAD") {
        Some(path) => {
            std::fs::copy(&path, root.join("tests/preload.so")).with_context(|| {
                format!("PKTGUARD_GUEST_PRELOAD {}", Path::new(&path).display())
            })?;
            "LD_PRELOAD=/tests/preload.so "
        }
        None => "",
    };
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
        // --report-time puts each test's time on its line of the console
        // (libtest's unstable flag: the pinned toolchain's, allowed by
        // RUSTC_BOOTSTRAP), what trimming a guest's share of the suite reads.
        script.push_str(&format!(
            "echo \"VMTEST {name} start\"\n\
             {preload}RUSTC_BOOTSTRAP=1 timeout -s KILL {BINARY_LIMIT_SECS} /tests/{name} \
             --test-threads 1 -Z unstable-options --report-time $(cat /tests/args/{name}) 2>&1\n\
             echo \"VMTEST {name} exit $?\"\n"
        ));
    }
    script.push_str("echo VMTEST done\npoweroff -f\n");
    let init = root.join("init");
    std::fs::write(&init, script)?;
    out(Command::new("chmod").arg("+x").arg(&init))?;
    cpio(&root, &vm.join("common.cpio.gz"))
}

pub(crate) fn cpio(root: &Path, image: &Path) -> Result<PathBuf> {
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

/// The initramfs of kernel `name`: the common part, its modules and its
/// share of the tests (the kernel unpacks concatenated archives in turn); a
/// built kernel has its drivers built in and gets an empty load order.
pub(crate) fn initramfs(
    vm: &Path,
    name: &str,
    source: Source,
    common: &Path,
    binaries: &[&str],
) -> Result<PathBuf> {
    let modules = match source {
        Source::Debian(_) => modules_cpio(vm, name)?,
        Source::Built(_) => {
            let root = vm.join(format!("modules-{name}"));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("lib/modules/pktguard"))?;
            std::fs::write(root.join("lib/modules/pktguard/order"), "")?;
            cpio(&root, &vm.join(format!("modules-{name}.cpio.gz")))?
        }
    };
    // This kernel's share of the tests (share.rs): a file of libtest
    // arguments for each binary, which the init reads.
    let share = vm.join(format!("share-{name}"));
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(share.join("tests/args"))?;
    for binary in binaries {
        let args = share::guest_args(binary, name).join(" ");
        std::fs::write(share.join("tests/args").join(binary), args)?;
    }
    let share = cpio(&share, &vm.join(format!("share-{name}.cpio.gz")))?;
    let image = vm.join(format!("initramfs-{name}.cpio.gz"));
    let mut bytes = std::fs::read(common)?;
    bytes.extend(std::fs::read(&modules)?);
    bytes.extend(std::fs::read(&share)?);
    std::fs::write(&image, bytes)?;
    Ok(image)
}
