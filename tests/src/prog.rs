//! The guard's programs under BPF_PROG_TEST_RUN: loaded, run on one frame,
//! and checked row by row against a case table.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use guard_common::{Hook, LinkKind, MSS_CONFIG_MAP, MSS_COUNTERS_MAP, MssConfig, MssCounter};
use guard_user::guard::counters::HookStats;

/// The guard's object loaded (not attached), for BPF_PROG_TEST_RUN, with
/// the other objects (drop monitor, lab, bench) whose programs tests run
/// too. A program is loaded into the kernel (verified) when first run:
/// under TCG in the kernel matrix, verifying programs a test does not run
/// costs seconds each.
pub struct Loaded {
    pub ebpf: std::cell::RefCell<Ebpf>,
    /// The drop monitor's, the lab's and the bench object, with their
    /// globals at their defaults (tests set none of them).
    pub others: Vec<std::cell::RefCell<Ebpf>>,
}

/// What a program did with one frame.
pub struct Ran {
    pub retval: u32,
    pub out: Vec<u8>,
    pub duration: Duration,
}

impl Loaded {
    pub fn new(cfg: MssConfig, link: LinkKind) -> Result<Loaded> {
        let ebpf = guard_user::guard::object::load(
            link,
            guard_common::FEATURE_MSS | guard_common::FEATURE_CSUM,
        )?;
        Loaded::with_guard(ebpf, cfg)
    }

    fn with_guard(guard: Ebpf, cfg: MssConfig) -> Result<Loaded> {
        use guard_common::{DROP_FIELD_NONE, DropLayout, LT_DROP_LAYOUT, LT_LAB_CORRUPT};
        use guard_user::objects::{self, BENCH, DROPS, LAB};
        // The drop monitor as on a kernel whose layout is unknown (no field
        // is read), the lab without corruption.
        let unknown = DropLayout {
            not_dropped_yet: DROP_FIELD_NONE,
            consumed: DROP_FIELD_NONE,
            ..DropLayout::default()
        };
        let others = [
            (DROPS, objects::record(LT_DROP_LAYOUT, &unknown)),
            (LAB, vec![(LT_LAB_CORRUPT, 0)]),
            (BENCH, vec![]),
        ]
        .into_iter()
        .map(|(o, constants)| {
            let o = objects::with_constants(o, &constants)?;
            let ebpf = objects::load(&mut aya::EbpfLoader::new(), o)?;
            Ok(std::cell::RefCell::new(ebpf))
        })
        .collect::<Result<_>>()?;
        let mut loaded = Loaded {
            ebpf: std::cell::RefCell::new(guard),
            others,
        };
        loaded.set_config(cfg)?;
        Ok(loaded)
    }

    /// Every object, the guard's first.
    pub fn objects(&self) -> impl Iterator<Item = &std::cell::RefCell<Ebpf>> {
        std::iter::once(&self.ebpf).chain(&self.others)
    }

    /// The object that holds program `name`.
    fn object_of(&self, name: &str) -> Result<&std::cell::RefCell<Ebpf>> {
        self.objects()
            .find(|o| o.borrow().program(name).is_some())
            .ok_or_else(|| anyhow!("no program {name}"))
    }

    /// Loads program `name` into the kernel unless it is.
    fn ensure_loaded(&self, name: &str) -> Result<()> {
        let mut ebpf = self.object_of(name)?.borrow_mut();
        match ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
        {
            aya::programs::Program::Xdp(p) if p.fd().is_err() => {
                p.load().with_context(|| format!("loading {name}"))?
            }
            aya::programs::Program::SchedClassifier(p) if p.fd().is_err() => {
                p.load().with_context(|| format!("loading {name}"))?
            }
            _ => {}
        }
        Ok(())
    }

