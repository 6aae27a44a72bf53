//! Reading a toolchain pin (`toolchain.channel` of a rust-toolchain.toml).
//! One parser for both readers: `cargo xtask setup`, and guard-user's
//! build.rs, which includes this file (`#[path]`) to hand the eBPF nightly
//! to aya-build.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// `toolchain.channel` of a rust-toolchain.toml, refused when it floats.
pub fn channel_of(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let channel = doc
        .get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .with_context(|| format!("{} has no toolchain.channel", path.display()))?;
    if is_floating(channel) {
        bail!(
            "{} follows the floating channel {channel:?}: pin an exact version or a dated nightly",
            path.display()
        );
    }
    Ok(channel.to_string())
}

/// A channel whose meaning changes over time ("nightly", "stable", "beta",
/// "1.99" without a patch level).
pub fn is_floating(channel: &str) -> bool {
    let name = channel.split('-').next().unwrap_or(channel);
    match name {
        "nightly" | "beta" => !channel.contains('-'),
        "stable" => true,
        _ => name.split('.').count() < 3,
    }
}
