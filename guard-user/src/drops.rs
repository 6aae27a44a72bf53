//! The drop monitor: where and why the kernel drops packets. A program on
//! the `skb:kfree_skb` tracepoint counts drops in the kernel (a per-CPU map
//! keyed by reason, location, protocol and device); this side names them:
//! reasons from the running kernel's BTF (`enum skb_drop_reason`, numbered
//! differently by each kernel), locations from /proc/kallsyms, devices from
//! their ifindex and network namespace.

use std::{
    collections::HashMap,
    fs,
    io::{self, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, RawTracePoint},
};
use guard_common::{
    DROP_FIELD_NONE, DROP_LAYOUT_GLOBAL, DROPS_LOCK, DROPS_LOST_MAP, DROPS_MAP, DropKey,
    DropLayout, PIN_DROPS, PIN_DROPS_DIR, PIN_DROPS_LOST, PROG_DROP_MONITOR, PROG_DROP_MONITOR_BTF,
};

use crate::{btf::Btf, loader::EBPF_OBJECT, stats::json_str, sys};

const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const FORMAT: &str = "events/skb/kfree_skb/format";

/// The fields of a tracepoint's format file: name -> (offset, size).
#[derive(Debug, Default)]
pub struct TraceFormat {
    fields: HashMap<String, (u32, u32)>,
}

impl TraceFormat {
    /// Parses lines like `field:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;`.
    pub fn parse(text: &str) -> TraceFormat {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("field:") else {
                continue;
            };
            let mut parts = rest.split(';').map(str::trim);
            let decl = parts.next().unwrap_or_default();
            // The name is the last word, without an array suffix.
            let name = decl
                .rsplit([' ', '*'])
                .next()
                .unwrap_or_default()
                .split('[')
                .next()
                .unwrap_or_default();
            let num = |key: &str| -> Option<u32> {
                rest.split(';')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
            };
            if let (Some(off), Some(size)) = (num("offset:"), num("size:")) {
                fields.insert(name.to_string(), (off, size));
            }
        }
        TraceFormat { fields }
    }

    pub fn field(&self, name: &str) -> Option<(u32, u32)> {
        self.fields.get(name).copied()
    }
}

/// Kernel text symbols, to name a drop's location `function+0xoff`.
pub struct Kallsyms {
    /// (address, name), sorted by address.
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn from_proc() -> Result<Kallsyms> {
        let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        let k = Kallsyms::parse(&text);
        if k.syms.is_empty() {
            bail!(
                "/proc/kallsyms shows no addresses (kptr_restrict): run as root to name drop locations"
            );
        }
        Ok(k)
    }

    /// Parses `ffffffff81000000 T _stext [module]` lines; keeps text symbols.
    pub fn parse(text: &str) -> Kallsyms {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                if addr == 0 || !matches!(kind, "t" | "T" | "w" | "W") {
                    return None;
                }
                Some(match w.next() {
                    Some(module) => (addr, format!("{name} {module}")),
                    None => (addr, name.to_string()),
                })
            })
            .collect();
        syms.sort_by_key(|s| s.0);
        Kallsyms { syms }
    }

    /// (function, offset) of a kernel text address.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.syms.partition_point(|s| s.0 <= addr);
        let (start, name) = self.syms.get(i.checked_sub(1)?)?;
        Some((name, addr - start))
    }

    /// `function+0xoff`, or the bare address.
    pub fn name(&self, addr: u64) -> String {
        match self.resolve(addr) {
            Some((f, off)) => format!("{f}+{off:#x}"),
            None => format!("{addr:#x}"),
        }
    }
}

/// The running kernel's drop reasons, from its BTF.
#[derive(Debug, Default)]
pub struct Reasons {
    names: HashMap<u32, String>,
    subsystems: HashMap<u32, String>,
    pub not_dropped_yet: Option<u32>,
    pub consumed: Option<u32>,
}

const REASON_PREFIX: &str = "SKB_DROP_REASON_";
/// Reasons from subsystems (mac80211, openvswitch) carry the subsystem here.
const SUBSYS_SHIFT: u32 = 16;

