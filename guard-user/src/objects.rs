//! The eBPF objects, built by build.rs from guard-ebpf's bins and embedded
//! in the binary: each is loaded only by what runs it.

/// The guard: the clamp, the repair and the GSO guard (XDP and TC).
pub static GUARD: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard"));

/// The drop monitor: the `kfree_skb` tracepoint and its drop map.
pub static DROPS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drops"));

/// The lab's double SNAT (`pktguard lab csum`).
pub static LAB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab"));

/// The benchmarks' baselines: for the tests crate only (feature
/// `bench-object`), so that the release binary carries no bench programs.
#[cfg(feature = "bench-object")]
pub static BENCH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));
