//! The contract between the eBPF programs and the `pktguard` loader.
//!
//! Everything that crosses the kernel/user boundary is defined here once:
//! attach points, counter indexes, the configuration record and the names of
//! maps, programs and pins. Both sides index counters through these enums, so
//! they cannot drift apart.
#![no_std]

/// Where a program runs. The counter map holds one block of counters per hook.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    XdpIngress = 0,
    TcIngress = 1,
    TcEgress = 2,
}

impl Hook {
    pub const COUNT: usize = 3;
    pub const ALL: [Hook; Self::COUNT] = [Hook::XdpIngress, Hook::TcIngress, Hook::TcEgress];

    pub const fn name(self) -> &'static str {
        match self {
            Hook::XdpIngress => "xdp-ingress",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
}

/// Per-CPU counters of the MSS clamp, one block per [`Hook`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssCounter {
    /// Every packet the program ran on.
    Seen = 0,
    /// TCP segments with SYN set and RST clear (SYN and SYN-ACK).
    Syn = 1,
    /// SYNs whose MSS option was lowered to the clamp.
    Clamped = 2,
    /// SYNs whose MSS was already at or below the clamp.
    AlreadySmall = 3,
    /// SYNs without an MSS option (left unchanged).
    NoMssOption = 4,
    /// Truncated or inconsistent headers or options: passed untouched.
    Malformed = 5,
    /// TCP behind IPv6 extension headers, or IPv4 fragments: passed untouched.
    Skipped = 6,
}

impl MssCounter {
    pub const COUNT: usize = 7;
    pub const ALL: [MssCounter; Self::COUNT] = [
        MssCounter::Seen,
        MssCounter::Syn,
        MssCounter::Clamped,
        MssCounter::AlreadySmall,
        MssCounter::NoMssOption,
        MssCounter::Malformed,
        MssCounter::Skipped,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MssCounter::Seen => "seen",
            MssCounter::Syn => "syn",
            MssCounter::Clamped => "clamped",
            MssCounter::AlreadySmall => "already_small",
            MssCounter::NoMssOption => "no_mss_option",
            MssCounter::Malformed => "malformed",
            MssCounter::Skipped => "skipped",
        }
    }

    /// Index of this counter in the counter map for `hook`.
    pub const fn index(self, hook: Hook) -> u32 {
        hook as u32 * Self::COUNT as u32 + self as u32
    }
}

/// Number of entries of the counter map.
pub const MSS_COUNTER_ENTRIES: u32 = (Hook::COUNT * MssCounter::COUNT) as u32;

/// How the frames of an interface begin.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// An Ethernet header, possibly VLAN tags, then IP.
    Ethernet = 0,
    /// The IP header directly (tun, wireguard, ipip devices).
    RawIp = 1,
}

/// The clamp configuration: entry 0 of [`MSS_CONFIG_MAP`]. Updating the map
/// changes the clamp of a running program without reloading it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MssConfig {
    /// Largest MSS allowed on IPv4 SYNs; 0 disables the clamp for IPv4.
    pub mss_v4: u16,
    /// Largest MSS allowed on IPv6 SYNs; 0 disables the clamp for IPv6.
    pub mss_v6: u16,
    /// A [`LinkKind`] value.
    pub link_kind: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<MssConfig>() == 8);

impl MssConfig {
    pub const fn new(mss_v4: u16, mss_v6: u16, link_kind: LinkKind) -> Self {
        MssConfig {
            mss_v4,
            mss_v6,
            link_kind: link_kind as u8,
            _pad: [0; 3],
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for MssConfig {}

/// Map names, as the eBPF object defines them.
pub const MSS_CONFIG_MAP: &str = "MSS_CONFIG";
pub const MSS_COUNTERS_MAP: &str = "MSS_COUNTERS";

/// Program names, as the eBPF object defines them.
pub const PROG_XDP: &str = "guard_xdp";
pub const PROG_TC_INGRESS: &str = "guard_tc_ingress";
pub const PROG_TC_EGRESS: &str = "guard_tc_egress";
/// Programs that return at once: the baseline of `cargo xtask bench`.
pub const PROG_BENCH_EMPTY_XDP: &str = "bench_empty_xdp";
pub const PROG_BENCH_EMPTY_TC: &str = "bench_empty_tc";

/// Where bpffs is mounted, and pktguard's directory in it.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
pub const PIN_DIR: &str = "/sys/fs/bpf/pktguard";
/// Names of the pins inside an interface's directory under [`PIN_DIR`].
pub const PIN_COUNTERS: &str = "mss_counters";
pub const PIN_CONFIG: &str = "mss_config";
/// Lock and state files of running guards, one per interface.
pub const RUN_DIR: &str = "/run/pktguard";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_indexes_are_dense_and_unique() {
        let mut seen = [false; MSS_COUNTER_ENTRIES as usize];
        for hook in Hook::ALL {
            for counter in MssCounter::ALL {
                let i = counter.index(hook) as usize;
                assert!(!seen[i], "index {i} used twice");
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
