//! The malformed-GSO guard's attachment (TC ingress, typed where the kernel
//! allows it) and where `skb_shinfo(skb)->gso_type` is, from the kernel's BTF.

use anyhow::{Context as _, Result, anyhow, ensure};
use aya::programs::{SchedClassifier, TcAttachType};
use guard_common::{GsoLayout, PROG_TC_GSO, PROG_TC_GSO_TYPED};

use super::{
    Attachment, Guard,
    object::{Lazy as _, loaded, program},
};
use crate::host::{
    btf::Btf,
    kernel::{self, Feature},
};

impl Guard {
    /// The GSO guard runs at TC ingress whatever `--attach` says: GSO
    /// metadata exists on skbs only. The typed program (gso_type checked)
    /// where the kernel allows it, else the untyped one, with a note.
    pub(super) fn attach_gso(&mut self) -> Result<()> {
        self.ensure_clsact()?;
        // Without the helper (reported once at start) the untyped one,
        // without a note per interface.
        let typed = match gso_layout() {
            _ if !kernel::has(Feature::GsoType) => Err(None),
            Err(e) => Err(Some(e)),
            Ok(_) => program::<SchedClassifier>(self.ebpf(), PROG_TC_GSO_TYPED)?
                .load_once()
                .map_err(|e| Some(anyhow!(e).context("bpf_probe_read_kernel refused at TC"))),
        };
        let name = match typed {
            Ok(()) => PROG_TC_GSO_TYPED,
            Err(None) => PROG_TC_GSO,
            Err(Some(e)) => {
                self.notes.push(format!(
                    "gso guard: gso_type is not checked (TCPv4 GSO on IPv6 or UDP passes): {e:#}"
                ));
                PROG_TC_GSO
            }
        };
        loaded::<SchedClassifier>(self.ebpf(), name, "loading the GSO guard (verifier)")?;
        self.tc_link(name, TcAttachType::Ingress, Attachment::TcGso)
            .with_context(|| format!("the GSO guard on {}", self.iface))
    }
}

/// Where `skb_shinfo(skb)->gso_type` is in the running kernel, and its
/// SKB_GSO_* bits, from the kernel's BTF: read once per process (every
/// guard's load and GSO attach asked for it, a parse of several MB each).
pub fn gso_layout() -> Result<GsoLayout> {
    static LAYOUT: std::sync::OnceLock<std::result::Result<GsoLayout, String>> =
        std::sync::OnceLock::new();
    LAYOUT
        .get_or_init(|| read_gso_layout().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn read_gso_layout() -> Result<GsoLayout> {
    let btf = Btf::from_kernel()?;
    let head = btf.member("sk_buff", "head")?;
    let end = btf.member("sk_buff", "end")?;
    ensure!(
        head.size == 8 && end.size == 4,
        "sk_buff.end is not an offset from head (a 32-bit kernel?)"
    );
    let bit = |name: &str| -> Result<u32> {
        let v = btf
            .enumerator(name)
            .ok_or_else(|| anyhow!("{name} not in the kernel's BTF"))?;
        u32::try_from(v).with_context(|| format!("{name} = {v}"))
    };
    // Bits a kernel may lack (UDP_L4 is 4.18+, UDP was removed in 4.15) count as 0.
    let maybe = |name: &str| bit(name).unwrap_or(0);
    let tunnel = [
        "SKB_GSO_GRE",
        "SKB_GSO_GRE_CSUM",
        "SKB_GSO_IPXIP4",
        "SKB_GSO_IPXIP6",
        "SKB_GSO_UDP_TUNNEL",
        "SKB_GSO_UDP_TUNNEL_CSUM",
        "SKB_GSO_ESP",
        "SKB_GSO_TUNNEL_REMCSUM",
    ]
    .iter()
    .fold(0, |m, n| m | maybe(n));
    Ok(GsoLayout {
        skb_head: head.offset,
        skb_end: end.offset,
        shinfo_gso_type: btf.member("skb_shared_info", "gso_type")?.offset,
        tcpv4: bit("SKB_GSO_TCPV4")?,
        tcpv6: bit("SKB_GSO_TCPV6")?,
        udp: maybe("SKB_GSO_UDP") | maybe("SKB_GSO_UDP_L4"),
        tunnel,
        _pad: 0,
    })
}
