//! `pktguard lab`: its subcommands, and the calls into the labs.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use crate::{host::sys, lab};

#[derive(Subcommand)]
pub enum LabCommand {
    /// Incident 3: a tunnel MTU smaller than the segments that reach it, ICMP lost.
    Mss {
        /// Bytes to send in each transfer.
        #[arg(long, default_value_t = 4 << 20)]
        bytes: usize,
        /// How long to wait for the transfer without the guard before calling it stalled.
        #[arg(long, default_value_t = 3)]
        stall_secs: u64,
    },
    /// Incident 1: malformed GSO packets (as LRO/virtio hand them over) on a forwarding node.
    Gso,
    /// Incident 4: VXLAN outer checksums broken by a second SNAT (kernels before 5.7).
    Csum {
        /// Bytes to echo over the overlay.
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
        /// How long to wait without the guard before calling the connect failed.
        #[arg(long, default_value_t = 3)]
        stall_secs: u64,
    },
}

pub fn run(cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Mss { bytes, stall_secs } => sys::check_privileges()
            .and_then(|()| lab::mss::report(bytes, Duration::from_secs(stall_secs))),
        LabCommand::Gso => sys::check_privileges().and_then(|()| lab::gso::report()),
        LabCommand::Csum { bytes, stall_secs } => sys::check_privileges()
            .and_then(|()| lab::repair::report(bytes, Duration::from_secs(stall_secs))),
    }
}
