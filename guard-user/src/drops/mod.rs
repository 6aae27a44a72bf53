//! The drop monitor: where and why the kernel drops packets. A program on
//! the `skb:kfree_skb` tracepoint counts drops in the kernel (a per-CPU map
//! keyed by reason, location, protocol and device); this side names them:
//! reasons from the running kernel's BTF (`enum skb_drop_reason`, numbered
//! differently by each kernel), locations from /proc/kallsyms, devices from
//! their ifindex and network namespace.

pub mod layout;
pub mod monitor;
pub mod names;
pub mod table;
pub mod view;

use std::{
    io::{self, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};

pub use monitor::{DropMonitor, Snapshot};
pub use names::{IfaceNames, name_key};
pub use table::{Filter, Row, rows};

use crate::host::{
    kernel::{self, Feature},
    sys,
};

/// How `pktguard drops` shows what it counts.
#[derive(Debug, Clone)]
pub struct Options {
    pub interval: Duration,
    pub top: usize,
    pub count: Option<u64>,
    pub json: bool,
    pub iface: Option<String>,
    pub reason: Option<String>,
}

/// Parses `1s`, `500ms`, `2` (seconds), `0.5s`.
pub fn parse_interval(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("bad interval {s:?}: try 1s, 500ms or 2"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => bail!("bad interval unit in {s:?}: use ms, s or m"),
    };
    if !(0.1..=3600.0).contains(&secs) {
        bail!("--interval must be between 100ms and 1h, not {s}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `pktguard drops`: counts drops and shows them every interval.
pub fn run(opts: &Options) -> Result<()> {
    sys::check_privileges()?;
    // A drop's device is read at offsets from the kernel's BTF (4.19 has
    // none).
    if let Some(iface) = &opts.iface
        && !kernel::has(Feature::KernelBtf)
    {
        bail!(
            "--iface {iface} needs the kernel's BTF ({}) to read each drop's device, \
             and this kernel has none: drops are counted by location only, without --iface",
            crate::host::btf::VMLINUX
        );
    }
    let mon = match DropMonitor::shared()? {
        Some(m) => m,
        None => DropMonitor::start(false)?,
    };
    let mut names = IfaceNames::new()?;
    let mut filter = Filter::default();
    if let Some(iface) = &opts.iface {
        filter.iface = Some((sys::ifindex(iface)?, names.own_netns()));
    }
    if let Some(r) = &opts.reason {
        if !mon.reasons.known() {
            bail!("--reason needs drop reasons, which this kernel lacks (5.17+)");
        }
        filter.reason = Some(mon.reasons.lookup(r).ok_or_else(|| {
            anyhow!(
                "unknown drop reason {r:?}; this kernel knows: {}",
                mon.reasons.all_names().join(", ")
            )
        })?);
    }
    // SAFETY: isatty on stdout's fd has no preconditions.
    let tty = !opts.json && unsafe { libc::isatty(1) } == 1;
    let source = match &mon.shared_from {
        Some(pid) => format!("reading the monitor of pktguard run (pid {pid})"),
        None => format!("{} attached to the kfree_skb tracepoint", mon.program),
    };
    // Progress goes to stderr: stdout stays pure JSON with --json.
    eprintln!("pktguard drops: {source}; every {:?}", opts.interval);
    for n in &mon.notes {
        eprintln!("pktguard drops: note: {n}");
    }
    let start = Instant::now();
    let (mut before, _) = mon.snapshot()?;
    let mut last = Instant::now();
    let mut done = 0u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + opts.interval, opts.interval);
        loop {
            tokio::select! {
                _ = term.recv() => return anyhow::Ok(true),
                _ = int.recv() => return anyhow::Ok(true),
                _ = tick.tick() => {}
            }
            if let Some(pid) = &mon.shared_from
                && monitor::lock_holder().is_none()
            {
                bail!("pktguard run (pid {pid}) stopped, and its drop monitor with it");
            }
            let (now, lost) = mon.snapshot()?;
            let elapsed = last.elapsed();
            last = Instant::now();
            let rows = rows(&now, &before, elapsed, &filter, opts.top, |k| {
                name_key(&mon, &mut names, k)
            });
            let t = start.elapsed().as_secs_f64();
            let mut out = io::stdout().lock();
            if opts.json {
                write!(
                    out,
                    "{}",
                    view::render_json(&rows, t, elapsed.as_secs_f64(), lost)
                )?;
            } else if tty {
                let header = format!(
                    "pktguard drops: {source}; t={t:.0}s; lost to a full map: {lost}; Ctrl-C stops"
                );
                write!(out, "\x1b[H\x1b[2J{}", view::render_table(&rows, &header))?;
            } else {
                write!(out, "{}", view::render_plain(&rows, t))?;
            }
            out.flush()?;
            before = now;
            done += 1;
            if opts.count.is_some_and(|c| done >= c) {
                return Ok(false);
            }
        }
    })?;
    {
        let (now, lost) = mon.snapshot()?;
        let total: u64 = now
            .iter()
            .filter(|(k, _)| filter.keeps(k))
            .map(|(_, n)| n)
            .sum();
        eprintln!(
            "pktguard drops: {}{total} drops in {:.1}s ({} places), {lost} lost to a full map",
            if stop { "stopped: " } else { "" },
            start.elapsed().as_secs_f64(),
            now.keys().filter(|k| filter.keeps(k)).count()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("1h").is_err());
    }
}