impl Reasons {
    pub fn from_btf(btf: &Btf) -> Reasons {
        let mut r = Reasons::default();
        for (name, v) in btf.enum_values("skb_drop_reason").unwrap_or_default() {
            let v = v as u32;
            match name.as_str() {
                "SKB_NOT_DROPPED_YET" => r.not_dropped_yet = Some(v),
                "SKB_CONSUMED" => r.consumed = Some(v),
                _ => {}
            }
            let short = name
                .strip_prefix(REASON_PREFIX)
                .or_else(|| name.strip_prefix("SKB_"))
                .unwrap_or(&name);
            r.names.insert(v, short.to_string());
        }
        for (name, v) in btf
            .enum_values("skb_drop_reason_subsys")
            .unwrap_or_default()
        {
            let short = name
                .strip_prefix("SKB_DROP_REASON_SUBSYS_")
                .unwrap_or(&name);
            r.subsystems.insert(v as u32, short.to_string());
        }
        r
    }

    /// Whether this kernel has drop reasons at all (5.17+).
    pub fn known(&self) -> bool {
        !self.names.is_empty()
    }

    pub fn name(&self, reason: u32) -> String {
        if let Some(n) = self.names.get(&reason) {
            return n.clone();
        }
        let sub = reason >> SUBSYS_SHIFT;
        if sub != 0 {
            let s = self
                .subsystems
                .get(&sub)
                .cloned()
                .unwrap_or(sub.to_string());
            return format!("{s}:{}", reason & 0xffff);
        }
        if self.known() {
            format!("reason {reason}")
        } else {
            "-".to_string()
        }
    }

    /// The value of a reason named as the kernel does, with or without the
    /// `SKB_DROP_REASON_` prefix, in any case.
    pub fn lookup(&self, name: &str) -> Option<u32> {
        let want = name.to_ascii_uppercase();
        let want = want.strip_prefix(REASON_PREFIX).unwrap_or(&want);
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == want)
            .map(|(v, _)| *v)
    }

    pub fn all_names(&self) -> Vec<&str> {
        let mut v: Vec<_> = self.names.iter().collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.as_str()).collect()
    }
}

/// What the program needs, from the tracepoint's format and the BTF, plus
/// what could not be resolved (said to the operator).
pub fn layout(
    fmt: &TraceFormat,
    btf: Option<&Btf>,
    reasons: &Reasons,
) -> Result<(DropLayout, Vec<String>)> {
    let mut notes = Vec::new();
    if fmt.field("location").is_none() {
        bail!("skb:kfree_skb has no location field: not the tracepoint pktguard knows");
    }
    let mut l = DropLayout {
        not_dropped_yet: reasons.not_dropped_yet.unwrap_or(DROP_FIELD_NONE),
        consumed: reasons.consumed.unwrap_or(DROP_FIELD_NONE),
        ..DropLayout::default()
    };
    match fmt.field("reason") {
        Some((_, 4)) => l.has_reason = 1,
        _ => notes.push(
            "this kernel has no drop reasons (they arrived in 5.17): drops are counted by location only"
                .to_string(),
        ),
    }
    let skb = btf.ok_or_else(|| anyhow!("no BTF")).and_then(|b| {
        Ok([
            b.member("sk_buff", "protocol")?,
            b.member("sk_buff", "dev")?,
            b.member("net_device", "ifindex")?,
            b.member("net_device", "nd_net")?,
            b.member("net", "ns.inum")?,
        ])
    });
    match skb {
        Ok([p, d, i, n, inum])
            if p.size == 2 && d.size == 8 && i.size == 4 && n.size == 8 && inum.size == 4 =>
        {
            l.skb_protocol = p.offset;
            l.skb_dev = d.offset;
            l.dev_ifindex = i.offset;
            l.dev_net = n.offset;
            l.net_inum = inum.offset;
        }
        Ok(_) => notes.push(
            "unexpected sk_buff/net_device layout: protocols and interfaces not shown".into(),
        ),
        Err(e) => notes.push(format!("protocols and interfaces not shown: {e:#}")),
    }
    Ok((l, notes))
}

