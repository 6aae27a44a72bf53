//! `pktguard drops`: its arguments, and the call into [`crate::drops`].

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::drops;

#[derive(Args)]
pub struct DropsArgs {
    /// How often to redraw (or print): 1s, 500ms, 2.
    #[arg(long, default_value = "1s", value_parser = drops::parse_interval)]
    interval: Duration,
    /// Show at most this many rows, most frequent first (by rate, then total).
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Stop after K intervals (default: until Ctrl-C).
    #[arg(long, value_name = "K")]
    count: Option<u64>,
    /// One JSON document per interval, one per line.
    #[arg(long)]
    json: bool,
    /// Only drops of packets on this interface (of this network namespace).
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// Only this drop reason, as the kernel names it: NO_SOCKET, TCP_CSUM, NETFILTER_DROP...
    #[arg(long, value_name = "NAME")]
    reason: Option<String>,
}

pub fn run(args: DropsArgs) -> Result<()> {
    if args.top == 0 || args.count == Some(0) {
        Err(anyhow::anyhow!("--top and --count must be at least 1"))
    } else {
        drops::run(&drops::Options {
            interval: args.interval,
            top: args.top,
            count: args.count,
            json: args.json,
            iface: args.iface,
            reason: args.reason,
        })
    }
}
