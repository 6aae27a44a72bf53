//! `cargo xtask bench rate`: forwarded packet rates with trafgen, in
//! namespaces: generator -> router -> sink over veth pairs. The router's
//! hook is nothing, an nftables `maxseg` clamp, an iptables TCPMSS clamp,
//! or pktguard at TC, native XDP or generic XDP. The sink's interface
//! counter gives the forwarded rate over a fixed window after warm-up;
//! rounds interleave the hooks; a round in which trafgen waited for a CPU
//! (run-queue wait from /proc/PID/schedstat above 3%) is discarded.
use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

mod chart;
mod lab;

use chart::chart;
use lab::Lab;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    None,
    Nftables,
    Iptables,
    PktguardTc,
    PktguardXdp,
    PktguardXdpGeneric,
}

impl Hook {
    pub const ALL: [Hook; 6] = [
        Hook::None,
        Hook::Nftables,
        Hook::Iptables,
        Hook::PktguardTc,
        Hook::PktguardXdp,
        Hook::PktguardXdpGeneric,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Hook::None => "none",
            Hook::Nftables => "nftables maxseg",
            Hook::Iptables => "iptables TCPMSS",
            Hook::PktguardTc => "pktguard tc",
            Hook::PktguardXdp => "pktguard xdp (native)",
            Hook::PktguardXdpGeneric => "pktguard xdp (generic)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Syn,
    Data,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Syn => "SYN (MSS 1460)",
            Kind::Data => "data segment (64 B)",
        }
    }
}

pub struct Options {
    pub rounds: usize,
    pub window: Duration,
    pub warmup: Duration,
    pub hooks: Vec<Hook>,
    pub kinds: Vec<Kind>,
    /// Where the JSON and the chart go.
    pub out_dir: PathBuf,
}

impl Options {
    /// The full run: under 10 minutes on a 2-core machine.
    pub fn full(out_dir: PathBuf) -> Options {
        Options {
            rounds: 5,
            window: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            hooks: Hook::ALL.to_vec(),
            kinds: vec![Kind::Syn, Kind::Data],
            out_dir,
        }
    }
}

/// What one hook forwarded for one kind of packet, per valid round.
#[derive(Clone, Debug)]
pub struct Series {
    pub hook: Hook,
    pub kind: Kind,
    /// Packets per second, one per round (None: discarded).
    pub pps: Vec<Option<f64>>,
    /// The same, discarded rounds included.
    pub raw: Vec<f64>,
}

pub struct Report {
    pub series: Vec<Series>,
    pub discarded: usize,
    pub rounds: usize,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub table: String,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Per-round ratios of `a` to `b` (rounds where both are valid), median.
fn ratio(a: &Series, b: &Series) -> Option<f64> {
    median(
        a.pps
            .iter()
            .zip(&b.pps)
            .filter_map(|(x, y)| Some(x.as_ref()? / y.as_ref()?))
            .collect(),
    )
}

fn cost_ns(a: &Series, none: &Series) -> Option<f64> {
    median(
        a.pps
            .iter()
            .zip(&none.pps)
            .filter_map(|(x, y)| Some(1e9 / x.as_ref()? - 1e9 / y.as_ref()?))
            .collect(),
    )
}

/// Runs the rounds; prints progress; writes the JSON and the chart.
pub fn run(opts: &Options) -> Result<Report> {
    let lab = Lab::new()?;
    let mut series: Vec<Series> = opts
        .kinds
        .iter()
        .flat_map(|k| {
            opts.hooks.iter().map(|h| Series {
                hook: *h,
                kind: *k,
                pps: Vec::new(),
                raw: Vec::new(),
            })
        })
        .collect();
    let mut discarded = 0;
    let total = opts.rounds * opts.hooks.len() * opts.kinds.len();
    let mut done = 0;
    for round in 0..opts.rounds {
        // Interleaved, and rotated each round so no hook always goes first.
        let mut hooks = opts.hooks.clone();
        let n = hooks.len().max(1);
        hooks.rotate_left(round % n);
        for hook in hooks {
            let guard = lab.hook(hook)?;
            for kind in &opts.kinds {
                let (pps, wait) = lab.measure(*kind, opts.warmup, opts.window)?;
                done += 1;
                let keep = wait <= 3.0;
                if !keep {
                    discarded += 1;
                }
                eprintln!(
                    "bench rate: [{done}/{total}] round {} {:<24} {:<20} {:>10.0} pps (run-queue wait {wait:.1}%){}",
                    round + 1,
                    hook.name(),
                    kind.name(),
                    pps,
                    if keep { "" } else { " DISCARDED" }
                );
                let s = series
                    .iter_mut()
                    .find(|s| s.hook == hook && s.kind == *kind)
                    .expect("series");
                s.pps.push(keep.then_some(pps));
                s.raw.push(pps);
            }
            lab.unhook(hook, guard)?;
        }
    }
    let find = |h: Hook, k: Kind| series.iter().find(|s| s.hook == h && s.kind == k);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<22} {:<24} {:>12} {:>10} {:>10} {:>10}",
        "packet", "router hook", "median pps", "vs none", "vs nft", "ns/packet"
    );
    let mut json_rows = Vec::new();
    for s in &series {
        let med = median(s.pps.iter().flatten().copied().collect());
        let none = find(Hook::None, s.kind);
        let nft = find(Hook::Nftables, s.kind);
        let vs_none = none.and_then(|n| ratio(s, n));
        let vs_nft = nft.and_then(|n| ratio(s, n));
        let cost = none.and_then(|n| cost_ns(s, n));
        let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
        let _ = writeln!(
            table,
            "{:<22} {:<24} {:>12} {:>10} {:>10} {:>10}",
            s.kind.name(),
            s.hook.name(),
            f(med, 0),
            f(vs_none, 3),
            f(vs_nft, 3),
            f(cost, 1)
        );
        let j = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.4}"));
        json_rows.push(format!(
            "{{\"packet\":\"{}\",\"hook\":\"{}\",\"pps\":[{}],\"kept\":[{}],\"median_pps\":{},\"ratio_vs_none\":{},\"ratio_vs_nftables\":{},\"cost_ns\":{}}}",
            s.kind.name(),
            s.hook.name(),
            s.raw.iter().map(|p| format!("{p:.0}")).collect::<Vec<_>>().join(","),
            s.pps.iter().map(|p| p.is_some().to_string()).collect::<Vec<_>>().join(","),
            j(med),
            j(vs_none),
            j(vs_nft),
            j(cost)
        ));
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let stamp = today();
    let json = opts.out_dir.join(format!("{stamp}.json"));
    let kernel = guard_user::host::sys::kernel_release().unwrap_or_default();
    std::fs::write(
        &json,
        format!(
            "{{\"date\":\"{stamp}\",\"kernel\":\"{}\",\"rounds\":{},\"window_s\":{},\"discarded\":{discarded},\"rows\":[{}]}}\n",
            kernel,
            opts.rounds,
            opts.window.as_secs_f64(),
            json_rows.join(",")
        ),
    )?;
    let svg = opts.out_dir.join(format!("{stamp}.svg"));
    chart(&svg, &series, &find)?;
    Ok(Report {
        series,
        discarded,
        rounds: opts.rounds,
        json,
        svg,
        table,
    })
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    guard_user::cmd::events::rfc3339(secs)[..10].to_string()
}
