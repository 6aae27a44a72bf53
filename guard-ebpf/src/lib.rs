//! pktguard's packet logic. It compiles for the bpf target (used by the
//! objects' entry points in `bin/`) and for the host, where it is unit- and
//! property-tested over byte slices.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod csum;
#[cfg(target_arch = "bpf")]
pub mod ctx;
pub mod event;
pub mod gso;
#[cfg(target_arch = "bpf")]
pub mod loadtime;
pub mod mem;
pub mod mss;
pub mod parse;
pub mod repair;
pub mod tcpopt;
#[cfg(any(test, feature = "std"))]
pub mod testpkt;
