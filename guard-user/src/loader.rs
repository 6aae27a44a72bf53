//! Loads the guard for one interface, configures it, attaches it, pins its
//! maps for `pktguard stats`, and undoes all of that when dropped.

use std::{
    fs,
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc,
    },
};
use guard_common::{
    CSUM_CONFIG_MAP, CSUM_COUNTERS_MAP, FEATURE_CSUM, FEATURE_MSS, FEATURES_GLOBAL, GSO_CONFIG_MAP,
    GSO_COUNTERS_MAP, GSO_LAYOUT_GLOBAL, GsoConfig, GsoLayout, GsoOutcome, HAS_GSO_SIZE_GLOBAL,
    LINK_KIND_GLOBAL, LinkKind, MSS_CONFIG_MAP, MSS_COUNTERS_MAP, MssConfig, PEERS_V4_MAP,
    PEERS_V6_MAP, PIN_CONFIG, PIN_COUNTERS, PIN_CSUM_COUNTERS, PIN_DIR, PIN_GSO_COUNTERS,
    PROG_TC_EGRESS, PROG_TC_GSO, PROG_TC_GSO_TYPED, PROG_TC_INGRESS, PROG_XDP, PROG_XDP_FRAGS,
    RUN_DIR,
};

use crate::{
    btf::Btf,
    clamp::Clamp,
    kernel::{self, Feature},
    repair_cfg::RepairSpec,
    sys,
};

/// The eBPF object, built by build.rs and embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard"));

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP on physical NICs whose driver takes it, TC elsewhere.
    Auto,
    /// TC (TCX on Linux 6.6+, a clsact qdisc otherwise).
    Tc,
    /// Native (driver) XDP.
    Xdp,
    /// Generic (skb) XDP: works on every device, slower than TC.
    XdpGeneric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Ingress,
    Egress,
    Both,
}

/// Where one program got attached, as shown to the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    XdpNative,
    XdpGeneric,
    TcIngress,
    TcEgress,
    TcGso,
}

impl Attachment {
    /// The pin of this attachment's link under the interface's directory.
    pub const fn link_pin(self) -> &'static str {
        match self {
            Attachment::XdpNative | Attachment::XdpGeneric => "link_xdp",
            Attachment::TcIngress => "link_tc_ingress",
            Attachment::TcEgress => "link_tc_egress",
            Attachment::TcGso => "link_tc_gso",
        }
    }

    pub const ALL_LINK_PINS: [&'static str; 4] = [
        "link_xdp",
        "link_tc_ingress",
        "link_tc_egress",
        "link_tc_gso",
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Attachment::XdpNative => "xdp-native",
            Attachment::XdpGeneric => "xdp-generic",
            Attachment::TcIngress => "tc-ingress",
            Attachment::TcEgress => "tc-egress",
            Attachment::TcGso => "tc-ingress-gso",
        }
    }
}

/// A guarded interface. Dropping it detaches every program it attached,
/// removes the clsact qdisc if it added one, its pins and its lock.
pub struct Guard {
    pub iface: String,
    pub attached: Vec<Attachment>,
    /// Why auto mode chose what it chose, for the log.
    pub notes: Vec<String>,
    ebpf: Option<Ebpf>,
    pin_dir: PathBuf,
    lock_path: PathBuf,
    lock: Option<fs::File>,
    added_clsact: bool,
    repair: bool,
    /// Leave programs attached and pinned on exit (`--persist`).
    persist: bool,
    /// What was asked, for a re-attach when the interface comes back.
    mode: AttachMode,
    direction: Direction,
    pub features: Features,
    /// The interface's index when attached: another one means the device
    /// was re-created.
    pub ifindex: u32,
}

/// What a guard does on its interface.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub clamp: Option<Clamp>,
    pub repair: Option<RepairSpec>,
    /// The malformed-GSO guard (its own TC ingress program).
    pub gso: Option<GsoConfig>,
}

impl Features {
    pub fn mask(&self) -> u8 {
        let mut m = 0;
        if self.clamp.is_some() {
            m |= FEATURE_MSS;
        }
        if self.repair.is_some() {
            m |= FEATURE_CSUM;
        }
        m
    }
}

/// `__sk_buff.gso_size` arrived in Linux 5.7.
fn gso_size_supported() -> bool {
    kernel::has(Feature::GsoSize)
}

/// Multi-buffer XDP (and bpf_xdp_load_bytes) arrived in Linux 5.18.
pub fn xdp_frags_supported() -> bool {
    kernel::has(Feature::XdpFrags)
}

