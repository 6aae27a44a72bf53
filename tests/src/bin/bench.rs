//! `cargo xtask bench mss`: ns per packet of the compiled programs under
//! BPF_PROG_TEST_RUN, each against the empty program measured in the same run.

use std::time::Duration;

use anyhow::{Result, bail};
use guard_common::{
    LinkKind, MssConfig, PROG_BENCH_EMPTY_TC, PROG_BENCH_EMPTY_XDP, PROG_TC_INGRESS, PROG_XDP,
};
use guard_ebpf::testpkt::{self, ACK, Segment};
use pktguard_tests::Loaded;

/// Repetitions inside one BPF_PROG_TEST_RUN call (the kernel times the loop).
const REPEAT: u32 = 2_000_000;
/// Single-repetition calls for the rewrite, which only the first repetition
/// of a looped run would do (the frame keeps its clamped MSS afterwards).
const SINGLE_CALLS: u32 = 50_000;
/// Rounds; the median is reported.
const ROUNDS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns per packet of `prog` on `frame`, looped in the kernel.
fn looped(l: &Loaded, prog: &str, frame: &[u8]) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..ROUNDS {
        v.push(l.run(prog, frame, REPEAT)?.duration.as_nanos() as f64);
    }
    Ok(median(v))
}

/// Medians of `base` and `prog` on `frame` and of their difference, the
/// two measured alternately in each round so that drift of the machine
/// cancels out of the difference.
/// The fourth value is the spread of the per-round differences, `[min, max]`.
fn paired(l: &Loaded, base: &str, prog: &str, frame: &[u8]) -> Result<(f64, f64, f64, String)> {
    let (mut b, mut g, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let x = l.run(base, frame, REPEAT)?.duration.as_nanos() as f64;
        let y = l.run(prog, frame, REPEAT)?.duration.as_nanos() as f64;
        b.push(x);
        g.push(y);
        d.push(y - x);
    }
    let lo = d.iter().copied().fold(f64::MAX, f64::min);
    let hi = d.iter().copied().fold(f64::MIN, f64::max);
    Ok((
        median(b),
        median(g),
        median(d),
        format!("[{lo:+.0}, {hi:+.0}]"),
    ))
}

/// Median ns per packet over many one-repetition calls, each on a fresh frame.
fn single(l: &Loaded, prog: &str, frame: &[u8]) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..ROUNDS {
        let mut total = Duration::ZERO;
        for _ in 0..SINGLE_CALLS {
            total += l.run(prog, frame, 1)?.duration;
        }
        v.push(total.as_nanos() as f64 / SINGLE_CALLS as f64);
    }
    Ok(median(v))
}

fn mss() -> Result<()> {
    let l = Loaded::with_features(
        MssConfig::new(1400, 1380),
        LinkKind::Ethernet,
        guard_common::FEATURE_MSS,
    )?;
    let syn = Segment::syn(&testpkt::mss(1460)).build();
    let data = Segment::syn(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0])
        .flags(ACK)
        .payload(&[0x5a; 1400])
        .build();
    title("mss")?;
    println!(
        "{:<5} {:<44} {:>9} {:>9} {:>9}  spread of deltas",
        "hook", "packet", "empty ns", "guard ns", "delta ns"
    );
    // The targets are defined on looped runs (the measurement); the
    // one-per-call row shows the rewrite itself, which looping hides.
    let mut worst_syn = f64::MIN;
    let mut worst_data = f64::MIN;
    for (hook, prog, empty) in [
        ("xdp", PROG_XDP, PROG_BENCH_EMPTY_XDP),
        ("tc", PROG_TC_INGRESS, PROG_BENCH_EMPTY_TC),
    ] {
        let rows: [(&str, &[u8], bool); 3] = [
            ("data segment (1400 B, ACK), looped", &data, false),
            ("SYN, MSS already clamped, looped", &syn, false),
            ("SYN clamped 1460->1400, one per call", &syn, true),
        ];
        for (what, frame, one_per_call) in rows {
            let (e, g, d, spread) = if one_per_call {
                let (e, g) = (single(&l, empty, frame)?, single(&l, prog, frame)?);
                (e, g, g - e, String::new())
            } else {
                paired(&l, empty, prog, frame)?
            };
            match (one_per_call, what.starts_with("SYN")) {
                (true, _) => {}
                (false, true) => worst_syn = worst_syn.max(d),
                (false, false) => worst_data = worst_data.max(d),
            }
            println!("{hook:<5} {what:<44} {e:>9.1} {g:>9.1} {d:>+9.1}  {spread}");
        }
    }
    println!(
        "targets (looped rows): SYN <= +8 ns: {} (worst {worst_syn:+.1}); data segment <= +3 ns: {} (worst {worst_data:+.1})",
        if worst_syn <= 8.0 { "met" } else { "NOT met" },
        if worst_data <= 3.0 { "met" } else { "NOT met" },
    );
    Ok(())
}

