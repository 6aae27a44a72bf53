//! Loads the guard for one interface, configures it, attaches it, pins its
//! maps for `pktguard stats`, and undoes all of that when dropped.

use std::{
    fs,
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::PathBuf,
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, tc},
};
use guard_common::{
    CSUM_CONFIG_MAP, CSUM_COUNTERS_MAP, FEATURE_CSUM, FEATURE_MSS, FEATURES_GLOBAL, GSO_CONFIG_MAP,
    GSO_COUNTERS_MAP, GSO_LAYOUT_GLOBAL, GsoConfig, GsoLayout, GsoOutcome, HAS_GSO_SIZE_GLOBAL,
    LINK_KIND_GLOBAL, LinkKind, MSS_CONFIG_MAP, MSS_COUNTERS_MAP, MssConfig, PEERS_V4_MAP,
    PEERS_V6_MAP, PIN_CONFIG, PIN_COUNTERS, PIN_CSUM_COUNTERS, PIN_DIR, PIN_GSO_COUNTERS,
    PROG_TC_EGRESS, PROG_TC_GSO, PROG_TC_GSO_TYPED, PROG_TC_INGRESS, PROG_XDP, PROG_XDP_FRAGS,
    RUN_DIR,
};

use crate::{btf::Btf, clamp::Clamp, repair_cfg::RepairSpec, sys};

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
    sys::kernel_version().is_ok_and(|v| v >= (5, 7))
}

/// Multi-buffer XDP (and bpf_xdp_load_bytes) arrived in Linux 5.18.
fn xdp_frags_supported() -> bool {
    sys::kernel_version().is_ok_and(|v| v >= (5, 18))
}

/// Writes entry 0 of the configuration map `name` (MSS_CONFIG, CSUM_CONFIG,
/// GSO_CONFIG): running programs read it on their next packet.
pub fn set_config<T: aya::Pod>(ebpf: &mut Ebpf, name: &str, value: T) -> Result<()> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no map {name}"))?;
    Array::<_, T>::try_from(map)?
        .set(0, value, 0)
        .with_context(|| format!("writing {name}"))?;
    Ok(())
}

fn configure_repair(ebpf: &mut Ebpf, spec: &RepairSpec) -> Result<()> {
    set_config(ebpf, CSUM_CONFIG_MAP, spec.config())?;
    for cidr in &spec.peers {
        match cidr.addr {
            std::net::IpAddr::V4(a) => {
                let mut t: LpmTrie<_, [u8; 4], u8> =
                    LpmTrie::try_from(ebpf.map_mut(PEERS_V4_MAP).expect("PEERS_V4"))?;
                t.insert(&Key::new(cidr.prefix.into(), a.octets()), 1, 0)?;
            }
            std::net::IpAddr::V6(a) => {
                let mut t: LpmTrie<_, [u8; 16], u8> =
                    LpmTrie::try_from(ebpf.map_mut(PEERS_V6_MAP).expect("PEERS_V6"))?;
                t.insert(&Key::new(cidr.prefix.into(), a.octets()), 1, 0)?;
            }
        }
    }
    Ok(())
}

impl Guard {
    pub fn start(
        iface: &str,
        mode: AttachMode,
        direction: Direction,
        features: &Features,
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
        sys::ifindex(iface)?;
        let link_kind = link_kind(iface)?;
        let key = sys::iface_key(iface)?;
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
        };
        // From here on, an error drops `guard`, which undoes what was done.
        guard.lock()?;
        sys::ensure_bpffs(guard_common::BPFFS_ROOT)?;
        if guard.pin_dir.exists() {
            // Left by a guard that was killed: nobody holds the lock.
            fs::remove_dir_all(&guard.pin_dir)
                .with_context(|| format!("removing stale pins {}", guard.pin_dir.display()))?;
        }
        let mut ebpf = load(link_kind, features.mask())?;
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
        fs::create_dir_all(&guard.pin_dir)
            .with_context(|| format!("creating {}", guard.pin_dir.display()))?;
        let mut pins = vec![
            (MSS_COUNTERS_MAP, PIN_COUNTERS),
            (MSS_CONFIG_MAP, PIN_CONFIG),
        ];
        if features.repair.is_some() {
            pins.push((CSUM_COUNTERS_MAP, PIN_CSUM_COUNTERS));
        }
        if features.gso.is_some() {
            pins.push((GSO_COUNTERS_MAP, PIN_GSO_COUNTERS));
        }
        for (map, pin) in pins {
            ebpf.map(map)
                .ok_or_else(|| anyhow!("the eBPF object has no map {map}"))?
                .pin(guard.pin_dir.join(pin))
                .with_context(|| format!("pinning {map} under {}", guard.pin_dir.display()))?;
        }
        guard.ebpf = Some(ebpf);
        guard.repair = features.repair.is_some();
        // The repair runs at ingress only: egress needs a program only to clamp.
        let direction = match (direction, features.clamp) {
            (Direction::Both, None) => Direction::Ingress,
            (d, _) => d,
        };
        if features.clamp.is_some() || features.repair.is_some() {
            guard.attach(mode, direction)?;
        }
        if features.gso.is_some() {
            guard.attach_gso()?;
        }
        guard.write_state(features)?;
        Ok(guard)
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