/// Mounts tracefs unless it is mounted already; returns where it is.
pub fn ensure_tracefs() -> Result<&'static str> {
    for root in TRACEFS {
        if Path::new(root).join(FORMAT).exists() {
            return Ok(root);
        }
    }
    let root = TRACEFS[0];
    sys::mount_fs("tracefs", root).with_context(|| {
        format!("mounting tracefs at {root} (try: mount -t tracefs nodev {root})")
    })?;
    if !Path::new(root).join(FORMAT).exists() {
        bail!("this kernel has no skb:kfree_skb tracepoint ({root}/{FORMAT} is missing)");
    }
    Ok(root)
}

/// Names interfaces by (ifindex, netns inode): in this namespace directly,
/// in a named one (`/run/netns/NAME`) from inside it, else by number.
pub struct IfaceNames {
    own: u32,
    cache: HashMap<(u32, u32), String>,
}

impl IfaceNames {
    pub fn new() -> Result<IfaceNames> {
        Ok(IfaceNames {
            own: own_netns()?,
            cache: HashMap::new(),
        })
    }

    pub fn own_netns(&self) -> u32 {
        self.own
    }

    pub fn name(&mut self, ifindex: u32, netns: u32) -> String {
        if ifindex == 0 {
            return "-".to_string();
        }
        let own = self.own;
        self.cache
            .entry((ifindex, netns))
            .or_insert_with(|| {
                if netns == own || netns == 0 {
                    return index_to_name(ifindex).unwrap_or_else(|| format!("if{ifindex}"));
                }
                match named_netns(netns) {
                    Some((name, path)) => {
                        let inside = std::thread::scope(|s| {
                            s.spawn(|| {
                                sys::enter_netns(&path).ok()?;
                                index_to_name(ifindex)
                            })
                            .join()
                            .ok()
                            .flatten()
                        });
                        format!(
                            "{}@{name}",
                            inside.unwrap_or_else(|| format!("if{ifindex}"))
                        )
                    }
                    None => format!("if{ifindex}@netns:{netns}"),
                }
            })
            .clone()
    }
}

fn own_netns() -> Result<u32> {
    Ok(sys::netns_inode(Path::new("/proc/thread-self/ns/net"))? as u32)
}

fn index_to_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

fn named_netns(inode: u32) -> Option<(String, PathBuf)> {
    fs::read_dir("/run/netns").ok()?.flatten().find_map(|e| {
        let path = e.path();
        (sys::netns_inode(&path).ok()? as u32 == inode)
            .then(|| (e.file_name().to_string_lossy().into_owned(), path))
    })
}

pub fn protocol_name(p: u16) -> String {
    match p {
        0x0800 => "ipv4".into(),
        0x86dd => "ipv6".into(),
        0x0806 => "arp".into(),
        0x8100 => "vlan".into(),
        0x0003 => "all".into(),
        0 => "-".into(),
        p => format!("{p:#06x}"),
    }
}

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
        let mut ebpf = EbpfLoader::new()
            .override_global(DROP_LAYOUT_GLOBAL, &layout, true)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;
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
fn lock_holder() -> Option<String> {
    let f = fs::File::open(DROPS_LOCK).ok()?;
    // SAFETY: flock on a valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None; // nobody holds it: stale
    }
    Some(fs::read_to_string(DROPS_LOCK).ok()?.trim().to_string())
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub reason: String,
    pub location: String,
    pub function: String,
    pub protocol: String,
    pub iface: String,
    pub ifindex: u32,
    pub netns: u32,
    pub total: u64,
    /// Drops per second over the last interval.
    pub rate: f64,
}

/// Which rows to keep.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// (ifindex, netns inode) of `--iface`.
    pub iface: Option<(u32, u32)>,
    /// The kernel's value of `--reason`.
    pub reason: Option<u32>,
}

impl Filter {
    pub fn keeps(&self, k: &DropKey) -> bool {
        self.iface
            .is_none_or(|(i, ns)| k.ifindex == i && k.netns == ns)
            && self.reason.is_none_or(|r| k.reason == r)
    }
}

