//! pktguard's configuration: the interfaces to guard with their features,
//! and the daemon's settings, from the command line or the file.

pub mod clamp;
pub mod file;
pub mod repair;
pub mod validate;

use std::path::Path;

use anyhow::{Context as _, Result};
use guard_common::GsoConfig;

use self::{
    clamp::{Clamp, Encap},
    repair::RepairSpec,
};
pub use self::{
    file::{DEFAULT_PATH, parse},
    validate::GsoGuardAction,
};
use crate::guard::{AttachMode, Direction, Features};

/// How the MSS clamp of an interface is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClampSource {
    Mtu(u32),
    /// Read from the device when the guard starts (and on reload).
    TunnelDev(String),
    Underlay(u32, Encap),
}

/// One interface, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceConfig {
    pub iface: String,
    pub attach: AttachMode,
    pub direction: Direction,
    pub clamp: Option<ClampSource>,
    pub repair: Option<RepairSpec>,
    pub gso: Option<GsoConfig>,
}

impl IfaceConfig {
    /// The features to load, resolving a tunnel device's MTU now.
    pub fn features(&self) -> Result<Features> {
        let clamp = match &self.clamp {
            None => None,
            Some(ClampSource::Mtu(m)) => Some(Clamp::from_mtu(*m)?),
            Some(ClampSource::Underlay(m, e)) => Some(Clamp::from_underlay(*m, *e)?),
            Some(ClampSource::TunnelDev(d)) => {
                crate::host::sys::ifindex(d).with_context(|| format!("tunnel_dev {d}"))?;
                Some(
                    Clamp::from_mtu(crate::host::sys::mtu(d)?)
                        .with_context(|| format!("MTU of {d}"))?,
                )
            }
        };
        Ok(Features {
            clamp,
            repair: self.repair.clone(),
            gso: self.gso,
        })
    }

    /// Whether `other` differs only in what lives in maps (clamp values,
    /// repair ports, ranges and mode, GSO limits and action): then a reload
    /// updates maps and reloads no program.
    pub fn same_programs(&self, other: &IfaceConfig) -> bool {
        self.attach == other.attach
            && self.direction == other.direction
            && self.clamp.is_some() == other.clamp.is_some()
            && self.repair.is_some() == other.repair.is_some()
            && self.gso.is_some() == other.gso.is_some()
    }
}

/// The daemon's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonConfig {
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub drop_monitor: bool,
    pub persist: bool,
    pub log_level: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub interfaces: Vec<IfaceConfig>,
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> std::result::Result<Config, Vec<String>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| vec![format!("{file}: {err}")])?;
    parse(&text, &file)
}
