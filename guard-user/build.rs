use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The pin's reader, shared with `cargo xtask setup`.
#[path = "../xtask/src/pin.rs"]
mod pin;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
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
    aya_build::build_ebpf(
        [Package {
            name: "guard-ebpf",
            root_dir: root.as_str(),
            // Every bin is an object (guard, drops, lab, bench); without the
            // feature a host build of guard-ebpf skips them.
            features: &["objects"],
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!("building the eBPF objects with {toolchain} (missing pieces: `cargo xtask setup`)")
    })
}
