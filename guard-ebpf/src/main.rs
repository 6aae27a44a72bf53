//! The eBPF object: built for the bpf target by guard-user's build.rs.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs;

/// On the host this crate is a library (tested there); the binary is bpf-only.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
