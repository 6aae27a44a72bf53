use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use aya_build::{Package, Toolchain};

/// The eBPF nightly pinned in guard-ebpf/rust-toolchain.toml: the one place
/// that names it (`cargo xtask setup` reads the same file).
fn ebpf_toolchain(root: &Path) -> anyhow::Result<String> {
    let path = root.join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={path}", path = path.display());
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let channel = doc
        .get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .ok_or_else(|| anyhow!("{} has no toolchain.channel", path.display()))?;
    if matches!(channel, "nightly" | "stable" | "beta") {
        bail!(
            "{} names the floating channel {channel:?}: pin a dated nightly",
            path.display()
        );
    }
    Ok(channel.to_string())
}

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
    let toolchain = ebpf_toolchain(root.as_std_path())?;
    aya_build::build_ebpf(
        [Package {
            name: "guard-ebpf",
            root_dir: root.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!("building the eBPF object with {toolchain} (missing pieces: `cargo xtask setup`)")
    })
}
