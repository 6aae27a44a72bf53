//! `cargo xtask bench rate`: forwarded packet rates with trafgen, in
//! namespaces: generator -> router -> sink over veth pairs. The router's
//! hook is nothing, an nftables `maxseg` clamp, an iptables TCPMSS clamp,
//! or pktguard at TC, native XDP or generic XDP. The sink's interface
//! counter gives the forwarded rate over a fixed window after warm-up;
//! rounds interleave the hooks; a round in which trafgen waited for a CPU
//! (run-queue wait from /proc/PID/schedstat above 3%) is discarded.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use guard_ebpf::testpkt::{ACK, Segment};
use guard_user::lab::netns::{self, Netns, VethEnd};

use crate::Running;

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

struct Lab {
    generator: Netns,
    router: Netns,
    sink: Netns,
    frames: [Vec<u8>; 2],
}

impl Lab {
    /// testpkt's segments run 10.77.1.2 -> 10.77.2.2: the generator's and
    /// the sink's addresses.
    fn new() -> Result<Lab> {
        let tag = netns::unique_tag();
        let generator = Netns::new(&format!("pg-{tag}-rgen"))?;
        let router = Netns::new(&format!("pg-{tag}-rrt"))?;
        let sink = Netns::new(&format!("pg-{tag}-rsink"))?;
        netns::veth(
            &VethEnd {
                ns: &generator,
                name: "g0",
                addrs: &["10.77.1.2/24"],
                mtu: 1500,
            },
            &VethEnd {
                ns: &router,
                name: "r0",
                addrs: &["10.77.1.1/24"],
                mtu: 1500,
            },
        )?;
        netns::veth(
            &VethEnd {
                ns: &router,
                name: "r1",
                addrs: &["10.77.2.1/24"],
                mtu: 1500,
            },
            &VethEnd {
                ns: &sink,
                name: "s0",
                addrs: &["10.77.2.2/24"],
                mtu: 1500,
            },
        )?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        router.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        router.sysctl("net.ipv4.conf.r0.rp_filter", "0")?;
        let sink_mac = sink.mac_text("s0")?;
        router.ip(&[
            "neigh",
            "replace",
            "10.77.2.2",
            "lladdr",
            &sink_mac,
            "dev",
            "r1",
            "nud",
            "permanent",
        ])?;
        // The sink counts and drops: no RST travels back through the router.
        sink.exec(&[
            "nft",
            "add table netdev sinkdrop; add chain netdev sinkdrop in { type filter hook ingress device s0 priority 0; policy drop; }",
        ])?;
        let (dst, src) = (router.mac("r0")?, generator.mac("g0")?);
        let frame = |mut f: Vec<u8>| {
            f[0..6].copy_from_slice(&dst);
            f[6..12].copy_from_slice(&src);
            f
        };
        let syn = frame(Segment::syn(&[2, 4, 0x05, 0xb4]).build());
        let data = frame(Segment::syn(&[]).flags(ACK).payload(&[0x5a; 64]).build());
        Ok(Lab {
            generator,
            router,
            sink,
            frames: [syn, data],
        })
    }

    fn sink_rx(&self) -> Result<u64> {
        let dev = self.sink.exec(&["cat", "/proc/net/dev"])?;
        let line = dev
            .lines()
            .find(|l| l.trim_start().starts_with("s0:"))
            .ok_or_else(|| anyhow!("no s0 in /proc/net/dev"))?;
        let rest = line.split_once(':').map(|x| x.1).unwrap_or("");
        Ok(rest.split_whitespace().nth(1).unwrap_or("0").parse()?)
    }

    /// Puts `hook` on the router; the returned guard takes it off.
    fn hook(&self, hook: Hook) -> Result<Option<Running>> {
        let r = &self.router;
        match hook {
            Hook::None => Ok(None),
            Hook::Nftables => {
                r.exec(&[
                    "nft",
                    "add table inet clamp; add chain inet clamp mssfix { type filter hook forward priority 0; }; \
                     add rule inet clamp mssfix tcp flags syn tcp option maxseg size set 1400",
                ])?;
                Ok(None)
            }
            Hook::Iptables => {
                r.exec(&[
                    "iptables",
                    "-t",
                    "mangle",
                    "-A",
                    "FORWARD",
                    "-p",
                    "tcp",
                    "--tcp-flags",
                    "SYN,RST",
                    "SYN",
                    "-j",
                    "TCPMSS",
                    "--set-mss",
                    "1400",
                ])?;
                Ok(None)
            }
            Hook::PktguardTc | Hook::PktguardXdp | Hook::PktguardXdpGeneric => {
                let attach = match hook {
                    Hook::PktguardTc => "tc",
                    Hook::PktguardXdp => "xdp",
                    _ => "xdp-generic",
                };
                Ok(Some(Running::start(
                    r,
                    &[
                        "--iface",
                        "r0",
                        "--attach",
                        attach,
                        "--direction",
                        "ingress",
                        "--mtu",
                        "1440",
                    ],
                )?))
            }
        }
    }