    fn write_state(&mut self, features: &Features) -> Result<()> {
        let hooks: Vec<_> = self.attached.iter().map(|a| a.name()).collect();
        let f = self.lock.as_mut().expect("locked in start");
        writeln!(f, "iface={}\nhooks={}", self.iface, hooks.join(","))?;
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
        prog.load().context("loading the XDP program (verifier)")?;
        prog.attach(&iface, mode).map_err(|e| {
            let hint = if mode == XdpMode::Driver {
                xdp_refusal_hint(&iface)
            } else {
                String::new()
            };
            anyhow!(e).context(format!("attaching XDP to {iface}{hint}"))
        })?;
        self.attached.push(if mode == XdpMode::Driver {
            Attachment::XdpNative
        } else {
            Attachment::XdpGeneric
        });
        Ok(())
    }

    /// The GSO guard runs at TC ingress whatever `--attach` says: GSO
    /// metadata exists on skbs only. The typed program (gso_type checked)
    /// where the kernel allows it, else the untyped one, with a note.
    fn attach_gso(&mut self) -> Result<()> {
        let iface = self.iface.clone();
        self.ensure_clsact()?;
        let typed = match gso_layout() {
            Err(e) => Err(e),
            Ok(_) => {
                let prog: &mut SchedClassifier = self
                    .ebpf()
                    .program_mut(PROG_TC_GSO_TYPED)
                    .ok_or_else(|| anyhow!("the eBPF object has no program {PROG_TC_GSO_TYPED}"))?
                    .try_into()?;
                prog.load()
                    .map_err(|e| anyhow!(e).context("bpf_probe_read_kernel refused at TC"))
            }
        };
        let name = match typed {
            Ok(()) => PROG_TC_GSO_TYPED,
            Err(e) => {
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
        if name == PROG_TC_GSO {
            prog.load().context("loading the GSO guard (verifier)")?;
        }
        prog.attach(&iface, TcAttachType::Ingress)
            .with_context(|| format!("attaching the GSO guard to {iface}"))?;
        self.attached.push(Attachment::TcGso);
        Ok(())
    }

    /// TCX (6.6+) needs no qdisc; the netlink fallback needs clsact.
    fn ensure_clsact(&mut self) -> Result<()> {
        if !tcx_supported() && !self.added_clsact {
            match tc::qdisc_add_clsact(&self.iface) {
                Ok(()) => self.added_clsact = true,
                Err(e) if is_exists(&e) => {}
                Err(e) => {
                    return Err(anyhow!(e))
                        .context(format!("adding a clsact qdisc to {}", self.iface));
                }
            }
        }
        Ok(())
    }

    fn attach_tc(&mut self, at: TcAttachType) -> Result<()> {
        let iface = self.iface.clone();
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
        prog.load().context("loading the TC program (verifier)")?;
        prog.attach(&iface, at)
            .with_context(|| format!("attaching {} to {iface}", attachment.name()))?;
        self.attached.push(attachment);
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Without the lock nothing here is ours: another guard owns the pins.
        if self.lock.is_none() {
            return;
        }
        // Dropping the object closes the program and link fds: XDP and TCX
        // links go with them, netlink filters are removed by aya.
        drop(self.ebpf.take());
        if self.added_clsact {
            let _ = std::process::Command::new("tc")
                .args(["qdisc", "del", "dev", &self.iface, "clsact"])
                .status();
        }
        let _ = fs::remove_dir_all(&self.pin_dir);
        // Unlink while still holding the lock, then release it.
        let _ = fs::remove_file(&self.lock_path);
        drop(self.lock.take());
    }
}

/// Loads the object for an interface of the given kind (not yet verified:
/// each program is loaded into the kernel when it is attached).
pub fn load(link_kind: LinkKind, features: u8) -> Result<Ebpf> {
    // Without the kernel's BTF the typed GSO program cannot be placed: the
    // untyped one runs (attach_gso says so).
    let layout = gso_layout().unwrap_or_default();
    EbpfLoader::new()
        .override_global(LINK_KIND_GLOBAL, &(link_kind as u8), true)
        .override_global(FEATURES_GLOBAL, &features, true)
        .override_global(HAS_GSO_SIZE_GLOBAL, &(gso_size_supported() as u8), true)
        .override_global(GSO_LAYOUT_GLOBAL, &layout, true)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")
}

/// Where `skb_shinfo(skb)->gso_type` is in the running kernel, and its
/// SKB_GSO_* bits, from the kernel's BTF.
pub fn gso_layout() -> Result<GsoLayout> {
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

fn tcx_supported() -> bool {
    sys::kernel_version().is_ok_and(|v| v >= (6, 6))
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