/// ns per packet, or None where the kernel's test harness refuses the frame
/// (the skb harness takes no frame larger than a page).
fn looped_opt(l: &Loaded, prog: &str, frame: &[u8]) -> Option<f64> {
    looped(l, prog, frame).ok()
}

/// The first line of a BPF_PROG_TEST_RUN bench: what it measures and where.
fn title(which: &str) -> Result<()> {
    println!(
        "bench {which}: BPF_PROG_TEST_RUN, median of {ROUNDS} rounds; kernel {}",
        guard_user::host::sys::kernel_release()?
    );
    Ok(())
}

fn csum() -> Result<()> {
    use guard_common::{
        FEATURE_CSUM, PROG_BENCH_CSUM_PASS_TC, PROG_BENCH_CSUM_PASS_XDP,
        PROG_BENCH_EMPTY_XDP_FRAGS, PROG_XDP_FRAGS, RepairConfig,
    };
    use guard_ebpf::testpkt::Vxlan;
    let mut l = Loaded::with_features(MssConfig::new(0, 0), LinkKind::Ethernet, FEATURE_CSUM)?;
    l.set_repair(RepairConfig {
        ports: [4789, 8472, 0, 0],
        mode: 0,
        any_peer_v4: 1,
        any_peer_v6: 1,
        _pad: [0; 5],
    })?;
    title("csum")?;
    println!(
        "{:<5} {:<36} {:>9} {:>9} {:>9} {:>9} {:>7}  spread",
        "hook", "packet", "empty ns", "pass ns", "guard ns", "delta ns", "vs pass"
    );
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    let mut worst_ratio = f64::MIN;
    let mut worst_other = f64::MIN;
    for (hook, prog, empty, pass) in [
        (
            "xdp",
            PROG_XDP_FRAGS,
            PROG_BENCH_EMPTY_XDP_FRAGS,
            PROG_BENCH_CSUM_PASS_XDP,
        ),
        (
            "tc",
            PROG_TC_INGRESS,
            PROG_BENCH_EMPTY_TC,
            PROG_BENCH_CSUM_PASS_TC,
        ),
    ] {
        for size in [100usize, 1500, 9000] {
            // Inner TCP so that the frame is `size` bytes on the wire.
            let payload = size.saturating_sub(14 + 20 + 8 + 8 + 14 + 20 + 20);
            let inner = Segment::syn(&[])
                .flags(ACK)
                .payload(&vec![0x5a; payload])
                .build();
            let frame = Vxlan::new(inner).build();
            let e = looped_opt(&l, empty, &frame);
            let p = looped_opt(&l, pass, &frame);
            let g = looped_opt(&l, prog, &frame);
            let (delta, ratio) = match (e, p, g) {
                (Some(e), Some(p), Some(g)) => (Some(g - e), Some((g - e) / (p - e).max(1.0))),
                _ => (None, None),
            };
            if size == 1500
                && let Some(r) = ratio
            {
                worst_ratio = worst_ratio.max(r);
            }
            println!(
                "{hook:<5} {:<36} {:>9} {:>9} {:>9} {:>9} {:>7}",
                format!("VXLAN frame, {} bytes, outer ok", frame.len()),
                show(e),
                show(p),
                show(g),
                delta.map_or("n/a".into(), |d| format!("{d:+.1}")),
                ratio.map_or("n/a".into(), |r| format!("{r:.2}x")),
            );
        }
        let data = Segment::syn(&[]).flags(ACK).payload(&[0x5a; 1400]).build();
        let base = if hook == "xdp" {
            PROG_BENCH_EMPTY_XDP_FRAGS
        } else {
            PROG_BENCH_EMPTY_TC
        };
        let (e, g, d, spread) = paired(&l, base, prog, &data)?;
        worst_other = worst_other.max(d);
        println!(
            "{hook:<5} {:<36} {e:>9.1} {:>9} {g:>9.1} {d:>+9.1}          {spread}",
            "TCP data segment (not VXLAN)", ""
        );
    }
    println!(
        "targets: 1500-byte VXLAN frame <= 1.5x a bare checksum pass: {} (worst {worst_ratio:.2}x); not VXLAN <= +3 ns: {} (worst {worst_other:+.1})",
        if worst_ratio <= 1.5 { "met" } else { "NOT met" },
        if worst_other <= 3.0 { "met" } else { "NOT met" },
    );
    Ok(())
}

