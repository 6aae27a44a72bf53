//! Test frames for the host tests and the BPF_PROG_TEST_RUN tables: built
//! field by field, with checksums computed here, independently of the code
//! under test.

use guard_common::MssOutcome;

use crate::csum::{fold, sum_words};

mod gso;
mod mss;
mod tcp;
mod vxlan;

pub use gso::*;
pub use mss::*;
pub use tcp::*;
pub use vxlan::*;

/// The pseudo-header a TCP or UDP checksum covers, for addresses of 4 bytes
/// (IPv4, RFC 793/768: zero, protocol, 16-bit length) or of 16 (IPv6,
/// RFC 8200: 32-bit length, three zeros, next header). `addrs` is the
/// source address followed by the destination.
pub fn pseudo_header(addrs: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = addrs.to_vec();
    if addrs.len() == 32 {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    }
    p
}
