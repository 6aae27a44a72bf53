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
const ROUNDS: usize = 5;

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
    let l = Loaded::new(MssConfig::new(1400, 1380), LinkKind::Ethernet)?;
    let syn = Segment::syn(&testpkt::mss(1460)).build();
    let data = Segment::syn(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0])
        .flags(ACK)
        .payload(&[0x5a; 1400])
        .build();
    println!(
        "bench mss: BPF_PROG_TEST_RUN, median of {ROUNDS} rounds; kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim()
    );
    println!(
        "{:<5} {:<44} {:>9} {:>9} {:>9}",
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
            let (e, g) = if one_per_call {
                (single(&l, empty, frame)?, single(&l, prog, frame)?)
            } else {
                (looped(&l, empty, frame)?, looped(&l, prog, frame)?)
            };
            let d = g - e;
            match (one_per_call, what.starts_with("SYN")) {
                (true, _) => {}
                (false, true) => worst_syn = worst_syn.max(d),
                (false, false) => worst_data = worst_data.max(d),
            }
            println!("{hook:<5} {what:<44} {e:>9.1} {g:>9.1} {d:>+9.1}");
        }
    }
    println!(
        "targets (looped rows): SYN <= +8 ns: {} (worst {worst_syn:+.1}); data segment <= +3 ns: {} (worst {worst_data:+.1})",
        if worst_syn <= 8.0 { "met" } else { "NOT met" },
        if worst_data <= 3.0 { "met" } else { "NOT met" },
    );
    Ok(())
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        None | Some("mss") => mss(),
        Some(other) => bail!("unknown benchmark {other:?}: try `mss`"),
    }
}
