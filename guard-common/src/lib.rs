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

/// What the clamp did with one packet. The programs count exactly one
/// outcome per packet (one per-CPU increment, the whole cost of counting);
/// the counters operators read ([`MssCounter`]) are sums of outcomes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssOutcome {
    /// Not TCP, or TCP without SYN (or with RST): passed.
    NotSyn = 0,
    /// A SYN whose MSS option was lowered to the clamp.
    Clamped = 1,
    /// A SYN whose MSS was already at or below the clamp.
    AlreadySmall = 2,
    /// A SYN without an MSS option (left unchanged).
    NoMssOption = 3,
    /// A SYN of a family whose clamp is 0 (off).
    Disabled = 4,
    /// A SYN with malformed options: passed untouched.
    MalformedSyn = 5,
    /// Truncated or inconsistent headers: passed untouched.
    Malformed = 6,
    /// A SYN behind IPv6 extension headers or in a fragment: passed untouched.
    SkippedSyn = 7,
    /// More IPv6 extension headers than the parser walks, or ESP.
    Skipped = 8,
}

impl MssOutcome {
    /// The outcome's name in metrics (`reason` label).
    pub const fn name(self) -> &'static str {
        match self {
            MssOutcome::NotSyn => "not_syn",
            MssOutcome::Clamped => "clamped",
            MssOutcome::AlreadySmall => "already_small",
            MssOutcome::NoMssOption => "no_mss_option",
            MssOutcome::Disabled => "disabled",
            MssOutcome::MalformedSyn => "malformed_syn",
            MssOutcome::Malformed => "malformed",
            MssOutcome::SkippedSyn => "skipped_syn",
            MssOutcome::Skipped => "skipped",
        }
    }

    pub const COUNT: usize = 9;
    pub const ALL: [MssOutcome; Self::COUNT] = [
        MssOutcome::NotSyn,
        MssOutcome::Clamped,
        MssOutcome::AlreadySmall,
        MssOutcome::NoMssOption,
        MssOutcome::Disabled,
        MssOutcome::MalformedSyn,
        MssOutcome::Malformed,
        MssOutcome::SkippedSyn,
        MssOutcome::Skipped,
    ];

    /// Index of this outcome's counter in the counter map for `hook`.
    pub const fn index(self, hook: Hook) -> u32 {
        hook as u32 * Self::COUNT as u32 + self as u32
    }

    pub const fn is_syn(self) -> bool {
        matches!(
            self,
            MssOutcome::Clamped
                | MssOutcome::AlreadySmall
                | MssOutcome::NoMssOption
                | MssOutcome::Disabled
                | MssOutcome::MalformedSyn
                | MssOutcome::SkippedSyn
        )
    }

    /// The reported counter this outcome adds to, besides `seen` (and `syn`).
    pub const fn counter(self) -> Option<MssCounter> {
        match self {
            MssOutcome::NotSyn | MssOutcome::Disabled => None,
            MssOutcome::Clamped => Some(MssCounter::Clamped),
            MssOutcome::AlreadySmall => Some(MssCounter::AlreadySmall),
            MssOutcome::NoMssOption => Some(MssCounter::NoMssOption),
            MssOutcome::MalformedSyn | MssOutcome::Malformed => Some(MssCounter::Malformed),
            MssOutcome::SkippedSyn | MssOutcome::Skipped => Some(MssCounter::Skipped),
        }
    }
}

/// The counters of the MSS clamp as operators read them, per [`Hook`].
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
    /// SYNs behind IPv6 extension headers or in fragments, and extension
    /// header chains too deep to walk: passed untouched.
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

    /// The reported counters, from the outcome counts of one hook.
    pub fn from_outcomes(outcomes: &[u64; MssOutcome::COUNT]) -> [u64; MssCounter::COUNT] {
        let mut c = [0u64; MssCounter::COUNT];
        for o in MssOutcome::ALL {
            let n = outcomes[o as usize];
            c[MssCounter::Seen as usize] += n;
            if o.is_syn() {
                c[MssCounter::Syn as usize] += n;
            }
            if let Some(counter) = o.counter() {
                c[counter as usize] += n;
            }
        }
        c
    }
}

/// Number of entries of the counter map.
pub const MSS_COUNTER_ENTRIES: u32 = (Hook::COUNT * MssOutcome::COUNT) as u32;