    fn unhook(&self, hook: Hook, guard: Option<Running>) -> Result<()> {
        match hook {
            Hook::Nftables => {
                self.router.exec(&["nft", "delete table inet clamp"])?;
            }
            Hook::Iptables => {
                self.router
                    .exec(&["iptables", "-t", "mangle", "-F", "FORWARD"])?;
            }
            _ => {}
        }
        if let Some(g) = guard {
            let (status, out) = g.stop(libc::SIGTERM)?;
            if !status.success() {
                bail!("pktguard run failed: {out:?}");
            }
        }
        Ok(())
    }

    /// Forwarded packets per second, and trafgen's run-queue wait in % of
    /// the window.
    fn measure(&self, kind: Kind, warmup: Duration, window: Duration) -> Result<(f64, f64)> {
        let frame = &self.frames[kind as usize];
        let packet = crate::trafgen_packet(frame);
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.generator.path().display()))
            .args([
                "--",
                "trafgen",
                "-o",
                "g0",
                "-P",
                "1",
                "--notouch-irq",
                "--no-cpu-stats",
                "-q",
            ])
            .arg(&packet)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting trafgen (cargo xtask setup installs netsniff-ng)")?;
        let result = self.window(&mut child, warmup, window);
        stop_trafgen(&mut child);
        result
    }

    fn window(&self, child: &mut Child, warmup: Duration, window: Duration) -> Result<(f64, f64)> {
        std::thread::sleep(warmup);
        let worker = worker_pid(child.id()).unwrap_or(child.id());
        let (rx0, w0, t0) = (self.sink_rx()?, runq_wait(worker)?, Instant::now());
        std::thread::sleep(window);
        let (rx1, w1, t1) = (self.sink_rx()?, runq_wait(worker)?, Instant::now());
        let secs = (t1 - t0).as_secs_f64();
        if let Ok(Some(status)) = child.try_wait() {
            bail!("trafgen exited early: {status}");
        }
        Ok((
            (rx1 - rx0) as f64 / secs,
            (w1 - w0) as f64 / 1e9 / secs * 100.0,
        ))
    }
}

/// trafgen forks its worker (which pins itself to a CPU): the child's child.
fn worker_pid(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds the process has waited on a run queue (/proc/PID/schedstat).
fn runq_wait(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .with_context(|| format!("reading /proc/{pid}/schedstat"))?;
    Ok(s.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// Stops trafgen by signalling its worker first (the parent waits for it).
fn stop_trafgen(child: &mut Child) {
    if let Some(w) = worker_pid(child.id()) {
        // SAFETY: kill(2) on trafgen's worker.
        unsafe { libc::kill(w as i32, libc::SIGINT) };
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
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

/// A bar chart of each hook's rate relative to no hook, per packet kind.
fn chart<'a>(
    path: &Path,
    series: &'a [Series],
    find: &dyn Fn(Hook, Kind) -> Option<&'a Series>,
) -> Result<()> {
    use plotters::prelude::*;
    let bars: Vec<(String, f64)> = series
        .iter()
        .filter_map(|s| {
            let r = ratio(s, find(Hook::None, s.kind)?)?;
            Some((
                format!(
                    "{} / {}",
                    s.kind.name().split(' ').next().unwrap_or(""),
                    s.hook.name()
                ),
                r,
            ))
        })
        .collect();
    let root = SVGBackend::new(path, (900, 60 + 32 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "forwarded rate relative to no hook (1.0 = no hook)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(320)
        .build_cartesian_2d(0.0..max, 0..bars.len())
        .map_err(|e| anyhow!("{e}"))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    c.configure_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    c.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let color = if b.0.contains("pktguard") {
            BLUE
        } else {
            RGBColor(150, 150, 150)
        };
        Rectangle::new([(0.0, i), (b.1, i + 1)], color.filled())
    }))
    .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
