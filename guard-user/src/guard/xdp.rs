//! XDP attach policy: native or generic XDP, auto mode's choice between
//! XDP and TC, and the hint when a driver refuses native XDP.

use anyhow::{Result, anyhow, bail};
use aya::programs::{TcAttachType, Xdp, XdpMode, xdp::XdpLink};
use guard_common::{PROG_XDP, PROG_XDP_FRAGS};

use super::{
    Attachment, Guard,
    object::{loaded, program, xdp_frags_supported},
    pins::update_adopted,
};
use crate::host::iface::Iface;

impl Guard {
    /// Native XDP on physical NICs (on veth and other virtual devices native
    /// XDP copies every frame and costs more than TC), TC elsewhere or when
    /// the driver refuses.
    pub(super) fn attach_auto(&mut self) -> Result<()> {
        let (driver, bus) = self
            .iface
            .driver
            .clone()
            .map(|d| (d.name, d.bus))
            .unwrap_or_default();
        if bus.is_empty() {
            let what = if driver.is_empty() {
                "virtual".to_string()
            } else {
                driver
            };
            self.notes
                .push(format!("{what} device: TC costs less than XDP here"));
            return self.attach_tc(TcAttachType::Ingress);
        }
        if self.features.repair.is_some() && !xdp_frags_supported() {
            self.notes
                .push("checksum repair at XDP needs Linux 5.18+: using TC".to_string());
            return self.attach_tc(TcAttachType::Ingress);
        }
        match self.attach_xdp(XdpMode::Driver) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.notes
                    .push(format!("native XDP refused ({e:#}): falling back to TC"));
                self.attach_tc(TcAttachType::Ingress)
            }
        }
    }

    pub(super) fn attach_xdp(&mut self, mode: XdpMode) -> Result<()> {
        let iface = self.iface.clone();
        // The multi-buffer flavour where the kernel has it: it also takes
        // jumbo frames, and only it can repair checksums.
        let name = if xdp_frags_supported() {
            PROG_XDP_FRAGS
        } else if self.features.repair.is_some() {
            bail!("checksum repair at XDP needs Linux 5.18+ (multi-buffer XDP): use --attach tc");
        } else {
            PROG_XDP
        };
        loaded::<Xdp>(self.ebpf(), name, "loading the XDP program (verifier)")?;
        let attachment = if mode == XdpMode::Driver {
            Attachment::XdpNative
        } else {
            Attachment::XdpGeneric
        };
        let adopted = self.adopt_link(attachment);
        let prog = program::<Xdp>(self.ebpf(), name)?;
        // An adopted link keeps its mode: a mode change attaches anew.
        let updated = update_adopted::<XdpLink, _>(adopted, |l| prog.attach_to_link(l));
        let id = match updated {
            Some(id) => id,
            None => prog.attach(&iface.c_name()?, mode).map_err(|e| {
                let hint = if mode == XdpMode::Driver {
                    xdp_refusal_hint(&iface)
                } else {
                    String::new()
                };
                anyhow!(e).context(format!("attaching XDP to {iface}{hint}"))
            })?,
        };
        self.pin_xdp_link(name, id, attachment)?;
        self.attached.push(attachment);
        Ok(())
    }
}

/// Why a driver may refuse native XDP, in words an operator can act on.
fn xdp_refusal_hint(iface: &Iface) -> String {
    match &iface.driver {
        Some(d) if d.name == "virtio_net" => format!(
            " (virtio_net refuses XDP while the host offloads GRO/checksums: try `ethtool -K {iface} gro off` or --attach tc)"
        ),
        Some(d) => format!(
            " (driver {}; try --attach tc or --attach xdp-generic)",
            d.name
        ),
        None => " (try --attach tc or --attach xdp-generic)".to_string(),
    }
}