/// How the frames of an interface begin: a load-time constant of the
/// programs (global [`LINK_KIND_GLOBAL`]), fixed per interface.
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
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<MssConfig>() == 8);

impl MssConfig {
    pub const fn new(mss_v4: u16, mss_v6: u16) -> Self {
        MssConfig {
            mss_v4,
            mss_v6,
            _pad: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for MssConfig {}

/// The `u8` global holding the interface's [`LinkKind`], set at load time.
pub const LINK_KIND_GLOBAL: &str = "LINK_KIND";

/// What the overlay checksum repair did with one packet (one per packet).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumOutcome {
    /// Not UDP to a VXLAN port from a peer range: none of its business,
    /// and not counted (the programs skip the increment).
    NotVxlan = 0,
    /// The outer UDP checksum verifies.
    OuterOk = 1,
    /// The outer UDP checksum is 0 ("none"): left alone.
    OuterZero = 2,
    /// The outer checksum was wrong, the inner one proved the payload
    /// intact: the outer checksum was rewritten.
    OuterRepaired = 3,
    /// Outer and inner checksums both wrong: real corruption, untouched.
    InnerBad = 4,
    /// Outer checksum wrong, but nothing inside can prove the payload
    /// intact (inner not TCP/UDP, inner UDP without checksum, a fragment,
    /// a GSO aggregate): untouched.
    NotInScope = 5,
    /// Headers cut short, or a datagram longer than the repair sums.
    Truncated = 6,
}

impl CsumOutcome {
    pub const COUNT: usize = 7;
    pub const ALL: [CsumOutcome; Self::COUNT] = [
        CsumOutcome::NotVxlan,
        CsumOutcome::OuterOk,
        CsumOutcome::OuterZero,
        CsumOutcome::OuterRepaired,
        CsumOutcome::InnerBad,
        CsumOutcome::NotInScope,
        CsumOutcome::Truncated,
    ];

    /// Index of this outcome's counter in the counter map for `hook`.
    pub const fn index(self, hook: Hook) -> u32 {
        hook as u32 * Self::COUNT as u32 + self as u32
    }

    /// Name of the reported counter (`vxlan_seen` is the sum of all but
    /// `NotVxlan`).
    pub const fn name(self) -> &'static str {
        match self {
            CsumOutcome::NotVxlan => "not_vxlan",
            CsumOutcome::OuterOk => "outer_ok",
            CsumOutcome::OuterZero => "outer_zero",
            CsumOutcome::OuterRepaired => "outer_repaired",
            CsumOutcome::InnerBad => "unrepairable_inner_bad",
            CsumOutcome::NotInScope => "not_in_scope",
            CsumOutcome::Truncated => "truncated",
        }
    }
}

/// Number of entries of the repair's counter map.
pub const CSUM_COUNTER_ENTRIES: u32 = (Hook::COUNT * CsumOutcome::COUNT) as u32;

/// How a repaired outer checksum is written.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumMode {
    /// The correct checksum, computed over the datagram.
    Recompute = 0,
    /// 0, "no checksum" (IPv4 outer only; IPv6 outers are recomputed).
    Zero = 1,
}

/// Most VXLAN ports one guard matches.
pub const MAX_VXLAN_PORTS: usize = 4;

/// The repair configuration: entry 0 of [`CSUM_CONFIG_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsumConfig {
    /// UDP destination ports, host order; 0 = unused slot.
    pub ports: [u16; MAX_VXLAN_PORTS],
    /// A [`CsumMode`] value.
    pub mode: u8,
    /// 1: any IPv4 (IPv6) peer; 0: only peers in the PEERS_V4 (V6) trie.
    pub any_peer_v4: u8,
    pub any_peer_v6: u8,
    pub _pad: [u8; 5],
}

