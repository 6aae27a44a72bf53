//! Helpers of the privileged tests, one module per harness: the programs
//! under BPF_PROG_TEST_RUN (`prog`), `pktguard` as a user starts it
//! (`daemon`), what it prints (`output`), hand-built traffic (`traffic`),
//! the running kernel (`kernel`), and the command-line, doctor and rate
//! harnesses (`cli`, `doctor`, `rate`).

pub mod cli;
mod daemon;
pub mod doctor;
mod kernel;
mod output;
mod prog;
pub mod rate;
mod traffic;

pub use daemon::{Running, START_LIMIT, pktguard_bin, pktguard_in, run_ok};
pub use kernel::{has_tcx, kernel_at_least, tc_programs};
pub use output::{DropsWatch, events_json, stats_counter, stats_json};
pub use prog::{Loaded, Ran, Table};
pub use traffic::{RawTcp, setsockopt, trafgen_packet, trafgen_send};

/// One `#[test]` per case, each calling `run` with its arguments, named for
/// the case (the guest matrix picks cases by name):
/// `test_cases!(run { name: arg, arg; ... })`.
#[macro_export]
macro_rules! test_cases {
    ($run:ident { $($name:ident: $($arg:expr),+;)* }) => {
        $(
            #[test]
            fn $name() {
                $run($($arg),+);
            }
        )*
    };
}