/// Writes entry 0 of the configuration map `name` (MSS_CONFIG, CSUM_CONFIG,
/// GSO_CONFIG): running programs read it on their next packet.
pub fn set_config<T: aya::Pod>(ebpf: &mut Ebpf, name: &str, value: T) -> Result<()> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no map {name}"))?;
    Array::<_, T>::try_from(map)?
        .set(0, &value, 0)
        .with_context(|| format!("writing {name}"))?;
    Ok(())
}

fn configure_repair(ebpf: &mut Ebpf, spec: &RepairSpec) -> Result<()> {
    set_config(ebpf, CSUM_CONFIG_MAP, spec.config())?;
    // Adopted maps keep an earlier run's ranges: start from none.
    {
        let mut t: LpmTrie<_, [u8; 4], u8> =
            LpmTrie::try_from(ebpf.map_mut(PEERS_V4_MAP).expect("PEERS_V4"))?;
        let keys: Vec<_> = t.keys().flatten().collect();
        for k in keys {
            let _ = t.remove(&k);
        }
        let mut t: LpmTrie<_, [u8; 16], u8> =
            LpmTrie::try_from(ebpf.map_mut(PEERS_V6_MAP).expect("PEERS_V6"))?;
        let keys: Vec<_> = t.keys().flatten().collect();
        for k in keys {
            let _ = t.remove(&k);
        }
    }
    for cidr in &spec.peers {
        match cidr.addr {
            std::net::IpAddr::V4(a) => {
                let mut t: LpmTrie<_, [u8; 4], u8> =
                    LpmTrie::try_from(ebpf.map_mut(PEERS_V4_MAP).expect("PEERS_V4"))?;
                t.insert(&Key::new(cidr.prefix.into(), a.octets()), &1, 0)?;
            }
            std::net::IpAddr::V6(a) => {
                let mut t: LpmTrie<_, [u8; 16], u8> =
                    LpmTrie::try_from(ebpf.map_mut(PEERS_V6_MAP).expect("PEERS_V6"))?;
                t.insert(&Key::new(cidr.prefix.into(), a.octets()), &1, 0)?;
            }
        }
    }
    Ok(())
}

/// The version of the maps' layout: pinned maps of another version are not
/// adopted (their counters restart from 0).
const MAPS_ABI: &str = concat!("pktguard-maps-1 ", env!("CARGO_PKG_VERSION"));
/// bpffs holds only BPF objects: the maps' version is kept next to the
/// state file, as `<key>.abi`.
fn abi_path(lock_path: &Path) -> PathBuf {
    lock_path.with_extension("abi")
}

/// Every map a guard pins, and its pin name: counters and configuration, so
/// that a restarted guard adopts them (counters go on counting).
fn map_pins(features: &Features) -> Vec<(&'static str, &'static str)> {
    let mut pins = vec![
        (MSS_COUNTERS_MAP, PIN_COUNTERS),
        (MSS_CONFIG_MAP, PIN_CONFIG),
        (guard_common::EVENTS_MAP, guard_common::PIN_EVENTS),
    ];
    if features.repair.is_some() {
        pins.extend([
            (CSUM_COUNTERS_MAP, PIN_CSUM_COUNTERS),
            (CSUM_CONFIG_MAP, "csum_config"),
            (PEERS_V4_MAP, "peers_v4"),
            (PEERS_V6_MAP, "peers_v6"),
        ]);
    }
    if features.gso.is_some() {
        pins.extend([
            (GSO_COUNTERS_MAP, PIN_GSO_COUNTERS),
            (GSO_CONFIG_MAP, "gso_config"),
        ]);
    }
    pins
}

impl Guard {
    /// Guards `iface` until dropped; see [`Guard::start_with`].
    pub fn start(
        iface: &str,
        mode: AttachMode,
        direction: Direction,
        features: &Features,
    ) -> Result<Guard> {
        Guard::start_with(iface, mode, direction, features, false)
    }