const _: () = assert!(core::mem::size_of::<CsumConfig>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for CsumConfig {}

/// Features compiled in at load time (the `FEATURES` global): the verifier
/// removes the code of a feature that is off.
pub const FEATURE_MSS: u8 = 1;
pub const FEATURE_CSUM: u8 = 2;
pub const FEATURES_GLOBAL: &str = "FEATURES";
/// The `u8` global telling the programs that `__sk_buff.gso_size` exists.
pub const HAS_GSO_SIZE_GLOBAL: &str = "HAS_GSO_SIZE";

pub const CSUM_CONFIG_MAP: &str = "CSUM_CONFIG";
pub const CSUM_COUNTERS_MAP: &str = "CSUM_COUNTERS";
pub const PEERS_V4_MAP: &str = "PEERS_V4";
pub const PEERS_V6_MAP: &str = "PEERS_V6";
pub const PIN_CSUM_COUNTERS: &str = "csum_counters";
/// The multi-buffer XDP program (Linux 5.18+): the only XDP flavour that
/// can repair checksums, since it reads frames across fragments.
pub const PROG_XDP_FRAGS: &str = "guard_xdp_frags";
/// Test-only: does to outer VXLAN checksums what pre-5.7 NAT did.
pub const PROG_LAB_DOUBLE_SNAT: &str = "lab_double_snat";
pub const LAB_SNAT_COUNTERS_MAP: &str = "LAB_SNAT_COUNTERS";
pub const LAB_CORRUPT_GLOBAL: &str = "LAB_CORRUPT";

/// What the GSO guard found in one packet (counted once per GSO packet).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoOutcome {
    /// Not a GSO packet (gso_size 0): not counted.
    NotGso = 0,
    /// A GSO packet whose metadata is consistent.
    Ok = 1,
    /// L3 (after VLAN tags) is neither IPv4 nor IPv6.
    NotIp = 2,
    /// L4 is neither TCP nor UDP.
    NotTcpUdp = 3,
    /// An IPv4 fragment.
    Fragment = 4,
    /// ihl < 5, doff < 5, headers past the packet, total length below the headers.
    BadHeaders = 5,
    /// gso_size below the minimum (amplification: gso_size 1 makes thousands of segments).
    SizeTooSmall = 6,
    /// ceil(payload / gso_size) above the maximum.
    TooManySegments = 7,
    /// gso_segs set and different from ceil(payload / gso_size).
    SegsMismatch = 8,
    /// gso_type names the other IP version (TCPv4 GSO on an IPv6 packet).
    TypeVsIp = 9,
    /// gso_type names another L4 protocol (TCP GSO on a UDP packet).
    TypeVsL4 = 10,
}

impl GsoOutcome {
    pub const COUNT: usize = 11;
    pub const ALL: [GsoOutcome; Self::COUNT] = [
        GsoOutcome::NotGso,
        GsoOutcome::Ok,
        GsoOutcome::NotIp,
        GsoOutcome::NotTcpUdp,
        GsoOutcome::Fragment,
        GsoOutcome::BadHeaders,
        GsoOutcome::SizeTooSmall,
        GsoOutcome::TooManySegments,
        GsoOutcome::SegsMismatch,
        GsoOutcome::TypeVsIp,
        GsoOutcome::TypeVsL4,
    ];

    pub const fn index(self, hook: Hook) -> u32 {
        hook as u32 * Self::COUNT as u32 + self as u32
    }

    /// The reason's name in `pktguard stats` (`gso_ok` for a good packet).
    pub const fn name(self) -> &'static str {
        match self {
            GsoOutcome::NotGso => "not_gso",
            GsoOutcome::Ok => "gso_ok",
            GsoOutcome::NotIp => "not_ip",
            GsoOutcome::NotTcpUdp => "not_tcp_udp",
            GsoOutcome::Fragment => "ipv4_fragment",
            GsoOutcome::BadHeaders => "bad_headers",
            GsoOutcome::SizeTooSmall => "gso_size_too_small",
            GsoOutcome::TooManySegments => "too_many_segments",
            GsoOutcome::SegsMismatch => "gso_segs_mismatch",
            GsoOutcome::TypeVsIp => "gso_type_vs_ip",
            GsoOutcome::TypeVsL4 => "gso_type_vs_l4",
        }
    }

    /// A malformed packet: dropped or flagged, by `--gso-guard`.
    pub const fn is_malformed(self) -> bool {
        !matches!(self, GsoOutcome::NotGso | GsoOutcome::Ok)
    }
}

pub const GSO_COUNTER_ENTRIES: u32 = (Hook::COUNT * GsoOutcome::COUNT) as u32;

/// What the GSO guard does with a malformed packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoAction {
    /// Count it and let it go on.
    Flag = 0,
    /// Count it and drop it (TC_ACT_SHOT).
    Drop = 1,
}

/// TCP_MIN_MSS: no TCP stack segments below it.
pub const GSO_MIN_SIZE_DEFAULT: u32 = 88;
/// A 64 KiB aggregate at the minimum gso_size needs 745 segments; BIG TCP
/// aggregates (up to 512 KiB) at a 1448-byte MSS about 360.
pub const GSO_MAX_SEGS_DEFAULT: u32 = 1024;