fn gso() -> Result<()> {
    use guard_common::{
        GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoAction, GsoConfig, PROG_BENCH_EMPTY_TC,
        PROG_TC_GSO, PROG_TC_GSO_TYPED,
    };
    let mut l = Loaded::with_features(MssConfig::new(0, 0), LinkKind::Ethernet, 0)?;
    l.set_gso(GsoConfig {
        min_size: GSO_MIN_SIZE_DEFAULT,
        max_segs: GSO_MAX_SEGS_DEFAULT,
        action: GsoAction::Drop as u8,
        _pad: [0; 7],
    })?;
    title("gso")?;
    println!(
        "{:<58} {:>9} {:>9} {:>9}  spread of deltas",
        "program: packet", "empty ns", "guard ns", "delta ns"
    );
    let data = Segment::syn(&[]).flags(ACK).payload(&[0x5a; 1400]).build();
    let agg = Segment::syn(&[]).flags(ACK).payload(&[0x5a; 2896]).build();
    let mut worst = f64::MIN;
    for prog in [PROG_TC_GSO, PROG_TC_GSO_TYPED] {
        let (e, g, d, spread) = paired(&l, PROG_BENCH_EMPTY_TC, prog, &data)?;
        worst = worst.max(d);
        println!(
            "{:<58} {e:>9.1} {g:>9.1} {d:>+9.1}  {spread}",
            format!("{prog}: non-GSO data segment (1400 B)")
        );
        let (mut b, mut t, mut ds) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let x = l
                .run_gso_repeat(PROG_BENCH_EMPTY_TC, &agg, 1448, 2, REPEAT)?
                .duration
                .as_nanos() as f64;
            let y = l
                .run_gso_repeat(prog, &agg, 1448, 2, REPEAT)?
                .duration
                .as_nanos() as f64;
            b.push(x);
            t.push(y);
            ds.push(y - x);
        }
        let (e2, g2, d2) = (median(b), median(t), median(ds));
        println!(
            "{:<58} {e2:>9.1} {g2:>9.1} {d2:>+9.1}",
            format!("{prog}: GSO aggregate (2 x 1448 B)")
        );
    }
    println!(
        "target: non-GSO <= +3 ns: {} (worst {worst:+.1})",
        if worst <= 3.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// Packets per second a UDP flood to a closed port reaches for `window`,
/// every one of them dropped by the kernel (NO_SOCKET), counted by the
/// receiver's own UdpNoPorts counter.
fn drop_rate(
    a: &guard_user::lab::netns::Netns,
    b: &guard_user::lab::netns::Netns,
    window: Duration,
) -> Result<f64> {
    let no_ports = || -> Result<u64> {
        let snmp = b.exec(&["cat", "/proc/net/snmp"])?;
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
        let i = names
            .split_whitespace()
            .position(|n| n == "NoPorts")
            .ok_or_else(|| anyhow::anyhow!("no Udp NoPorts in /proc/net/snmp"))?;
        Ok(values.split_whitespace().nth(i).unwrap_or("0").parse()?)
    };
    let before = no_ports()?;
    let start = std::time::Instant::now();
    a.run(|| {
        let s = std::net::UdpSocket::bind("10.79.0.1:0")?;
        s.connect("10.79.0.2:9")?;
        let deadline = std::time::Instant::now() + window;
        let buf = [0x5a; 64];
        while std::time::Instant::now() < deadline {
            for _ in 0..256 {
                // ECONNREFUSED comes back now and then (ICMP): expected.
                let _ = s.send(&buf);
            }
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    Ok((no_ports()? - before) as f64 / secs)
}

/// `cargo xtask bench drops`: the drop monitor's cost on a flood of packets
/// the kernel drops, with and without it, alternately in the same run.
fn drops() -> Result<()> {
    use guard_user::lab::netns::{self, Netns, VethEnd};
    let tag = netns::unique_tag();
    let a = Netns::new(&format!("pg-{tag}-ba"))?;
    let b = Netns::new(&format!("pg-{tag}-bb"))?;
    netns::veth(
        &VethEnd::new(&a, "a0", &["10.79.0.1/24"], 1500),
        &VethEnd::new(&b, "b0", &["10.79.0.2/24"], 1500),
    )?;
    let mac = b.mac_text("b0")?;
    a.ip(&[
        "neigh",
        "replace",
        "10.79.0.2",
        "lladdr",
        &mac,
        "dev",
        "a0",
        "nud",
        "permanent",
    ])?;
    // ICMP errors are rate-limited anyway; none at all keeps the flood steady.
    b.sysctl("net.ipv4.icmp_ratelimit", "0")?;
    b.sysctl("net.ipv4.icmp_ratemask", "0")?;
    let window = Duration::from_millis(1000);
    println!(
        "bench drops: UDP flood to a closed port over veth (one sender), {} ms windows, \
         median of 7 rounds alternating without/with the monitor; kernel {}",
        window.as_millis(),
        guard_user::host::sys::kernel_release()?
    );
    drop_rate(&a, &b, Duration::from_millis(300))?; // warm-up
    for raw_only in [false, true] {
        drops_rounds(&a, &b, window, raw_only)?;
    }
    Ok(())
}

fn drops_rounds(
    a: &guard_user::lab::netns::Netns,
    b: &guard_user::lab::netns::Netns,
    window: Duration,
    raw_only: bool,
) -> Result<()> {
    const DROP_ROUNDS: usize = 7;
    let (mut without, mut with, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut program = "";
    for _ in 0..DROP_ROUNDS {
        let x = drop_rate(a, b, window)?;
        let mon = guard_user::drops::DropMonitor::start_with(false, raw_only)?;
        program = mon.program;
        let y = drop_rate(a, b, window)?;
        let (snap, _) = mon.snapshot()?;
        drop(mon);
        let counted: u64 = snap.values().sum();
        if (counted as f64) < y * window.as_secs_f64() * 0.9 {
            bail!(
                "the monitor counted {counted} drops of about {y:.0}: it is not seeing the flood"
            );
        }
        without.push(x);
        with.push(y);
        ratio.push(y / x);
    }
    let (x, y, r) = (median(without), median(with), median(ratio));
    println!("{program}:");
    println!("  {:<28} {x:>12.0} drops/s", "without the monitor");
    println!("  {:<28} {y:>12.0} drops/s", "with the monitor");
    let cost = (1.0 - r) * 100.0;
    println!(
        "  cost: {cost:.1}% of the drop rate (median of per-round ratios); target <= 5%: {}",
        if cost <= 5.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// `bench rate`: trafgen through a router with each hook; results under
/// bench/results/.
fn rate() -> Result<()> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let opts = pktguard_tests::rate::Options::full(dir);
    println!(
        "bench rate: trafgen (one worker) -> router -> sink over veth; {} rounds of {:?} after {:?} warm-up, hooks interleaved; kernel {}",
        opts.rounds,
        opts.window,
        opts.warmup,
        guard_user::host::sys::kernel_release()?
    );
    let r = pktguard_tests::rate::run(&opts)?;
    print!("{}", r.table);
    println!(
        "{} of {} measurements discarded (trafgen waited for a CPU > 3%); ratios are medians of per-round ratios",
        r.discarded,
        r.rounds * r.series.len()
    );
    println!("results: {} and {}", r.json.display(), r.svg.display());
    println!(
        "note: on veth, native XDP copies every frame (a physical NIC does not): the TC rows are the fair comparison here"
    );
    Ok(())
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        None | Some("mss") => mss(),
        Some("csum") => csum(),
        Some("gso") => gso(),
        Some("drops") => drops(),
        Some("rate") => rate(),
        Some("all") => {
            let start = std::time::Instant::now();
            for (name, f) in [
                ("mss", mss as fn() -> Result<()>),
                ("csum", csum),
                ("gso", gso),
                ("drops", drops),
                ("rate", rate),
            ] {
                println!("\n=== bench {name} ({:.0?} so far)", start.elapsed());
                f()?;
            }
            println!("\nbench all: done in {:.0?}", start.elapsed());
            Ok(())
        }
        Some(other) => {
            bail!("unknown benchmark {other:?}: try `mss`, `csum`, `gso`, `drops`, `rate` or `all`")
        }
    }
}