    /// Loads, configures and attaches. Links and maps pinned by an earlier
    /// guard of `iface` are adopted: its maps are reused (counters go on)
    /// and its links get the new programs atomically (BPF_LINK_UPDATE), so
    /// no packet passes unguarded. With `persist`, links stay pinned and
    /// attached when the guard is dropped (`pktguard detach` removes them).
    pub fn start_with(
        iface: &str,
        mode: AttachMode,
        direction: Direction,
        features: &Features,
        persist: bool,
    ) -> Result<Guard> {
        if features.clamp.is_none() && features.repair.is_none() && features.gso.is_none() {
            bail!("nothing to do: give a clamp (--mtu ...), --csum-repair and/or --gso-guard");
        }
        if features.gso.is_some() && !gso_size_supported() {
            let (major, minor) = sys::kernel_version()?;
            bail!(
                "--gso-guard reads __sk_buff.gso_size, which Linux {major}.{minor} lacks (it exists since 5.7)"
            );
        }
        let ifindex = sys::ifindex(iface)?;
        let link_kind = link_kind(iface)?;
        let key = sys::iface_key(iface)?;
        // The repair runs at ingress only: egress needs a program only to clamp.
        let direction = match (direction, features.clamp) {
            (Direction::Both, None) => Direction::Ingress,
            (d, _) => d,
        };
        let mut guard = Guard {
            iface: iface.to_string(),
            attached: Vec::new(),
            notes: Vec::new(),
            ebpf: None,
            pin_dir: PathBuf::from(PIN_DIR).join(&key),
            lock_path: PathBuf::from(RUN_DIR).join(format!("{key}.lock")),
            lock: None,
            added_clsact: false,
            repair: false,
            persist,
            mode,
            direction,
            features: features.clone(),
            ifindex,
        };
        // From here on, an error drops `guard`, which undoes what was done.
        guard.lock()?;
        sys::ensure_bpffs(guard_common::BPFFS_ROOT)?;
        guard.prepare_pin_dir()?;
        let mut ebpf = load_pinned(
            link_kind,
            features.mask(),
            &guard.pin_dir,
            &map_pins(features),
        )?;
        let cfg = features
            .clamp
            .map_or(MssConfig::new(0, 0), |c| MssConfig::new(c.mss_v4, c.mss_v6));
        set_config(&mut ebpf, MSS_CONFIG_MAP, cfg)?;
        if let Some(spec) = &features.repair {
            configure_repair(&mut ebpf, spec)?;
        }
        if let Some(gso) = features.gso {
            set_config(&mut ebpf, GSO_CONFIG_MAP, gso)?;
        }
        let abi = abi_path(&guard.lock_path);
        fs::write(&abi, MAPS_ABI).with_context(|| format!("writing {}", abi.display()))?;
        guard.ebpf = Some(ebpf);
        guard.repair = features.repair.is_some();
        guard.attach_all()?;
        guard.drop_unwanted_links()?;
        guard.write_state()?;
        Ok(guard)
    }

    fn attach_all(&mut self) -> Result<()> {
        if self.features.clamp.is_some() || self.features.repair.is_some() {
            self.attach(self.mode, self.direction)?;
        }
        if self.features.gso.is_some() {
            self.attach_gso()?;
        }
        Ok(())
    }

    /// Attaches the loaded programs again to a re-created interface of the
    /// same name (its old links died with the old device).
    pub fn reattach(&mut self) -> Result<()> {
        self.ifindex = sys::ifindex(&self.iface)?;
        self.attached.clear();
        self.added_clsact = false;
        for pin in Attachment::ALL_LINK_PINS {
            let _ = fs::remove_file(self.pin_dir.join(pin));
        }
        self.attach_all()?;
        self.write_state()
    }

    /// Applies new parameters through the maps, without reloading programs:
    /// `features` must enable the same features (see
    /// [`crate::config::IfaceConfig::same_programs`]).
    pub fn update(&mut self, features: &Features) -> Result<()> {
        let ebpf = self.ebpf();
        let cfg = features
            .clamp
            .map_or(MssConfig::new(0, 0), |c| MssConfig::new(c.mss_v4, c.mss_v6));
        set_config(ebpf, MSS_CONFIG_MAP, cfg)?;
        if let Some(spec) = &features.repair {
            configure_repair(ebpf, spec)?;
        }
        if let Some(gso) = features.gso {
            set_config(ebpf, GSO_CONFIG_MAP, gso)?;
        }
        self.features = features.clone();
        self.write_state()
    }

    /// Keeps what an earlier guard pinned if it is of this version: maps
    /// of another version are removed (new ones start at 0), links always
    /// stay until replaced.
    fn prepare_pin_dir(&mut self) -> Result<()> {
        let dir = &self.pin_dir;
        if dir.exists() {
            let abi = fs::read_to_string(abi_path(&self.lock_path)).unwrap_or_default();
            if abi != MAPS_ABI {
                for entry in fs::read_dir(dir)?.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.starts_with("link_") {
                        let _ = fs::remove_file(entry.path());
                    }
                }
                if !abi.is_empty() {
                    self.notes.push(format!(
                        "pinned maps of another version ({abi}) replaced: counters restart at 0"
                    ));
                }
            } else {
                self.notes
                    .push("adopted the pinned maps of an earlier run".to_string());
            }
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
    }

