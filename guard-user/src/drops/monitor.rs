//! The monitor's program and maps: loaded with the layout and attached to
//! the tracepoint, or opened from the pins of `pktguard run --drop-monitor`,
//! whose host-wide lock says one runs.

use std::{collections::HashMap, fs, io::Write as _, os::fd::AsRawFd as _, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, RawTracePoint},
};
use guard_common::{
    DROPS_LOCK, DROPS_LOST_MAP, DROPS_MAP, DropKey, LT_DROP_LAYOUT, PIN_DROPS, PIN_DROPS_DIR,
    PIN_DROPS_LOST, PROG_DROP_MONITOR, PROG_DROP_MONITOR_BTF,
};

use super::{
    layout::{FORMAT, TraceFormat, ensure_tracefs, layout},
    names::{Kallsyms, Reasons},
};
use crate::{
    host::{btf::Btf, sys},
    objects,
};

/// Drops summed over CPUs, per key, at one moment.
pub type Snapshot = HashMap<DropKey, u64>;

/// The monitor: its own program on the tracepoint (for as long as it
/// lives), or the pinned maps of the one `pktguard run --drop-monitor` runs.
pub struct DropMonitor {
    drops: PerCpuHashMap<MapData, DropKey, u64>,
    lost: PerCpuArray<MapData, u64>,
    /// The object that owns the program and its tracepoint link.
    _ebpf: Option<Ebpf>,
    lock: Option<fs::File>,
    pub reasons: Reasons,
    pub syms: Kallsyms,
    pub notes: Vec<String>,
    /// Set when reading another process's monitor: its pid.
    pub shared_from: Option<String>,
    /// The program counting (empty when reading another's monitor).
    pub program: &'static str,
}

impl DropMonitor {
    /// Attaches a monitor; with `pin`, pins its maps for `pktguard drops`
    /// and takes the host-wide lock (one pinned monitor per host).
    pub fn start(pin: bool) -> Result<DropMonitor> {
        DropMonitor::start_with(pin, false)
    }

    /// [`DropMonitor::start`]; `raw_only` skips the BTF tracepoint (the
    /// fallback of kernels without it, for tests and benchmarks).
    pub fn start_with(pin: bool, raw_only: bool) -> Result<DropMonitor> {
        sys::check_privileges()?;
        let root = ensure_tracefs()?;
        let fmt_path = Path::new(root).join(FORMAT);
        let fmt = TraceFormat::parse(
            &fs::read_to_string(&fmt_path)
                .with_context(|| format!("reading {}", fmt_path.display()))?,
        );
        let btf = Btf::from_kernel();
        let reasons = btf.as_ref().map(Reasons::from_btf).unwrap_or_default();
        let (layout, mut notes) = layout(&fmt, btf.as_ref().ok(), &reasons)?;
        if layout.has_reason != 0 && !reasons.known() {
            notes.push("drop reasons shown as numbers: no enum skb_drop_reason in BTF".into());
        }
        let syms = Kallsyms::from_proc()?;
        let lock = if pin { Some(take_lock()?) } else { None };
        let object =
            objects::with_constants(objects::DROPS, &objects::record(LT_DROP_LAYOUT, &layout))?;
        let mut ebpf = objects::load(&mut EbpfLoader::new(), object)
            .context("loading the drop monitor's eBPF object")?;
        let program = attach(&mut ebpf, raw_only, &mut notes)?;
        let drops_map = ebpf.take_map(DROPS_MAP).expect("DROPS");
        let lost_map = ebpf.take_map(DROPS_LOST_MAP).expect("DROPS_LOST");
        if pin {
            sys::ensure_bpffs(guard_common::BPFFS_ROOT)?;
            let _ = fs::remove_dir_all(PIN_DROPS_DIR);
            fs::create_dir_all(PIN_DROPS_DIR)
                .with_context(|| format!("creating {PIN_DROPS_DIR}"))?;
            for (map, pin) in [(&drops_map, PIN_DROPS), (&lost_map, PIN_DROPS_LOST)] {
                map.pin(Path::new(PIN_DROPS_DIR).join(pin))
                    .with_context(|| format!("pinning the drop monitor under {PIN_DROPS_DIR}"))?;
            }
        }
        Ok(DropMonitor {
            drops: PerCpuHashMap::try_from(drops_map)?,
            lost: PerCpuArray::try_from(lost_map)?,
            _ebpf: Some(ebpf),
            lock,
            reasons,
            syms,
            notes,
            shared_from: None,
            program,
        })
    }

