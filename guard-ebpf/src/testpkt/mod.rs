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