    /// Loads with only `features` (FEATURE_* bits) compiled in.
    pub fn with_features(cfg: MssConfig, link: LinkKind, features: u8) -> Result<Loaded> {
        let loaded = Loaded::with_guard(guard_user::guard::object::load(link, features)?, cfg)?;
        // Multi-buffer XDP and bpf_xdp_load_bytes arrived in 5.18: the
        // loader never loads these programs on older kernels, nor does this.
        let frags = guard_user::guard::object::xdp_frags_supported();
        for name in [
            guard_common::PROG_XDP,
            guard_common::PROG_XDP_FRAGS,
            guard_common::PROG_BENCH_EMPTY_XDP,
            guard_common::PROG_BENCH_EMPTY_XDP_FRAGS,
            guard_common::PROG_BENCH_CSUM_PASS_XDP,
        ] {
            if !frags
                && name != guard_common::PROG_XDP
                && name != guard_common::PROG_BENCH_EMPTY_XDP
            {
                eprintln!("{name}: not loaded (multi-buffer XDP needs Linux 5.18)");
                continue;
            }
            let mut ebpf = loaded.object_of(name)?.borrow_mut();
            let p: &mut Xdp = ebpf.program_mut(name).expect("xdp program").try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        for name in [
            guard_common::PROG_TC_INGRESS,
            guard_common::PROG_TC_EGRESS,
            guard_common::PROG_BENCH_EMPTY_TC,
            guard_common::PROG_LAB_DOUBLE_SNAT,
            guard_common::PROG_BENCH_CSUM_PASS_TC,
            guard_common::PROG_TC_GSO,
            guard_common::PROG_TC_GSO_TYPED,
        ] {
            let mut ebpf = loaded.object_of(name)?.borrow_mut();
            let p: &mut SchedClassifier = ebpf.program_mut(name).expect("tc program").try_into()?;
            let gso = name == guard_common::PROG_TC_GSO || name == guard_common::PROG_TC_GSO_TYPED;
            if gso && !guard_user::guard::object::gso_size_supported() {
                // The loader refuses --gso-guard here; the kernel would too.
                anyhow::ensure!(
                    p.load().is_err(),
                    "{name} loaded on a kernel without __sk_buff.gso_size"
                );
                eprintln!("{name}: refused by this kernel (__sk_buff.gso_size needs Linux 5.7)");
                continue;
            }
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let mut ebpf = loaded
            .object_of(guard_common::PROG_DROP_MONITOR)?
            .borrow_mut();
        let p: &mut aya::programs::RawTracePoint = ebpf
            .program_mut(guard_common::PROG_DROP_MONITOR)
            .expect("drop monitor")
            .try_into()?;
        p.load().context("loading the drop monitor")?;
        // The BTF tracepoint needs the kernel's BTF (4.19 has none: the
        // drop monitor runs the raw tracepoint there, loaded above).
        match aya::Btf::from_sys_fs() {
            Ok(btf) => {
                let p: &mut aya::programs::BtfTracePoint = ebpf
                    .program_mut(guard_common::PROG_DROP_MONITOR_BTF)
                    .expect("drop monitor (BTF)")
                    .try_into()?;
                p.load("kfree_skb", &btf)
                    .context("loading the drop monitor (BTF)")?;
            }
            Err(_) => {
                anyhow::ensure!(
                    !guard_user::host::kernel::has(guard_user::host::kernel::Feature::KernelBtf),
                    "the kernel has BTF that aya cannot read"
                );
                eprintln!("drop_monitor_btf: not loaded (the kernel has no BTF)");
            }
        }
        drop(ebpf);
        Ok(loaded)
    }

    /// Changes the clamp of the loaded programs.
    pub fn set_config(&mut self, cfg: MssConfig) -> Result<()> {
        self.set_map(MSS_CONFIG_MAP, cfg)
    }

    /// Runs program `name` on `frame`, `repeat` times.
    pub fn run(&self, name: &str, frame: &[u8], repeat: u32) -> Result<Ran> {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        };
        self.ensure_loaded(name)?;
        let ebpf = self.object_of(name)?.borrow();
        let prog = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?;
        let res = match prog {
            aya::programs::Program::Xdp(p) => p.test_run(opts)?,
            aya::programs::Program::SchedClassifier(p) => p.test_run(opts)?,
            _ => bail!("{name} cannot be test-run here"),
        };
        out.truncate(res.data_size_out as usize);
        Ok(Ran {
            retval: res.return_value,
            out,
            duration: res.duration,
        })
    }

    /// Runs TC program `name` on `frame` as a GSO packet: an `__sk_buff`
    /// context carrying gso_size and gso_segs.
    pub fn run_gso(&self, name: &str, frame: &[u8], gso_size: u32, gso_segs: u32) -> Result<Ran> {
        self.run_gso_repeat(name, frame, gso_size, gso_segs, 1)
    }

    /// [`Loaded::run_gso`], `repeat` times.
    pub fn run_gso_repeat(
        &self,
        name: &str,
        frame: &[u8],
        gso_size: u32,
        gso_segs: u32,
        repeat: u32,
    ) -> Result<Ran> {
        use aya_ebpf_bindings::bindings::__sk_buff;
        // SAFETY: plain old data; all-zero is a valid __sk_buff.
        let mut skb: __sk_buff = unsafe { std::mem::zeroed() };
        skb.gso_size = gso_size;
        skb.gso_segs = gso_segs;
        // SAFETY: reading the bytes of a plain struct.
        let ctx = unsafe {
            std::slice::from_raw_parts(
                (&skb as *const __sk_buff).cast::<u8>(),
                std::mem::size_of::<__sk_buff>(),
            )
        };
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(ctx),
            repeat,
            ..TestRunOptions::new()
        };
        self.ensure_loaded(name)?;
        let ebpf = self.object_of(name)?.borrow();
        let aya::programs::Program::SchedClassifier(p) = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
        else {
            bail!("{name} is not a TC program");
        };
        let res = p.test_run(opts)?;
        out.truncate(res.data_size_out as usize);
        Ok(Ran {
            retval: res.return_value,
            out,
            duration: res.duration,
        })
    }

