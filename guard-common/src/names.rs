//! Every name the two sides share: the maps and programs of each
//! object (as guard-ebpf/src/bin defines them), the pins and the paths.

// The guard's object (bin/guard).

/// The clamp.
pub const MSS_CONFIG_MAP: &str = "MSS_CONFIG";
pub const MSS_COUNTERS_MAP: &str = "MSS_COUNTERS";
pub const PROG_XDP: &str = "guard_xdp";
pub const PROG_TC_INGRESS: &str = "guard_tc_ingress";
pub const PROG_TC_EGRESS: &str = "guard_tc_egress";
/// The multi-buffer XDP program (Linux 5.18+): the only XDP flavour that
/// can repair checksums, since it reads frames across fragments.
pub const PROG_XDP_FRAGS: &str = "guard_xdp_frags";

/// The repair.
pub const CSUM_CONFIG_MAP: &str = "CSUM_CONFIG";
pub const CSUM_COUNTERS_MAP: &str = "CSUM_COUNTERS";
pub const PEERS_V4_MAP: &str = "PEERS_V4";
pub const PEERS_V6_MAP: &str = "PEERS_V6";

/// The GSO guard.
pub const GSO_CONFIG_MAP: &str = "GSO_CONFIG";
pub const GSO_COUNTERS_MAP: &str = "GSO_COUNTERS";
/// The GSO guard's own TC ingress program: GSO metadata exists on skbs only.
pub const PROG_TC_GSO: &str = "guard_tc_gso";
/// The same, also checking `skb_shinfo(skb)->gso_type` against the headers:
/// needs `bpf_probe_read_kernel` at TC (root) and the kernel's BTF.
pub const PROG_TC_GSO_TYPED: &str = "guard_tc_gso_typed";

/// The events.
pub const EVENTS_MAP: &str = "EVENTS";

// The drop monitor's object (bin/drops.rs).

/// The drop monitor: a program on the `kfree_skb` raw tracepoint (no trace
/// record is built for it) that counts drops in the kernel, keyed by
/// [`DropKey`](crate::DropKey); no per-packet event leaves it.
pub const PROG_DROP_MONITOR: &str = "drop_monitor";
/// The same as a BTF tracepoint (5.5+, with BTF): plain loads instead of
/// `bpf_probe_read`, cheaper per drop. Tried first.
pub const PROG_DROP_MONITOR_BTF: &str = "drop_monitor_btf";
pub const DROPS_MAP: &str = "DROPS";
/// Drops not counted because [`DROPS_MAP`] was full (entry 0).
pub const DROPS_LOST_MAP: &str = "DROPS_LOST";

// The lab's object (bin/lab.rs).

/// Test-only: does to outer VXLAN checksums what pre-5.7 NAT did.
pub const PROG_LAB_DOUBLE_SNAT: &str = "lab_double_snat";
pub const LAB_SNAT_COUNTERS_MAP: &str = "LAB_SNAT_COUNTERS";

// The bench object (bin/bench.rs).

/// Programs that return at once: the baseline of `cargo xtask bench`.
pub const PROG_BENCH_EMPTY_XDP: &str = "bench_empty_xdp";
pub const PROG_BENCH_EMPTY_TC: &str = "bench_empty_tc";
pub const PROG_BENCH_EMPTY_XDP_FRAGS: &str = "bench_empty_xdp_frags";
/// One bare checksum pass: the baseline of `cargo xtask bench csum`.
pub const PROG_BENCH_CSUM_PASS_XDP: &str = "bench_csum_pass_xdp";
pub const PROG_BENCH_CSUM_PASS_TC: &str = "bench_csum_pass_tc";

// Pins and paths.

/// Where bpffs is mounted, and pktguard's directory in it.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
pub const PIN_DIR: &str = "/sys/fs/bpf/pktguard";
/// Names of the pins inside an interface's directory under [`PIN_DIR`].
pub const PIN_COUNTERS: &str = "mss_counters";
pub const PIN_CONFIG: &str = "mss_config";
pub const PIN_CSUM_COUNTERS: &str = "csum_counters";
pub const PIN_GSO_COUNTERS: &str = "gso_counters";
pub const PIN_EVENTS: &str = "events";
/// Lock and state files of running guards, one per interface.
pub const RUN_DIR: &str = "/run/pktguard";
/// The drop monitor's pins and lock when `pktguard run --drop-monitor` runs
/// it: `pktguard drops` then reads these instead of attaching its own.
pub const PIN_DROPS_DIR: &str = "/sys/fs/bpf/pktguard/_drops";
pub const PIN_DROPS: &str = "drops";
pub const PIN_DROPS_LOST: &str = "drops_lost";
pub const DROPS_LOCK: &str = "/run/pktguard/_drops.lock";