    /// Detaches links pinned by an earlier guard that this one does not use
    /// (it attached elsewhere: XDP then, TC now). Done after the new
    /// attachments, so there is no gap.
    fn drop_unwanted_links(&mut self) -> Result<()> {
        let wanted: Vec<&str> = self.attached.iter().map(|a| a.link_pin()).collect();
        for pin in Attachment::ALL_LINK_PINS {
            let path = self.pin_dir.join(pin);
            if !wanted.contains(&pin) && path.exists() {
                // Unpinning the last reference detaches the link.
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// With `persist`, moves the TCX link `id` of program `name` to its
    /// pin, where it outlives this process.
    fn pin_tc_link(
        &mut self,
        name: &str,
        id: aya::programs::tc::SchedClassifierLinkId,
        a: Attachment,
    ) -> Result<()> {
        if !self.persist {
            return Ok(());
        }
        let path = self.pin_dir.join(a.link_pin());
        let prog: &mut SchedClassifier =
            self.ebpf().program_mut(name).expect("loaded").try_into()?;
        let link = prog.take_link(id)?;
        let fd: FdLink = link.try_into().context("a TCX link")?;
        fd.pin(&path)
            .with_context(|| format!("pinning {}", path.display()))?;
        Ok(())
    }

    fn pin_xdp_link(
        &mut self,
        name: &str,
        id: aya::programs::xdp::XdpLinkId,
        a: Attachment,
    ) -> Result<()> {
        if !self.persist {
            return Ok(());
        }
        let path = self.pin_dir.join(a.link_pin());
        let prog: &mut Xdp = self.ebpf().program_mut(name).expect("loaded").try_into()?;
        let link = prog.take_link(id)?;
        if !kernel::has(Feature::XdpLink) {
            // A netlink attachment: aya 0.16 detaches it when a conversion
            // to FdLink fails (0.14 let it go), so it is never converted.
            std::mem::forget(link);
            self.notes.push(
                "XDP attached by netlink (no XDP links before 5.9): it cannot be pinned, and stays until detach"
                    .to_string(),
            );
            return Ok(());
        }
        let fd = FdLink::try_from(link).context("an XDP link")?;
        fd.pin(&path)
            .with_context(|| format!("pinning {}", path.display()))?;
        Ok(())
    }

    /// The pinned link of `a` from an earlier guard, unpinned (this guard
    /// now holds it), if there is one.
    fn adopt_link(&mut self, a: Attachment) -> Option<FdLink> {
        let path = self.pin_dir.join(a.link_pin());
        if !path.exists() {
            return None;
        }
        match PinnedLink::from_pin(&path).map(|l| l.unpin()) {
            Ok(Ok(fd)) => Some(fd),
            _ => {
                // A pin that is not a live link (left by a crash mid-way).
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// The repair's outcome counts per hook (empty without --csum-repair).
    pub fn csum_counters(&self) -> Result<Vec<crate::stats::CsumHookStats>> {
        let Some(map) = self.ebpf.as_ref().and_then(|e| e.map(CSUM_COUNTERS_MAP)) else {
            return Ok(Vec::new());
        };
        crate::stats::csum_hook_stats(&aya::maps::PerCpuArray::try_from(map)?)
    }

    /// The GSO guard's outcome counts (empty without --gso-guard).
    pub fn gso_counters(&self) -> Result<[u64; GsoOutcome::COUNT]> {
        let Some(map) = self.ebpf.as_ref().and_then(|e| e.map(GSO_COUNTERS_MAP)) else {
            return Ok([0; GsoOutcome::COUNT]);
        };
        crate::stats::gso_stats(&aya::maps::PerCpuArray::try_from(map)?)
    }

    /// The guard's counters, per hook.
    pub fn counters(&self) -> Result<Vec<crate::stats::HookStats>> {
        let map = self
            .ebpf
            .as_ref()
            .and_then(|e| e.map(MSS_COUNTERS_MAP))
            .ok_or_else(|| anyhow!("the eBPF object has no map {MSS_COUNTERS_MAP}"))?;
        crate::stats::hook_stats(&aya::maps::PerCpuArray::try_from(map)?)
    }

    fn lock(&mut self) -> Result<()> {
        fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .with_context(|| format!("opening {}", self.lock_path.display()))?;
        // SAFETY: flock on a valid fd.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut state = String::new();
            let _ = f.read_to_string(&mut state);
            let pid = state
                .lines()
                .find_map(|l| l.strip_prefix("pid="))
                .unwrap_or("unknown");
            bail!(
                "{} is already guarded by another pktguard (pid {pid}): stop it first",
                self.iface
            );
        }
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "pid={}", std::process::id())?;
        self.lock = Some(f);
        Ok(())
    }

    fn write_state(&mut self) -> Result<()> {
        let hooks: Vec<_> = self.attached.iter().map(|a| a.name()).collect();
        let features = &self.features;
        let f = self.lock.as_mut().expect("locked in start");
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "pid={}", std::process::id())?;
        writeln!(f, "iface={}\nhooks={}", self.iface, hooks.join(","))?;
        if self.persist {
            writeln!(f, "persist=1")?;
        }
        if let Some(c) = features.clamp {
            writeln!(f, "mss_v4={}\nmss_v6={}", c.mss_v4, c.mss_v6)?;
        }
        if let Some(r) = &features.repair {
            writeln!(f, "repair={r}")?;
        }
        if let Some(g) = &features.gso {
            writeln!(
                f,
                "gso={} min_size={} max_segs={}",
                if g.action == guard_common::GsoAction::Drop as u8 {
                    "drop"
                } else {
                    "flag"
                },
                g.min_size,
                g.max_segs
            )?;
        }
        Ok(())
    }

    fn ebpf(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("loaded in start")
    }

    fn attach(&mut self, mode: AttachMode, direction: Direction) -> Result<()> {
        let ingress = matches!(direction, Direction::Ingress | Direction::Both);
        let egress = matches!(direction, Direction::Egress | Direction::Both);
        if ingress {
            match mode {
                AttachMode::Tc => self.attach_tc(TcAttachType::Ingress)?,
                AttachMode::Xdp => self.attach_xdp(XdpMode::Driver)?,
                AttachMode::XdpGeneric => self.attach_xdp(XdpMode::Skb)?,
                AttachMode::Auto => self.attach_auto()?,
            }
        }
        if egress {
            if mode != AttachMode::Tc && mode != AttachMode::Auto {
                self.notes
                    .push("XDP sees ingress only: egress is guarded at TC".to_string());
            }
            self.attach_tc(TcAttachType::Egress)?;
        }
        Ok(())
    }

    /// Native XDP on physical NICs (on veth and other virtual devices native
    /// XDP copies every frame and costs more than TC), TC elsewhere or when
    /// the driver refuses.
    fn attach_auto(&mut self) -> Result<()> {
        let (driver, bus) = sys::driver_info(&self.iface).unwrap_or_default();
        if bus.is_empty() {
            let what = if driver.is_empty() {
                "virtual".to_string()
            } else {
                driver
            };
            self.notes
                .push(format!("{what} device: TC costs less than XDP here"));
            return self.attach_tc(TcAttachType::Ingress);
        }
        if self.repair && !xdp_frags_supported() {
            self.notes
                .push("checksum repair at XDP needs Linux 5.18+: using TC".to_string());
            return self.attach_tc(TcAttachType::Ingress);
        }
        match self.attach_xdp(XdpMode::Driver) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.notes
                    .push(format!("native XDP refused ({e:#}): falling back to TC"));
                self.attach_tc(TcAttachType::Ingress)
            }
        }
    }

    fn attach_xdp(&mut self, mode: XdpMode) -> Result<()> {
        let iface = self.iface.clone();
        // The multi-buffer flavour where the kernel has it: it also takes
        // jumbo frames, and only it can repair checksums.
        let name = if xdp_frags_supported() {
            PROG_XDP_FRAGS
        } else if self.repair {
            bail!("checksum repair at XDP needs Linux 5.18+ (multi-buffer XDP): use --attach tc");
        } else {
            PROG_XDP
        };
        let prog: &mut Xdp = self
            .ebpf()
            .program_mut(name)
            .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading the XDP program (verifier)")?;
        }
        let attachment = if mode == XdpMode::Driver {
            Attachment::XdpNative
        } else {
            Attachment::XdpGeneric
        };
        let adopted = self.adopt_link(attachment);
        let prog: &mut Xdp = self.ebpf().program_mut(name).expect("loaded").try_into()?;
        // An adopted link keeps its mode: a mode change attaches anew.
        let updated = match adopted.map(aya::programs::xdp::XdpLink::try_from) {
            Some(Ok(link)) => prog.attach_to_link(link).ok(),
            _ => None,
        };
        let id = match updated {
            Some(id) => id,
            None => prog.attach(&ifname(&iface)?, mode).map_err(|e| {
                let hint = if mode == XdpMode::Driver {
                    xdp_refusal_hint(&iface)
                } else {
                    String::new()
                };
                anyhow!(e).context(format!("attaching XDP to {iface}{hint}"))
            })?,
        };
        self.pin_xdp_link(name, id, attachment)?;
        self.attached.push(attachment);
        Ok(())
    }

