use std::{env, fs};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The pin's reader, shared with `cargo xtask setup`.
#[path = "../xtask/src/pin.rs"]
mod pin;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata {
        packages,
        target_directory,
        ..
    } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "guard-ebpf")
        .ok_or_else(|| anyhow!("guard-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("guard-ebpf manifest has no parent"))?;
    // guard-ebpf/rust-toolchain.toml: the one place that names the nightly.
    let pin_file = root.as_std_path().join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", pin_file.display());
    let toolchain = pin::channel_of(&pin_file)?;

    // One build of the objects for every command and profile. Each of them
    // (check, clippy, test, release) has its own OUT_DIR, and aya-build
    // builds in a target directory under OUT_DIR: core and the objects were
    // built again for each, about 45 s of two cores every time. aya-build
    // takes its directory from OUT_DIR, so OUT_DIR names a shared one while
    // it runs (nothing else runs in this process yet), and the objects are
    // copied to the real OUT_DIR after. The lock keeps two builds (cargo
    // test and cargo build at once) from copying while the other writes.
    let out_dir = env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?;
    let shared = target_directory.as_std_path().join("ebpf");
    fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    let lock = fs::File::create(shared.join(".lock"))?;
    lock.lock().context("locking the shared eBPF build")?;
    // SAFETY: a build script with one thread; no other code reads the
    // environment while it changes.
    unsafe { env::set_var("OUT_DIR", &shared) };
    let built = aya_build::build_ebpf(
        [Package {
            name: "guard-ebpf",
            root_dir: root.as_str(),
            // Every bin is an object (guard, drops, lab, bench); without the
            // feature a host build of guard-ebpf skips them.
            features: &["objects"],
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    );
    // SAFETY: as above.
    unsafe { env::set_var("OUT_DIR", &out_dir) };
    built.with_context(|| {
        format!("building the eBPF objects with {toolchain} (missing pieces: `cargo xtask setup`)")
    })?;
    for bin in ebpf.targets.iter().filter(|t| t.is_bin()) {
        let from = shared.join(&bin.name);
        let to = std::path::Path::new(&out_dir).join(&bin.name);
        fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
