//! TC attachments: TCX links (6.6+), and before TCX cls_bpf filters in
//! pktguard's own slot of a clsact qdisc, replaced in place on restart.

use anyhow::{Context as _, Result, anyhow};
use aya::programs::{SchedClassifier, TcAttachType, tc};
use guard_common::{PROG_TC_EGRESS, PROG_TC_INGRESS};

use super::{
    Attachment, Guard,
    object::{loaded, program},
    pins::update_adopted,
};
use crate::host::{
    iface::ifname,
    kernel::{self, Feature},
};

impl Guard {
    /// TCX (6.6+) needs no qdisc; the netlink fallback needs clsact.
    pub(super) fn ensure_clsact(&mut self) -> Result<()> {
        // Always asked: a re-created device has none.
        self.added_clsact |= ensure_clsact(&self.iface.name)?;
        Ok(())
    }

    pub(super) fn attach_tc(&mut self, at: TcAttachType) -> Result<()> {
        self.ensure_clsact()?;
        let (name, attachment) = match at {
            TcAttachType::Egress => (PROG_TC_EGRESS, Attachment::TcEgress),
            _ => (PROG_TC_INGRESS, Attachment::TcIngress),
        };
        loaded::<SchedClassifier>(self.ebpf(), name, "loading the TC program (verifier)")?;
        self.tc_link(name, at, attachment)
    }

    /// Attaches TC program `name` (loaded), replacing an adopted link's
    /// program atomically where there is one, and pins the link (persist).
    pub(super) fn tc_link(
        &mut self,
        name: &str,
        at: TcAttachType,
        attachment: Attachment,
    ) -> Result<()> {
        if !tcx_supported() {
            return self.netlink_filter(name, at, attachment);
        }
        let iface = self.iface.clone();
        let adopted = self.adopt_link(attachment);
        let prog = program::<SchedClassifier>(self.ebpf(), name)?;
        // A link whose device is gone ("severed") cannot be updated: attach anew.
        let updated =
            update_adopted::<tc::SchedClassifierLink, _>(adopted, |l| prog.attach_to_link(l));
        let id = match updated {
            Some(id) => id,
            None => prog
                .attach(&iface.c_name()?, at)
                .with_context(|| format!("attaching {} to {iface}", attachment.name()))?,
        };
        self.pin_tc_link(name, id, attachment)?;
        self.attached.push(attachment);
        Ok(())
    }

    /// Before TCX (6.6): a cls_bpf filter in pktguard's own slot (priority
    /// and handle) of the clsact qdisc. A filter an earlier guard left there
    /// (`--persist`, or a killed daemon: netlink filters outlive their
    /// process) gets this program in place, atomically, as TCX links do;
    /// with `--persist` this one is left attached on exit the same way.
    fn netlink_filter(&mut self, name: &str, at: TcAttachType, a: Attachment) -> Result<()> {
        let iface = self.iface.clone();
        let persist = self.persist;
        let (priority, handle) = netlink_slot(a);
        let prog = program::<SchedClassifier>(self.ebpf(), name)?;
        let earlier =
            tc::SchedClassifierLink::attached(&iface.c_name()?, at.into(), priority, handle, None)
                .with_context(|| format!("no interface {iface}"))?;
        let (id, replaced) = match prog.attach_to_link(earlier) {
            Ok(id) => (id, true),
            Err(_) => {
                let options = tc::TcAttach::Netlink {
                    parent: at.into(),
                    options: tc::NlOptions {
                        priority,
                        handle,
                        ..Default::default()
                    },
                };
                let id = prog
                    .attach(&iface.c_name()?, options)
                    .with_context(|| format!("attaching {} to {iface}", a.name()))?;
                (id, false)
            }
        };
        if persist {
            // Not detached when this process exits: the next guard replaces
            // it, `pktguard detach` removes it.
            std::mem::forget(prog.take_link(id)?);
        }
        if replaced {
            self.notes.push(format!(
                "{}: replaced the filter an earlier pktguard left (priority {priority:#x})",
                a.name()
            ));
        }
        self.attached.push(a);
        Ok(())
    }
}

/// pktguard's filter slot (priority, handle) on clsact for attachment `a`
/// (kernels without TCX). The GSO guard comes first at ingress: it drops
/// what the clamp need not look at.
pub fn netlink_slot(a: Attachment) -> (u16, tc::TcHandle) {
    let priority = match a {
        Attachment::TcGso => 0x4701,
        _ => 0x4702,
    };
    (priority, tc::TcHandle::new(0, 0x7067))
}

/// Removes the filters pktguard left on `iface` (kernels without TCX:
/// a `--persist` guard or a killed one); how many there were.
pub fn detach_netlink_filters(iface: &str) -> usize {
    if tcx_supported() {
        return 0;
    }
    let mut n = 0;
    for (a, at) in [
        (Attachment::TcIngress, TcAttachType::Ingress),
        (Attachment::TcGso, TcAttachType::Ingress),
        (Attachment::TcEgress, TcAttachType::Egress),
    ] {
        let (priority, handle) = netlink_slot(a);
        let Ok(name) = ifname(iface) else {
            return n;
        };
        if let Ok(link) =
            tc::SchedClassifierLink::attached(&name, at.into(), priority, handle, None)
            && aya::programs::links::Link::detach(link).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Adds the clsact qdisc netlink TC attachments need (kernels without
/// TCX, before 6.6); true if this call added it.
pub fn ensure_clsact(iface: &str) -> Result<bool> {
    if tcx_supported() {
        return Ok(false);
    }
    match tc::qdisc_add_clsact(&ifname(iface)?) {
        Ok(()) => Ok(true),
        Err(e) if is_exists(&e) => Ok(false),
        Err(e) => Err(anyhow!(e)).context(format!("adding a clsact qdisc to {iface}")),
    }
}

fn tcx_supported() -> bool {
    kernel::has(Feature::Tcx)
}

fn is_exists(e: &tc::TcError) -> bool {
    match e {
        tc::TcError::AlreadyAttached => true,
        tc::TcError::NetlinkError(n) => n.raw_os_error() == Some(libc::EEXIST),
        _ => false,
    }
}