    /// The GSO guard runs at TC ingress whatever `--attach` says: GSO
    /// metadata exists on skbs only. The typed program (gso_type checked)
    /// where the kernel allows it, else the untyped one, with a note.
    fn attach_gso(&mut self) -> Result<()> {
        let iface = self.iface.clone();
        self.ensure_clsact()?;
        // Without the helper (reported once at start) the untyped one,
        // without a note per interface.
        let typed = match gso_layout() {
            _ if !kernel::has(Feature::GsoType) => Err(None),
            Err(e) => Err(Some(e)),
            Ok(_) => {
                let prog: &mut SchedClassifier = self
                    .ebpf()
                    .program_mut(PROG_TC_GSO_TYPED)
                    .ok_or_else(|| anyhow!("the eBPF object has no program {PROG_TC_GSO_TYPED}"))?
                    .try_into()?;
                if prog.fd().is_ok() {
                    Ok(())
                } else {
                    prog.load().map_err(|e| {
                        Some(anyhow!(e).context("bpf_probe_read_kernel refused at TC"))
                    })
                }
            }
        };
        let name = match typed {
            Ok(()) => PROG_TC_GSO_TYPED,
            Err(None) => PROG_TC_GSO,
            Err(Some(e)) => {
                self.notes.push(format!(
                    "gso guard: gso_type is not checked (TCPv4 GSO on IPv6 or UDP passes): {e:#}"
                ));
                PROG_TC_GSO
            }
        };
        let prog: &mut SchedClassifier = self
            .ebpf()
            .program_mut(name)
            .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading the GSO guard (verifier)")?;
        }
        self.tc_link(name, TcAttachType::Ingress, Attachment::TcGso)
            .with_context(|| format!("the GSO guard on {iface}"))
    }

    /// TCX (6.6+) needs no qdisc; the netlink fallback needs clsact.
    fn ensure_clsact(&mut self) -> Result<()> {
        // Always asked: a re-created device has none.
        self.added_clsact |= ensure_clsact(&self.iface)?;
        Ok(())
    }

    fn attach_tc(&mut self, at: TcAttachType) -> Result<()> {
        self.ensure_clsact()?;
        let (name, attachment) = match at {
            TcAttachType::Egress => (PROG_TC_EGRESS, Attachment::TcEgress),
            _ => (PROG_TC_INGRESS, Attachment::TcIngress),
        };
        let prog: &mut SchedClassifier = self
            .ebpf()
            .program_mut(name)
            .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading the TC program (verifier)")?;
        }
        self.tc_link(name, at, attachment)
    }

    /// Attaches TC program `name` (loaded), replacing an adopted link's
    /// program atomically where there is one, and pins the link (persist).
    fn tc_link(&mut self, name: &str, at: TcAttachType, attachment: Attachment) -> Result<()> {
        if !tcx_supported() {
            return self.netlink_filter(name, at, attachment);
        }
        let iface = self.iface.clone();
        let adopted = self.adopt_link(attachment);
        let prog: &mut SchedClassifier = self
            .ebpf()
            .program_mut(name)
            .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
            .try_into()?;
        // A link whose device is gone ("severed") cannot be updated: attach anew.
        let updated = match adopted.map(aya::programs::tc::SchedClassifierLink::try_from) {
            Some(Ok(link)) => prog.attach_to_link(link).ok(),
            _ => None,
        };
        let id = match updated {
            Some(id) => id,
            None => prog
                .attach(&ifname(&iface)?, at)
                .with_context(|| format!("attaching {} to {iface}", attachment.name()))?,
        };
        self.pin_tc_link(name, id, attachment)?;
        self.attached.push(attachment);
        Ok(())
    }

    /// Before TCX (6.6): a cls_bpf filter in pktguard's own slot (priority
    /// and handle) of the clsact qdisc. A filter an earlier guard left there
    /// (`--persist`, or a killed daemon: netlink filters outlive their
    /// process) gets this program in place, atomically, as TCX links do;
    /// with `--persist` this one is left attached on exit the same way.
    fn netlink_filter(&mut self, name: &str, at: TcAttachType, a: Attachment) -> Result<()> {
        let iface = self.iface.clone();
        let persist = self.persist;
        let (priority, handle) = netlink_slot(a);
        let prog: &mut SchedClassifier = self
            .ebpf()
            .program_mut(name)
            .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
            .try_into()?;
        let earlier =
            tc::SchedClassifierLink::attached(&ifname(&iface)?, at.into(), priority, handle, None)
                .with_context(|| format!("no interface {iface}"))?;
        let (id, replaced) = match prog.attach_to_link(earlier) {
            Ok(id) => (id, true),
            Err(_) => {
                let options = tc::TcAttach::Netlink {
                    parent: at.into(),
                    options: tc::NlOptions {
                        priority,
                        handle,
                        ..Default::default()
                    },
                };
                let id = prog
                    .attach(&ifname(&iface)?, options)
                    .with_context(|| format!("attaching {} to {iface}", a.name()))?;
                (id, false)
            }
        };
        if persist {
            // Not detached when this process exits: the next guard replaces
            // it, `pktguard detach` removes it.
            std::mem::forget(prog.take_link(id)?);
        }
        if replaced {
            self.notes.push(format!(
                "{}: replaced the filter an earlier pktguard left (priority {priority:#x})",
                a.name()
            ));
        }
        self.attached.push(a);
        Ok(())
    }
}

