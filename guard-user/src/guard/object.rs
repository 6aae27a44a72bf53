//! The guard's eBPF object: what a guard does on its interface, the load
//! with its load-time constants and map pins, and every map's configuration.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::{Program, ProgramError, SchedClassifier, Xdp},
};
use guard_common::{
    CSUM_CONFIG_MAP, FEATURE_CSUM, FEATURE_MSS, GSO_CONFIG_MAP, GsoConfig, LT_FEATURES,
    LT_GSO_LAYOUT, LT_HAS_GSO_SIZE, LT_LINK_KIND, LinkKind, MSS_CONFIG_MAP, MssConfig,
    PEERS_V4_MAP, PEERS_V6_MAP,
};

use crate::{
    config::{clamp::Clamp, repair::RepairSpec},
    host::kernel::{self, Feature},
    objects,
};

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

    /// Whether there is anything to attach.
    pub fn is_empty(&self) -> bool {
        self.clamp.is_none() && self.repair.is_none() && self.gso.is_none()
    }
}

/// `__sk_buff.gso_size` arrived in Linux 5.7.
pub fn gso_size_supported() -> bool {
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

/// Writes every map's configuration for `features` (at start, and for a
/// reload that changes only values).
pub(crate) fn configure(ebpf: &mut Ebpf, features: &Features) -> Result<()> {
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
    let layout = super::gso::gso_layout().unwrap_or_default();
    let mut loader = EbpfLoader::new();
    for (map, pin) in pins {
        loader.map_pin_path(map, dir.join(pin));
    }
    let mut constants = vec![
        (LT_LINK_KIND, link_kind as u64),
        (LT_FEATURES, features as u64),
        (LT_HAS_GSO_SIZE, gso_size_supported() as u64),
    ];
    constants.extend(objects::record(LT_GSO_LAYOUT, &layout));
    let object = objects::with_constants(objects::GUARD, &constants)?;
    objects::load(&mut loader, object).context("loading the guard's eBPF object")
}

/// A program type the guard loads lazily, when it first attaches it.
pub(crate) trait Lazy {
    /// Loads the program into the kernel (verifies it) unless it is loaded.
    fn load_once(&mut self) -> Result<(), ProgramError>;
}

macro_rules! lazy {
    ($($t:ty),*) => {$(
        impl Lazy for $t {
            fn load_once(&mut self) -> Result<(), ProgramError> {
                if self.fd().is_ok() { Ok(()) } else { self.load() }
            }
        }
    )*};
}
lazy!(Xdp, SchedClassifier);

/// Program `name` of the object, as its type.
pub(crate) fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))?
        .try_into()?)
}

/// Program `name`, loaded into the kernel (verified) if it was not yet;
/// `what` says what was loading when the verifier refuses.
pub(crate) fn loaded<'a, P: Lazy>(ebpf: &'a mut Ebpf, name: &str, what: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog = program::<P>(ebpf, name)?;
    prog.load_once().with_context(|| what.to_string())?;
    Ok(prog)
}