/// The GSO guard's configuration: entry 0 of [`GSO_CONFIG_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsoConfig {
    pub min_size: u32,
    pub max_segs: u32,
    /// A [`GsoAction`] value.
    pub action: u8,
    pub _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<GsoConfig>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for GsoConfig {}

pub const GSO_CONFIG_MAP: &str = "GSO_CONFIG";
pub const GSO_COUNTERS_MAP: &str = "GSO_COUNTERS";
pub const PIN_GSO_COUNTERS: &str = "gso_counters";
/// The GSO guard's own TC ingress program: GSO metadata exists on skbs only.
pub const PROG_TC_GSO: &str = "guard_tc_gso";
/// The same, also checking `skb_shinfo(skb)->gso_type` against the headers:
/// needs `bpf_probe_read_kernel` at TC (root) and the kernel's BTF.
pub const PROG_TC_GSO_TYPED: &str = "guard_tc_gso_typed";
pub const GSO_LAYOUT_GLOBAL: &str = "GSO_LAYOUT";

/// Where gso_type lives in the running kernel and what its bits are, read
/// from the kernel's BTF by the loader (Rust eBPF has no CO-RE) and given
/// to [`PROG_TC_GSO_TYPED`] as a load-time global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GsoLayout {
    /// offsetof(struct sk_buff, head): a pointer.
    pub skb_head: u32,
    /// offsetof(struct sk_buff, end): an offset from head (64-bit kernels).
    pub skb_end: u32,
    /// offsetof(struct skb_shared_info, gso_type).
    pub shinfo_gso_type: u32,
    /// SKB_GSO_TCPV4.
    pub tcpv4: u32,
    /// SKB_GSO_TCPV6.
    pub tcpv6: u32,
    /// SKB_GSO_UDP | SKB_GSO_UDP_L4.
    pub udp: u32,
    /// Encapsulation bits (GRE, IPXIP, UDP_TUNNEL, ESP...): gso_type then
    /// describes the inner packet, which is not checked.
    pub tunnel: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<GsoLayout>() == 32);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for GsoLayout {}

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
pub const PROG_BENCH_EMPTY_XDP_FRAGS: &str = "bench_empty_xdp_frags";
pub const PROG_BENCH_CSUM_PASS_XDP: &str = "bench_csum_pass_xdp";
pub const PROG_BENCH_CSUM_PASS_TC: &str = "bench_csum_pass_tc";

/// Where bpffs is mounted, and pktguard's directory in it.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
pub const PIN_DIR: &str = "/sys/fs/bpf/pktguard";
/// Names of the pins inside an interface's directory under [`PIN_DIR`].
pub const PIN_COUNTERS: &str = "mss_counters";
pub const PIN_CONFIG: &str = "mss_config";
/// Lock and state files of running guards, one per interface.
pub const RUN_DIR: &str = "/run/pktguard";

/// One record per interesting packet (clamped, repaired, malformed GSO),
/// sent through a perf event array, rate-limited per CPU in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns).
    pub ts_ns: u64,
    /// An [`EventKind`].
    pub kind: u8,
    /// A [`Hook`].
    pub hook: u8,
    /// 4 or 6 (0: not IP).
    pub family: u8,
    /// IPPROTO_TCP / IPPROTO_UDP.
    pub proto: u8,
    /// The outcome (GsoOutcome for GSO events, CsumOutcome, MssOutcome).
    pub reason: u32,
    /// IPv4 addresses in the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// The new MSS for a clamp; the frame length otherwise.
    pub value: u32,
    /// Events this CPU suppressed (rate limit) since its previous one.
    pub suppressed: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Event>() == 64);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for Event {}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Clamped = 1,
    Repaired = 2,
    GsoDropped = 3,
    GsoFlagged = 4,
}

impl EventKind {
    pub const fn from_u8(v: u8) -> Option<EventKind> {
        match v {
            1 => Some(EventKind::Clamped),
            2 => Some(EventKind::Repaired),
            3 => Some(EventKind::GsoDropped),
            4 => Some(EventKind::GsoFlagged),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Clamped => "clamped",
            EventKind::Repaired => "repaired",
            EventKind::GsoDropped => "gso_dropped",
            EventKind::GsoFlagged => "gso_flagged",
        }
    }
}