/// An interface name as aya takes it (a C string).
pub fn ifname(iface: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(iface).map_err(|_| anyhow!("interface name {iface:?} has a NUL byte"))
}

/// pktguard's filter slot (priority, handle) on clsact for attachment `a`
/// (kernels without TCX). The GSO guard comes first at ingress: it drops
/// what the clamp need not look at.
pub fn netlink_slot(a: Attachment) -> (u16, tc::TcHandle) {
    let priority = match a {
        Attachment::TcGso => 0x4701,
        _ => 0x4702,
    };
    (priority, tc::TcHandle::new(0, 0x7067))
}

/// Removes the filters pktguard left on `iface` (kernels without TCX:
/// a `--persist` guard or a killed one); how many there were.
pub fn detach_netlink_filters(iface: &str) -> usize {
    if tcx_supported() {
        return 0;
    }
    let mut n = 0;
    for (a, at) in [
        (Attachment::TcIngress, TcAttachType::Ingress),
        (Attachment::TcGso, TcAttachType::Ingress),
        (Attachment::TcEgress, TcAttachType::Egress),
    ] {
        let (priority, handle) = netlink_slot(a);
        let Ok(name) = ifname(iface) else {
            return n;
        };
        if let Ok(link) =
            tc::SchedClassifierLink::attached(&name, at.into(), priority, handle, None)
            && aya::programs::links::Link::detach(link).is_ok()
        {
            n += 1;
        }
    }
    n
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Without the lock nothing here is ours: another guard owns the pins.
        if self.lock.is_none() {
            return;
        }
        // Dropping the object closes the program and link fds: XDP and TCX
        // links go with them, netlink filters are removed by aya. Pinned
        // links (persist) stay attached, with their maps.
        drop(self.ebpf.take());
        if self.persist {
            // The state file stays for `stats`; the lock goes with the fd.
            drop(self.lock.take());
            return;
        }
        if self.added_clsact {
            let _ = std::process::Command::new("tc")
                .args(["qdisc", "del", "dev", &self.iface, "clsact"])
                .status();
        }
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_file(abi_path(&self.lock_path));
        // Unlink while still holding the lock, then release it.
        let _ = fs::remove_file(&self.lock_path);
        drop(self.lock.take());
    }
}

