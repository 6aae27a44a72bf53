//! The one validator both front doors go through, the flags of `pktguard
//! run` and the configuration file: ranges, choices and what an interface
//! must be given. Each message is worded here, once; a door adds only where
//! (a flag's name, or the file's line and field).

use anyhow::{Result, bail};
use guard_common::{GsoAction, GsoConfig};

use super::IfaceConfig;
use crate::guard::{AttachMode, Direction};

/// The daemon's log levels, as `--log-level` and `log_level` take them.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// What the GSO guard does with a malformed GSO packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GsoGuardAction {
    /// Drop malformed GSO packets (TC_ACT_SHOT) and count them.
    Drop,
    /// Count them only.
    Flag,
}

impl GsoGuardAction {
    /// As the flag, the file and the state file spell it.
    pub const fn name(self) -> &'static str {
        match self {
            GsoGuardAction::Drop => "drop",
            GsoGuardAction::Flag => "flag",
        }
    }

    /// The action of a configuration the programs read.
    pub fn of(g: &GsoConfig) -> GsoGuardAction {
        if g.action == GsoAction::Drop as u8 {
            GsoGuardAction::Drop
        } else {
            GsoGuardAction::Flag
        }
    }

    /// The configuration the programs read.
    pub fn config(self, min_size: u32, max_segs: u32) -> GsoConfig {
        let action = match self {
            GsoGuardAction::Drop => GsoAction::Drop,
            GsoGuardAction::Flag => GsoAction::Flag,
        };
        GsoConfig {
            min_size,
            max_segs,
            action: action as u8,
            _pad: [0; 7],
        }
    }
}

/// The largest gso_size and segment count the GSO guard takes: both are
/// 16-bit fields of the skb.
pub const GSO_LIMIT_MAX: u32 = 65535;

/// A GSO guard limit (`gso_min_size`, `gso_max_segs`), or why not.
pub fn gso_limit(v: u32) -> std::result::Result<u32, String> {
    if v == 0 || v > GSO_LIMIT_MAX {
        return Err(format!(
            "{v} is out of range: at least 1, at most {GSO_LIMIT_MAX}"
        ));
    }
    Ok(v)
}

/// Which front door a message is for: it names flags or file keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Flags,
    File,
}

impl Door {
    /// `key` (in the flags' spelling, e.g. "tunnel-dev") as this door spells it.
    pub fn spell(self, key: &str) -> String {
        match self {
            Door::Flags => format!("--{key}"),
            Door::File => key.replace('-', "_"),
        }
    }
}

/// What an interface given no feature is told.
pub fn nothing_to_do(door: Door) -> String {
    let s = |k| door.spell(k);
    format!(
        "nothing to do: give a clamp ({}, {}, or {} with {}), {} and/or {}",
        s("mtu"),
        s("tunnel-dev"),
        s("underlay-mtu"),
        s("encap"),
        s("csum-repair"),
        s("gso-guard")
    )
}

/// What an interface's features need of its attach mode and direction
/// (checked before anything is attached, and again on reload).
pub fn iface(i: &IfaceConfig) -> Result<()> {
    if i.repair.is_some() && i.direction == Direction::Egress {
        bail!("--csum-repair works on received frames: use --direction ingress or both");
    }
    if i.direction == Direction::Egress
        && matches!(i.attach, AttachMode::Xdp | AttachMode::XdpGeneric)
    {
        bail!("XDP sees ingress only: use --attach tc (or auto) for --direction egress");
    }
    if i.clamp.is_none() && i.repair.is_none() && i.gso.is_none() {
        bail!("{}: {}", i.iface, nothing_to_do(Door::Flags));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_doors_word_it_alike() {
        assert_eq!(
            nothing_to_do(Door::Flags),
            "nothing to do: give a clamp (--mtu, --tunnel-dev, or --underlay-mtu with --encap), --csum-repair and/or --gso-guard"
        );
        assert_eq!(
            nothing_to_do(Door::File),
            "nothing to do: give a clamp (mtu, tunnel_dev, or underlay_mtu with encap), csum_repair and/or gso_guard"
        );
    }

    #[test]
    fn gso_limits() {
        assert_eq!(gso_limit(1), Ok(1));
        assert_eq!(gso_limit(65535), Ok(65535));
        assert!(gso_limit(0).unwrap_err().contains("at least 1"));
        assert!(gso_limit(100_000).unwrap_err().contains("at most 65535"));
        let g = GsoGuardAction::Flag.config(88, 1024);
        assert_eq!(GsoGuardAction::of(&g).name(), "flag");
    }
}