/// Rows for `now`, with rates against `before`, most frequent first (by
/// rate, then total), at most `top`.
pub fn rows(
    now: &Snapshot,
    before: &Snapshot,
    elapsed: Duration,
    filter: &Filter,
    top: usize,
    mut name: impl FnMut(&DropKey) -> (String, String, String, String),
) -> Vec<Row> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut keys: Vec<(&DropKey, u64, f64)> = now
        .iter()
        .filter(|(k, _)| filter.keeps(k))
        .map(|(k, &n)| {
            let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (k, n, d as f64 / secs)
        })
        .collect();
    keys.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
    keys.truncate(top);
    keys.into_iter()
        .map(|(k, total, rate)| {
            let (reason, location, function, iface) = name(k);
            Row {
                reason,
                location,
                function,
                protocol: protocol_name(k.protocol),
                iface,
                ifindex: k.ifindex,
                netns: k.netns,
                total,
                rate,
            }
        })
        .collect()
}

pub fn render_table(rows: &[Row], header: &str) -> String {
    let mut out = format!("{header}\n");
    out.push_str(&format!(
        "{:>10} {:>10}  {:<28} {:<6} {:<20} {}\n",
        "RATE/s", "TOTAL", "REASON", "PROTO", "IFACE", "LOCATION"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:>10.1} {:>10}  {:<28} {:<6} {:<20} {}\n",
            r.rate, r.total, r.reason, r.protocol, r.iface, r.location
        ));
    }
    if rows.is_empty() {
        out.push_str("(no drops yet)\n");
    }
    out
}

pub fn render_plain(rows: &[Row], t: f64) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "t={t:.1}s reason={} location={} proto={} iface={} total={} rate={:.1}/s\n",
                r.reason, r.location, r.protocol, r.iface, r.total, r.rate
            )
        })
        .collect()
}