/// Loads the object for an interface of the given kind (not yet verified:
/// each program is loaded into the kernel when it is attached).
pub fn load(link_kind: LinkKind, features: u8) -> Result<Ebpf> {
    load_pinned(link_kind, features, Path::new(""), &[])
}

/// [`load`], with maps `pins` (map, pin name) reused from `dir` where
/// pinned there, created and pinned there otherwise.
pub fn load_pinned(
    link_kind: LinkKind,
    features: u8,
    dir: &Path,
    pins: &[(&'static str, &'static str)],
) -> Result<Ebpf> {
    // Without the kernel's BTF the typed GSO program cannot be placed: the
    // untyped one runs (attach_gso says so).
    let layout = gso_layout().unwrap_or_default();
    let mut loader = EbpfLoader::new();
    for (map, pin) in pins {
        loader.map_pin_path(map, dir.join(pin));
    }
    loader
        .override_global(LINK_KIND_GLOBAL, &(link_kind as u8), true)
        .override_global(FEATURES_GLOBAL, &features, true)
        .override_global(HAS_GSO_SIZE_GLOBAL, &(gso_size_supported() as u8), true)
        .override_global(GSO_LAYOUT_GLOBAL, &layout, true)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")
}

/// Where `skb_shinfo(skb)->gso_type` is in the running kernel, and its
/// SKB_GSO_* bits, from the kernel's BTF: read once per process (every
/// guard's load and GSO attach asked for it, a parse of several MB each).
pub fn gso_layout() -> Result<GsoLayout> {
    static LAYOUT: std::sync::OnceLock<std::result::Result<GsoLayout, String>> =
        std::sync::OnceLock::new();
    LAYOUT
        .get_or_init(|| read_gso_layout().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn read_gso_layout() -> Result<GsoLayout> {
    let btf = Btf::from_kernel()?;
    let head = btf.member("sk_buff", "head")?;
    let end = btf.member("sk_buff", "end")?;
    ensure!(
        head.size == 8 && end.size == 4,
        "sk_buff.end is not an offset from head (a 32-bit kernel?)"
    );
    let bit = |name: &str| -> Result<u32> {
        let v = btf
            .enumerator(name)
            .ok_or_else(|| anyhow!("{name} not in the kernel's BTF"))?;
        u32::try_from(v).with_context(|| format!("{name} = {v}"))
    };
    // Bits a kernel may lack (UDP_L4 is 4.18+, UDP was removed in 4.15) count as 0.
    let maybe = |name: &str| bit(name).unwrap_or(0);
    let tunnel = [
        "SKB_GSO_GRE",
        "SKB_GSO_GRE_CSUM",
        "SKB_GSO_IPXIP4",
        "SKB_GSO_IPXIP6",
        "SKB_GSO_UDP_TUNNEL",
        "SKB_GSO_UDP_TUNNEL_CSUM",
        "SKB_GSO_ESP",
        "SKB_GSO_TUNNEL_REMCSUM",
    ]
    .iter()
    .fold(0, |m, n| m | maybe(n));
    Ok(GsoLayout {
        skb_head: head.offset,
        skb_end: end.offset,
        shinfo_gso_type: btf.member("skb_shared_info", "gso_type")?.offset,
        tcpv4: bit("SKB_GSO_TCPV4")?,
        tcpv6: bit("SKB_GSO_TCPV6")?,
        udp: maybe("SKB_GSO_UDP") | maybe("SKB_GSO_UDP_L4"),
        tunnel,
        _pad: 0,
    })
}

fn link_kind(iface: &str) -> Result<LinkKind> {
    const ARPHRD_ETHER: u16 = 1;
    const ARPHRD_TUNNEL: u16 = 768;
    const ARPHRD_TUNNEL6: u16 = 769;
    const ARPHRD_NONE: u16 = 0xfffe;
    match sys::hw_type(iface)? {
        ARPHRD_ETHER => Ok(LinkKind::Ethernet),
        ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_NONE => Ok(LinkKind::RawIp),
        other => bail!(
            "{iface} has link type {other} (see /usr/include/linux/if_arp.h): pktguard guards Ethernet and raw-IP (tun, ipip, wireguard) devices"
        ),
    }
}

/// Adds the clsact qdisc netlink TC attachments need (kernels without
/// TCX, before 6.6); true if this call added it.
pub fn ensure_clsact(iface: &str) -> Result<bool> {
    if tcx_supported() {
        return Ok(false);
    }
    match tc::qdisc_add_clsact(&ifname(iface)?) {
        Ok(()) => Ok(true),
        Err(e) if is_exists(&e) => Ok(false),
        Err(e) => Err(anyhow!(e)).context(format!("adding a clsact qdisc to {iface}")),
    }
}

fn tcx_supported() -> bool {
    kernel::has(Feature::Tcx)
}

fn is_exists(e: &tc::TcError) -> bool {
    match e {
        tc::TcError::AlreadyAttached => true,
        tc::TcError::NetlinkError(n) => n.raw_os_error() == Some(libc::EEXIST),
        _ => false,
    }
}

/// Why a driver may refuse native XDP, in words an operator can act on.
fn xdp_refusal_hint(iface: &str) -> String {
    match sys::driver_info(iface) {
        Ok((driver, _)) if driver == "virtio_net" => format!(
            " (virtio_net refuses XDP while the host offloads GRO/checksums: try `ethtool -K {iface} gro off` or --attach tc)"
        ),
        Ok((driver, _)) => format!(" (driver {driver}; try --attach tc or --attach xdp-generic)"),
        Err(_) => " (try --attach tc or --attach xdp-generic)".to_string(),
    }
}
