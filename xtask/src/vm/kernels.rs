//! The matrix's kernels: Debian's, fetched with apt through a private
//! sources list, unpacked, and their modules (with dependencies) packed as
//! an initramfs part; and built ones (every driver built in) from the
//! kernels folder, checked against its SHA256SUMS.

use super::*;

/// apt with a private sources list and state under `dir`.
pub(crate) fn apt(dir: &Path, tool: &str) -> Command {
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
pub(crate) fn fetch(vm: &Path, suite: &str) -> Result<PathBuf> {
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
pub(crate) fn kernel(vm: &Path, name: &str, deb: &Path) -> Result<PathBuf> {
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

/// The kernels folder: $PKTGUARD_KERNELS, else the first `shared/kernels`
/// beside the checkout or one of its parents.
pub(crate) fn kernels_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PKTGUARD_KERNELS") {
        return Some(PathBuf::from(d));
    }
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .skip(1)
        .map(|a| a.join("shared/kernels"))
        .find(|d| d.is_dir())
}

/// `DIR/bzImage` of the kernels folder, its checksum verified; `Err` says
/// why there is none (said once, and the run goes on without it).
pub(crate) fn built_kernel(dir: &str) -> Result<std::result::Result<PathBuf, String>> {
    let Some(root) = kernels_dir() else {
        return Ok(Err(
            "no kernels folder (shared/kernels beside the checkout, or $PKTGUARD_KERNELS)".into(),
        ));
    };
    let at = root.join(dir);
    let image = at.join("bzImage");
    if !image.exists() {
        return Ok(Err(format!("{} is missing", image.display())));
    }
    if at.join("SHA256SUMS").exists() {
        let ok = Command::new("sha256sum")
            .args(["--check", "--quiet", "--ignore-missing", "SHA256SUMS"])
            .current_dir(&at)
            .status()
            .context("sha256sum")?;
        if !ok.success() {
            bail!("{} does not match its SHA256SUMS", image.display());
        }
    }
    Ok(Ok(image))
}

/// A module's name as the kernel spells it (`-` and `_` are one).
pub(crate) fn module_name(file: &str) -> String {
    file.trim_end_matches(".xz")
        .trim_end_matches(".ko")
        .replace('-', "_")
}

/// A module file's contents, decompressed.
pub(crate) fn module_bytes(path: &Path) -> Result<Vec<u8>> {
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
pub(crate) fn modules_cpio(vm: &Path, name: &str) -> Result<PathBuf> {
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