    /// The monitor of a running `pktguard run --drop-monitor`, if any.
    pub fn shared() -> Result<Option<DropMonitor>> {
        let Some(pid) = lock_holder() else {
            return Ok(None);
        };
        let open = |pin: &str| -> Result<MapData> {
            let p = Path::new(PIN_DROPS_DIR).join(pin);
            MapData::from_pin(&p).with_context(|| format!("opening {}", p.display()))
        };
        let drops = PerCpuHashMap::try_from(Map::PerCpuHashMap(open(PIN_DROPS)?))?;
        let lost = PerCpuArray::try_from(Map::PerCpuArray(open(PIN_DROPS_LOST)?))?;
        let btf = Btf::from_kernel();
        Ok(Some(DropMonitor {
            drops,
            lost,
            _ebpf: None,
            lock: None,
            reasons: btf.as_ref().map(Reasons::from_btf).unwrap_or_default(),
            syms: Kallsyms::from_proc()?,
            notes: Vec::new(),
            shared_from: Some(pid),
            program: "",
        }))
    }

    /// Every key's drops so far, and the drops lost to a full map.
    pub fn snapshot(&self) -> Result<(Snapshot, u64)> {
        let mut snap = Snapshot::new();
        for entry in self.drops.iter() {
            let (k, v) = entry.context("reading the drop map")?;
            *snap.entry(k).or_default() += v.iter().sum::<u64>();
        }
        let lost = self.lost.get(&0, 0)?.iter().sum();
        Ok((snap, lost))
    }
}

/// Attaches the BTF tracepoint where the kernel takes it, else the raw one;
/// returns the program's name.
fn attach(ebpf: &mut Ebpf, raw_only: bool, notes: &mut Vec<String>) -> Result<&'static str> {
    if raw_only {
        notes.push("raw tracepoint only (asked for)".into());
    } else {
        match attach_btf(ebpf) {
            Ok(()) => return Ok(PROG_DROP_MONITOR_BTF),
            Err(e) => notes.push(format!(
                "BTF tracepoint refused ({e:#}): using the raw tracepoint, which costs more per drop"
            )),
        }
    }
    let prog: &mut RawTracePoint = ebpf
        .program_mut(PROG_DROP_MONITOR)
        .ok_or_else(|| anyhow!("the eBPF object has no program {PROG_DROP_MONITOR}"))?
        .try_into()?;
    prog.load().context("loading the drop monitor (verifier)")?;
    prog.attach("kfree_skb")
        .context("attaching to the kfree_skb raw tracepoint")?;
    Ok(PROG_DROP_MONITOR)
}

fn attach_btf(ebpf: &mut Ebpf) -> Result<()> {
    let btf = aya::Btf::from_sys_fs()?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(PROG_DROP_MONITOR_BTF)
        .ok_or_else(|| anyhow!("no program {PROG_DROP_MONITOR_BTF}"))?
        .try_into()?;
    prog.load("kfree_skb", &btf)?;
    prog.attach()?;
    Ok(())
}

impl Drop for DropMonitor {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = fs::remove_dir_all(PIN_DROPS_DIR);
            let _ = fs::remove_file(DROPS_LOCK);
        }
    }
}

fn take_lock() -> Result<fs::File> {
    fs::create_dir_all(guard_common::RUN_DIR)
        .with_context(|| format!("creating {}", guard_common::RUN_DIR))?;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(DROPS_LOCK)
        .with_context(|| format!("opening {DROPS_LOCK}"))?;
    // SAFETY: flock on a valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = fs::read_to_string(DROPS_LOCK).unwrap_or_default();
        bail!(
            "a drop monitor already runs on this host (pid {}): `pktguard drops` reads it",
            pid.trim()
        );
    }
    f.set_len(0)?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}

/// The pid holding the pinned monitor's lock, if one does.
pub(super) fn lock_holder() -> Option<String> {
    let f = fs::File::open(DROPS_LOCK).ok()?;
    // SAFETY: flock on a valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None; // nobody holds it: stale
    }
    Some(fs::read_to_string(DROPS_LOCK).ok()?.trim().to_string())
}