    /// `read` over the guard's per-CPU counter map `name`.
    fn read_counters<T>(
        &self,
        name: &str,
        read: impl FnOnce(&PerCpuArray<&aya::maps::MapData, u64>) -> Result<T>,
    ) -> Result<T> {
        let ebpf = self.ebpf.borrow();
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("no counter map {name}"))?;
        read(&PerCpuArray::try_from(map)?)
    }

    pub fn counters(&self) -> Result<Vec<HookStats>> {
        self.read_counters(MSS_COUNTERS_MAP, |m| {
            guard_user::guard::counters::hook_stats(m)
        })
    }

    pub fn counter(&self, hook: Hook, c: MssCounter) -> Result<u64> {
        Ok(self.counters()?[hook as usize].get(c))
    }

    /// The checksum repair's outcome counts per hook.
    pub fn repair_counters(&self) -> Result<Vec<guard_user::guard::counters::RepairHookStats>> {
        self.read_counters(guard_common::CSUM_COUNTERS_MAP, |m| {
            guard_user::guard::counters::repair_hook_stats(m)
        })
    }

    /// Sets the GSO guard's configuration.
    pub fn set_gso(&mut self, cfg: guard_common::GsoConfig) -> Result<()> {
        self.set_map(guard_common::GSO_CONFIG_MAP, cfg)
    }

    /// Writes `cfg` as entry 0 of the guard's configuration map `map`.
    fn set_map<T: aya::Pod>(&mut self, map: &str, cfg: T) -> Result<()> {
        guard_user::guard::object::set_config(self.ebpf.get_mut(), map, cfg)
    }

    /// The GSO guard's outcome counts.
    pub fn gso_counters(&self) -> Result<[u64; guard_common::GsoOutcome::COUNT]> {
        self.read_counters(guard_common::GSO_COUNTERS_MAP, |m| {
            guard_user::guard::counters::gso_stats(m)
        })
    }

    /// Sets the repair configuration.
    pub fn set_repair(&mut self, cfg: guard_common::RepairConfig) -> Result<()> {
        self.set_map(guard_common::CSUM_CONFIG_MAP, cfg)
    }
}

/// The rows of a BPF_PROG_TEST_RUN table: every row is checked, then all
/// failures are reported at once.
pub struct Table {
    prog: String,
    rows: usize,
    failures: Vec<String>,
}

impl Table {
    pub fn new(prog: &str) -> Table {
        Table {
            prog: prog.to_string(),
            rows: 0,
            failures: Vec::new(),
        }
    }

    /// One row: the program's verdict and output frame against the wanted
    /// ones, plus whatever else the caller found wrong.
    pub fn row(&mut self, name: &str, ran: &Ran, verdict: u32, out: &[u8], mut why: Vec<String>) {
        self.rows += 1;
        if ran.retval != verdict {
            why.insert(
                0,
                format!("verdict {} (want {})", ran.retval as i32, verdict as i32),
            );
        }
        if ran.out != out {
            why.insert(0, "output frame differs".to_string());
        }
        if !why.is_empty() {
            self.failures.push(format!("{name}: {}", why.join(", ")));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} rows failed:\n{}",
            self.prog,
            self.failures.len(),
            self.rows,
            self.failures.join("\n")
        );
    }
}
