//! `pktguard doctor`: its arguments, and the call into [`crate::doctor`].

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use crate::{doctor, host::sys};

#[derive(Args)]
pub struct DoctorArgs {
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Apply the safe fixes (offload toggles: LRO/hardware GRO off on a forwarding host,
    /// VXLAN tx checksum offload off on a kernel without the NAT fix), say what changed,
    /// and check again. Nothing else is ever changed.
    #[arg(long)]
    fix: bool,
    /// Read a captured tree instead of this host (procfs files under DIR, plus `links`,
    /// `ethtool/IFACE` and `commands/TOOL` files: see the README).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// Exits 0 when every check passes, 1 when one fails, 2 when it could not check.
pub fn run(args: DoctorArgs) -> ExitCode {
    let result = match &args.root {
        Some(root) => {
            let host = doctor::Fixture { root: root.clone() };
            doctor::doctor(&host, args.json, args.fix)
        }
        None => {
            if args.fix
                && let Err(e) = sys::check_privileges()
            {
                eprintln!("pktguard: error: --fix: {e:#}");
                return ExitCode::from(2);
            }
            doctor::doctor(&doctor::Live, args.json, args.fix)
        }
    };
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pktguard: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