pub fn render_json(rows: &[Row], t: f64, interval: f64, lost: u64) -> String {
    let drops: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"reason\":{},\"location\":{},\"function\":{},\"protocol\":{},\"iface\":{},\"ifindex\":{},\"netns\":{},\"total\":{},\"rate\":{:.3}}}",
                json_str(&r.reason),
                json_str(&r.location),
                json_str(&r.function),
                json_str(&r.protocol),
                json_str(&r.iface),
                r.ifindex,
                r.netns,
                r.total,
                r.rate
            )
        })
        .collect();
    format!(
        "{{\"t\":{t:.3},\"interval\":{interval:.3},\"lost\":{lost},\"drops\":[{}]}}\n",
        drops.join(",")
    )
}

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
                && lock_holder().is_none()
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
                    render_json(&rows, t, elapsed.as_secs_f64(), lost)
                )?;
            } else if tty {
                let header = format!(
                    "pktguard drops: {source}; t={t:.0}s; lost to a full map: {lost}; Ctrl-C stops"
                );
                write!(out, "\x1b[H\x1b[2J{}", render_table(&rows, &header))?;
            } else {
                write!(out, "{}", render_plain(&rows, t))?;
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

/// (reason, location, function, interface) of a key.
pub fn name_key(
    mon: &DropMonitor,
    names: &mut IfaceNames,
    k: &DropKey,
) -> (String, String, String, String) {
    // The function as written: without the compiler's suffixes
    // (ip6_pkt_drop.isra.0) or a module name.
    let function = mon
        .syms
        .resolve(k.location)
        .and_then(|(f, _)| f.split(['.', ' ']).next())
        .unwrap_or_default()
        .to_string();
    (
        mon.reasons.name(k.reason),
        mon.syms.name(k.location),
        function,
        names.name(k.ifindex, k.netns),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: kfree_skb
ID: 2310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;
";

    /// 5.10: no reason, protocol right after location.
    const FORMAT_5_10: &str = "format:
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;
";

    #[test]
    fn tracepoint_formats() {
        let f = TraceFormat::parse(FORMAT_6_18);
        assert_eq!(f.field("skbaddr"), Some((8, 8)));
        assert_eq!(f.field("protocol"), Some((32, 2)));
        assert_eq!(f.field("reason"), Some((36, 4)));
        assert_eq!(f.field("common_pid"), Some((4, 4)));
        let (l, notes) = layout(&f, None, &Reasons::default()).unwrap();
        assert_eq!(l.has_reason, 1);
        assert_eq!(l.skb_dev, 0, "no BTF: no device");
        assert_eq!(notes.len(), 1, "{notes:?}");
        let btf = Btf::from_kernel().unwrap();
        let (l, notes) = layout(&f, Some(&btf), &Reasons::from_btf(&btf)).unwrap();
        assert!(
            l.skb_protocol > 0 && l.skb_dev > 0 && l.net_inum > 0,
            "{l:?}"
        );
        assert_ne!(l.consumed, DROP_FIELD_NONE);
        assert!(notes.is_empty(), "{notes:?}");

        let old = TraceFormat::parse(FORMAT_5_10);
        let (l, notes) = layout(&old, None, &Reasons::default()).unwrap();
        assert_eq!(l.has_reason, 0);
        assert!(notes[0].contains("5.17"), "{notes:?}");
        assert!(layout(&TraceFormat::parse("format:\n"), None, &Reasons::default()).is_err());
    }

    #[test]
    fn kallsyms_names_function_and_offset() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81a00000 t ip6_pkt_drop\n\
             ffffffff81a00100 D some_data\n\
             ffffffff81a00200 T ip6_pkt_discard\n\
             ffffffffc0000000 t vxlan_rcv\t[vxlan]\n\
             0000000000000000 T hidden\n",
        );
        assert_eq!(k.name(0xffff_ffff_81a0_0123), "ip6_pkt_drop+0x123");
        assert_eq!(
            k.resolve(0xffff_ffff_81a0_0200),
            Some(("ip6_pkt_discard", 0))
        );
        assert_eq!(k.name(0xffff_ffff_c000_0010), "vxlan_rcv [vxlan]+0x10");
        assert_eq!(k.name(0x10), "0x10");
    }

    #[test]
    fn reasons_from_the_running_kernel() {
        let btf = Btf::from_kernel().unwrap();
        let r = Reasons::from_btf(&btf);
        assert!(r.known());
        let no_socket = r.lookup("NO_SOCKET").unwrap();
        assert_eq!(r.lookup("skb_drop_reason_no_socket"), Some(no_socket));
        assert_eq!(r.name(no_socket), "NO_SOCKET");
        assert!(r.consumed.is_some() && r.not_dropped_yet.is_some());
        assert_eq!(r.lookup("NOT_A_REASON"), None);
    }

    #[test]
    fn rows_rank_by_rate_then_total_and_filter() {
        let key = |reason, ifindex| DropKey {
            location: 0x1000,
            reason,
            ifindex,
            netns: 7,
            protocol: 0x0800,
            _pad: 0,
        };
        let before: Snapshot = [(key(1, 1), 100), (key(2, 1), 0)].into();
        let now: Snapshot = [(key(1, 1), 100), (key(2, 1), 50), (key(3, 2), 10)].into();
        let name = |k: &DropKey| {
            (
                k.reason.to_string(),
                String::new(),
                String::new(),
                k.ifindex.to_string(),
            )
        };
        let r = rows(
            &now,
            &before,
            Duration::from_secs(2),
            &Filter::default(),
            10,
            name,
        );
        let order: Vec<_> = r
            .iter()
            .map(|r| (r.reason.as_str(), r.total, r.rate))
            .collect();
        assert_eq!(order, [("2", 50, 25.0), ("3", 10, 5.0), ("1", 100, 0.0)]);
        let r = rows(
            &now,
            &before,
            Duration::from_secs(2),
            &Filter::default(),
            1,
            name,
        );
        assert_eq!(r.len(), 1);
        let f = Filter {
            iface: Some((1, 7)),
            reason: None,
        };
        assert_eq!(
            rows(&now, &before, Duration::from_secs(1), &f, 10, name).len(),
            2
        );
        let f = Filter {
            iface: Some((1, 8)),
            reason: None,
        };
        assert!(rows(&now, &before, Duration::from_secs(1), &f, 10, name).is_empty());
        let f = Filter {
            iface: None,
            reason: Some(3),
        };
        assert_eq!(
            rows(&now, &before, Duration::from_secs(1), &f, 10, name).len(),
            1
        );
        let json = render_json(&r, 1.0, 2.0, 0);
        assert!(
            json.starts_with("{\"t\":1.000,") && json.ends_with("]}\n"),
            "{json}"
        );
    }

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
