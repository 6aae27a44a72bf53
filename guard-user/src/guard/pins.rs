//! What a guard leaves in bpffs: its maps (adopted by the next guard when of
//! this layout version) and, with `--persist`, its links.

use std::fs;

use anyhow::{Context as _, Result};
use aya::programs::{
    SchedClassifier, Xdp,
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLinkId as TcLinkId,
};
use guard_common::{
    CSUM_CONFIG_MAP, CSUM_COUNTERS_MAP, GSO_CONFIG_MAP, GSO_COUNTERS_MAP, MSS_CONFIG_MAP,
    MSS_COUNTERS_MAP, PEERS_V4_MAP, PEERS_V6_MAP, PIN_CONFIG, PIN_COUNTERS, PIN_CSUM_COUNTERS,
    PIN_GSO_COUNTERS,
};

use super::{Attachment, Features, Guard, object::program};
use crate::{
    host::kernel::{self, Feature},
    state::abi_path,
};

/// Gives an adopted link (of type `L`) the new program through `attach_to`
/// (BPF_LINK_UPDATE); None when there is none or it cannot be updated (a
/// mode change, or a device that is gone): then the caller attaches anew.
pub(super) fn update_adopted<L: TryFrom<FdLink>, I>(
    adopted: Option<FdLink>,
    attach_to: impl FnOnce(L) -> Result<I, aya::programs::ProgramError>,
) -> Option<I> {
    match adopted.map(L::try_from) {
        Some(Ok(link)) => attach_to(link).ok(),
        _ => None,
    }
}

/// The version of the maps' layout: pinned maps of another version are not
/// adopted (their counters restart from 0).
pub(super) const MAPS_ABI: &str = concat!("pktguard-maps-1 ", env!("CARGO_PKG_VERSION"));

/// Every map a guard pins, and its pin name: counters and configuration, so
/// that a restarted guard adopts them (counters go on counting).
pub(super) fn map_pins(features: &Features) -> Vec<(&'static str, &'static str)> {
    let mut pins = vec![
        (MSS_COUNTERS_MAP, PIN_COUNTERS),
        (MSS_CONFIG_MAP, PIN_CONFIG),
        (guard_common::EVENTS_MAP, guard_common::PIN_EVENTS),
    ];
    if features.repair.is_some() {
        pins.extend([
            (CSUM_COUNTERS_MAP, PIN_CSUM_COUNTERS),
            (CSUM_CONFIG_MAP, "csum_config"),
            (PEERS_V4_MAP, "peers_v4"),
            (PEERS_V6_MAP, "peers_v6"),
        ]);
    }
    if features.gso.is_some() {
        pins.extend([
            (GSO_COUNTERS_MAP, PIN_GSO_COUNTERS),
            (GSO_CONFIG_MAP, "gso_config"),
        ]);
    }
    pins
}

impl Guard {
    /// Keeps what an earlier guard pinned if it is of this version: maps
    /// of another version are removed (new ones start at 0), links always
    /// stay until replaced.
    pub(super) fn prepare_pin_dir(&mut self) -> Result<()> {
        let dir = &self.pin_dir;
        if dir.exists() {
            let abi = fs::read_to_string(abi_path(&self.lock_path)).unwrap_or_default();
            if abi != MAPS_ABI {
                for entry in fs::read_dir(dir)?.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.starts_with("link_") {
                        let _ = fs::remove_file(entry.path());
                    }
                }
                if !abi.is_empty() {
                    self.notes.push(format!(
                        "pinned maps of another version ({abi}) replaced: counters restart at 0"
                    ));
                }
            } else {
                self.notes
                    .push("adopted the pinned maps of an earlier run".to_string());
            }
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
    }

    /// Records the layout version of the maps just pinned.
    pub(super) fn write_abi(&self) -> Result<()> {
        let abi = abi_path(&self.lock_path);
        fs::write(&abi, MAPS_ABI).with_context(|| format!("writing {}", abi.display()))
    }

    /// Unpins every link (a re-created device took the old links with it).
    pub(super) fn unpin_links(&self) {
        for pin in Attachment::ALL_LINK_PINS {
            let _ = fs::remove_file(self.pin_dir.join(pin));
        }
    }

    /// Detaches links pinned by an earlier guard that this one does not use
    /// (it attached elsewhere: XDP then, TC now). Done after the new
    /// attachments, so there is no gap.
    pub(super) fn drop_unwanted_links(&mut self) -> Result<()> {
        let wanted: Vec<&str> = self.attached.iter().map(|a| a.link_pin()).collect();
        for pin in Attachment::ALL_LINK_PINS {
            let path = self.pin_dir.join(pin);
            if !wanted.contains(&pin) && path.exists() {
                // Unpinning the last reference detaches the link.
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// With `persist`, moves the TCX link `id` of program `name` to its
    /// pin, where it outlives this process.
    pub(super) fn pin_tc_link(&mut self, name: &str, id: TcLinkId, a: Attachment) -> Result<()> {
        if self.persist {
            let link = program::<SchedClassifier>(self.ebpf(), name)?.take_link(id)?;
            self.pin_link(link.try_into().context("a TCX link")?, a)?;
        }
        Ok(())
    }

    pub(super) fn pin_xdp_link(
        &mut self,
        name: &str,
        id: aya::programs::xdp::XdpLinkId,
        a: Attachment,
    ) -> Result<()> {
        if !self.persist {
            return Ok(());
        }
        let link = program::<Xdp>(self.ebpf(), name)?.take_link(id)?;
        if !kernel::has(Feature::XdpLink) {
            // A netlink attachment: aya 0.16 detaches it when a conversion
            // to FdLink fails (0.14 let it go), so it is never converted.
            std::mem::forget(link);
            self.notes.push(
                "XDP attached by netlink (no XDP links before 5.9): it cannot be pinned, and stays until detach"
                    .to_string(),
            );
            return Ok(());
        }
        self.pin_link(FdLink::try_from(link).context("an XDP link")?, a)
    }

    /// Pins `link` as attachment `a`'s, where it outlives this process.
    fn pin_link(&self, link: FdLink, a: Attachment) -> Result<()> {
        let path = self.pin_dir.join(a.link_pin());
        link.pin(&path)
            .with_context(|| format!("pinning {}", path.display()))?;
        Ok(())
    }

    /// The pinned link of `a` from an earlier guard, unpinned (this guard
    /// now holds it), if there is one.
    pub(super) fn adopt_link(&mut self, a: Attachment) -> Option<FdLink> {
        let path = self.pin_dir.join(a.link_pin());
        if !path.exists() {
            return None;
        }
        match PinnedLink::from_pin(&path).map(|l| l.unpin()) {
            Ok(Ok(fd)) => Some(fd),
            _ => {
                // A pin that is not a live link (left by a crash mid-way).
                let _ = fs::remove_file(&path);
                None
            }
        }
    }
}
