//! What the running kernel offers the guard, found once per process, and
//! what pktguard does where a piece is missing. `pktguard run` reports each
//! missing piece once, in words, at start; the loader takes the fallback
//! without further notes (and never shows a verifier dump for it).
//!
//! Probed where a probe answers the question: helpers by loading a
//! two-instruction program (aya's probe, as libbpf does). Versions where
//! aya itself decides by version (TCX: the fallback must be the one aya
//! takes), where a probe would attach to a real device (XDP links) or where nothing can be probed without a program that
//! reads the field (`__sk_buff.gso_size`).

use std::sync::OnceLock;

use aya::{
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported},
};

use super::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// TCX attachments (6.6): else cls_bpf filters on a clsact qdisc.
    Tcx,
    /// XDP bpf_link (5.9): else XDP attached by netlink.
    XdpLink,
    /// Multi-buffer XDP and bpf_xdp_load_bytes (5.18).
    XdpFrags,
    /// `__sk_buff.gso_size` (5.7).
    GsoSize,
    /// bpf_probe_read_kernel from TC with the kernel's BTF (5.5): the GSO
    /// guard reads skb_shinfo(skb)->gso_type.
    GsoType,
    /// The kernel's BTF (/sys/kernel/btf/vmlinux): where the drop monitor
    /// finds sk_buff's and net_device's fields.
    KernelBtf,
}

impl Feature {
    pub const ALL: [Feature; 6] = [
        Feature::Tcx,
        Feature::XdpLink,
        Feature::XdpFrags,
        Feature::GsoSize,
        Feature::GsoType,
        Feature::KernelBtf,
    ];

    /// What it is, and the release that brought it.
    pub const fn what(self) -> (&'static str, &'static str) {
        match self {
            Feature::Tcx => ("TCX", "6.6"),
            Feature::XdpLink => ("XDP links", "5.9"),
            Feature::XdpFrags => ("multi-buffer XDP", "5.18"),
            Feature::GsoSize => ("__sk_buff.gso_size", "5.7"),
            Feature::GsoType => ("bpf_probe_read_kernel at TC with BTF", "5.5"),
            Feature::KernelBtf => ("kernel BTF", "5.4, CONFIG_DEBUG_INFO_BTF"),
        }
    }

    /// What pktguard does without it.
    pub const fn without(self) -> &'static str {
        match self {
            Feature::Tcx => {
                "TC programs are cls_bpf filters on a clsact qdisc, in pktguard's own slot (a restart replaces them in place)"
            }
            Feature::XdpLink => {
                "XDP is attached by netlink: --persist cannot pin it, and a restart re-attaches"
            }
            Feature::XdpFrags => {
                "XDP takes frames of one page only and cannot repair checksums: --attach auto uses TC for --csum-repair"
            }
            Feature::GsoSize => {
                "no --gso-guard, and the checksum repair cannot tell GRO aggregates from frames"
            }
            Feature::GsoType => {
                "the GSO guard checks gso_size and segments, not gso_type (TCPv4 GSO on IPv6 or UDP passes)"
            }
            Feature::KernelBtf => {
                "the drop monitor counts drops by location, without device or protocol (drops --iface is refused)"
            }
        }
    }
}

/// The running kernel's answer for each feature (probed once).
pub fn has(f: Feature) -> bool {
    static FOUND: OnceLock<[bool; Feature::ALL.len()]> = OnceLock::new();
    FOUND.get_or_init(|| Feature::ALL.map(probe))[f as usize]
}

fn at_least(v: (u32, u32)) -> bool {
    sys::kernel_version().is_ok_and(|k| k >= v)
}

fn probe(f: Feature) -> bool {
    match f {
        // aya 0.16 attaches TC by TCX from 6.6, by version: the report must
        // say what aya does. XDP: aya tries a link and takes netlink on
        // EINVAL, the answer of every kernel before 5.9.
        Feature::Tcx => at_least((6, 6)),
        Feature::XdpLink => at_least((5, 9)),
        Feature::GsoSize => at_least((5, 7)),
        Feature::XdpFrags => {
            is_helper_supported(ProgramType::Xdp, BpfHelper::BPF_FUNC_xdp_load_bytes)
                .unwrap_or_else(|_| at_least((5, 18)))
        }
        Feature::KernelBtf => std::path::Path::new(super::btf::VMLINUX).exists(),
        Feature::GsoType => {
            // probe, not has(): inside has()'s one-time initialisation.
            probe(Feature::KernelBtf)
                && is_helper_supported(
                    ProgramType::SchedClassifier,
                    BpfHelper::BPF_FUNC_probe_read_kernel,
                )
                .unwrap_or_else(|_| at_least((5, 5)))
        }
    }
}

/// One line per missing feature: what, since when, and what pktguard does
/// instead.
pub fn missing() -> Vec<String> {
    let release = sys::kernel_release().unwrap_or_else(|_| "?".into());
    Feature::ALL
        .iter()
        .filter(|f| !has(**f))
        .map(|f| {
            let (what, since) = f.what();
            format!(
                "kernel {release} has no {what} (Linux {since}+): {}",
                f.without()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Feature;

    #[test]
    fn every_feature_says_what_happens_without_it() {
        for f in Feature::ALL {
            let (what, since) = f.what();
            assert!(!what.is_empty() && since.contains('.'), "{f:?}");
            assert!(f.without().len() > 20, "{f:?}");
        }
        // `has` indexes by discriminant.
        for (i, f) in Feature::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
    }
}