pub const EVENTS_MAP: &str = "EVENTS";
pub const PIN_EVENTS: &str = "events";
/// Events each CPU may send per second; the rest are counted in the next
/// event's `suppressed`.
pub const EVENTS_PER_SEC_PER_CPU: u32 = 100;

/// The drop monitor: a program on the `kfree_skb` raw tracepoint (no trace
/// record is built for it) that counts drops in the kernel, keyed by
/// [`DropKey`]; no per-packet event leaves it.
pub const PROG_DROP_MONITOR: &str = "drop_monitor";
/// The same as a BTF tracepoint (5.5+, with BTF): plain loads instead of
/// `bpf_probe_read`, cheaper per drop. Tried first.
pub const PROG_DROP_MONITOR_BTF: &str = "drop_monitor_btf";
pub const DROPS_MAP: &str = "DROPS";
/// Drops not counted because [`DROPS_MAP`] was full (entry 0).
pub const DROPS_LOST_MAP: &str = "DROPS_LOST";
pub const DROP_LAYOUT_GLOBAL: &str = "DROP_LAYOUT";
pub const DROPS_MAX_ENTRIES: u32 = 16384;
/// The drop monitor's pins and lock when `pktguard run --drop-monitor` runs
/// it: `pktguard drops` then reads these instead of attaching its own.
pub const PIN_DROPS_DIR: &str = "/sys/fs/bpf/pktguard/_drops";
pub const PIN_DROPS: &str = "drops";
pub const PIN_DROPS_LOST: &str = "drops_lost";
pub const DROPS_LOCK: &str = "/run/pktguard/_drops.lock";

/// One row of the drop monitor's map. Zero where unknown: reason on kernels
/// before 5.17, ifindex/netns for an skb without a device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// The kernel's return address in the function that freed the skb.
    pub location: u64,
    /// `enum skb_drop_reason`, as the running kernel numbers it.
    pub reason: u32,
    /// `skb->dev->ifindex`.
    pub ifindex: u32,
    /// The inode of the device's network namespace.
    pub netns: u32,
    /// `skb->protocol`, in host order (0x0800 IPv4).
    pub protocol: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<DropKey>() == 24);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for DropKey {}

/// What the drop monitor needs to know of the running kernel, resolved in
/// userspace from the tracepoint's format file and the kernel's BTF (no
/// CO-RE in Rust eBPF).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropLayout {
    /// 1 where the tracepoint's third argument is the drop reason (5.17+).
    pub has_reason: u32,
    /// offsetof(sk_buff, protocol); 0: neither protocol nor device is read.
    pub skb_protocol: u32,
    /// offsetof(sk_buff, dev).
    pub skb_dev: u32,
    /// offsetof(net_device, ifindex).
    pub dev_ifindex: u32,
    /// offsetof(net_device, nd_net) (a `struct net *`).
    pub dev_net: u32,
    /// offsetof(net, ns.inum).
    pub net_inum: u32,
    /// Reasons that are not drops: SKB_NOT_DROPPED_YET and SKB_CONSUMED
    /// ([`DROP_FIELD_NONE`] where the kernel lacks them).
    pub not_dropped_yet: u32,
    pub consumed: u32,
}

pub const DROP_FIELD_NONE: u32 = u32::MAX;

const _: () = assert!(core::mem::size_of::<DropLayout>() == 32);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
unsafe impl aya::Pod for DropLayout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_indexes_are_dense_and_unique() {
        let mut seen = [false; MSS_COUNTER_ENTRIES as usize];
        for hook in Hook::ALL {
            for o in MssOutcome::ALL {
                let i = o.index(hook) as usize;
                assert!(!seen[i], "index {i} used twice");
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        for (i, o) in MssOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn reported_counters_are_sums_of_outcomes() {
        let mut outcomes = [0u64; MssOutcome::COUNT];
        for (i, o) in MssOutcome::ALL.iter().enumerate() {
            outcomes[*o as usize] = 1 << i;
        }
        let c = MssCounter::from_outcomes(&outcomes);
        assert_eq!(c[MssCounter::Seen as usize], (1 << MssOutcome::COUNT) - 1);
        assert_eq!(c[MssCounter::Syn as usize], 2 + 4 + 8 + 16 + 32 + 128);
        assert_eq!(c[MssCounter::Clamped as usize], 2);
        assert_eq!(c[MssCounter::Malformed as usize], 32 + 64);
        assert_eq!(c[MssCounter::Skipped as usize], 128 + 256);
    }
}
