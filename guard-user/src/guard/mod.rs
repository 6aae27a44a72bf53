//! A guarded interface: loads the guard's object, configures it, attaches
//! it, pins its maps for `pktguard stats`, and undoes all of that on drop.

pub mod counters;
mod gso;
pub mod object;
mod pins;
pub mod tc;
mod xdp;

use std::{fs, path::PathBuf};

use anyhow::{Result, bail};
use aya::{
    Ebpf,
    programs::{TcAttachType, XdpMode},
};

pub use self::{gso::gso_layout, object::Features};
use crate::{
    host::{Iface, sys},
    state::{self, GsoState, Lock, RunState},
};

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
    /// The interface; its index when attached: another one means the
    /// device was re-created.
    pub iface: Iface,
    pub attached: Vec<Attachment>,
    /// Why auto mode chose what it chose, for the log.
    pub notes: Vec<String>,
    ebpf: Option<Ebpf>,
    pin_dir: PathBuf,
    lock_path: PathBuf,
    lock: Option<Lock>,
    added_clsact: bool,
    /// Leave programs attached and pinned on exit (`--persist`).
    persist: bool,
    /// What was asked, for a re-attach when the interface comes back.
    mode: AttachMode,
    direction: Direction,
    pub features: Features,
}

impl Guard {
    /// Guards the interface named `iface` until dropped; see [`Guard::start_with`].
    pub fn start(
        iface: &str,
        mode: AttachMode,
        direction: Direction,
        features: &Features,
    ) -> Result<Guard> {
        Guard::start_with(Iface::resolve(iface)?, mode, direction, features, false)
    }

    /// Loads, configures and attaches. Links and maps pinned by an earlier
    /// guard of `iface` are adopted: its maps are reused (counters go on)
    /// and its links get the new programs atomically (BPF_LINK_UPDATE), so
    /// no packet passes unguarded. With `persist`, links stay pinned and
    /// attached when the guard is dropped (`pktguard detach` removes them).
    pub fn start_with(
        iface: Iface,
        mode: AttachMode,
        direction: Direction,
        features: &Features,
        persist: bool,
    ) -> Result<Guard> {
        if features.is_empty() {
            bail!(
                "{}: {}",
                iface.name,
                crate::config::validate::nothing_to_do(crate::config::validate::Door::Flags)
            );
        }
        if features.gso.is_some() && !object::gso_size_supported() {
            let (major, minor) = sys::kernel_version()?;
            bail!(
                "--gso-guard reads __sk_buff.gso_size, which Linux {major}.{minor} lacks (it exists since 5.7)"
            );
        }
        // The repair runs at ingress only: egress needs a program only to clamp.
        let direction = match (direction, features.clamp) {
            (Direction::Both, None) => Direction::Ingress,
            (d, _) => d,
        };
        let mut guard = Guard {
            attached: Vec::new(),
            notes: Vec::new(),
            ebpf: None,
            pin_dir: state::pin_dir(&iface.key),
            lock_path: state::lock_path(&iface.key),
            lock: None,
            added_clsact: false,
            persist,
            mode,
            direction,
            features: features.clone(),
            iface,
        };
        // From here on, an error drops `guard`, which undoes what was done.
        guard.lock = Some(Lock::acquire(&guard.lock_path, &guard.iface.name)?);
        sys::ensure_bpffs(guard_common::BPFFS_ROOT)?;
        guard.prepare_pin_dir()?;
        let mut ebpf = object::load_pinned(
            guard.iface.link_kind,
            features.mask(),
            &guard.pin_dir,
            &pins::map_pins(features),
        )?;
        object::configure(&mut ebpf, features)?;
        guard.write_abi()?;
        guard.ebpf = Some(ebpf);
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
        self.iface.refresh()?;
        self.attached.clear();
        self.added_clsact = false;
        self.unpin_links();
        self.attach_all()?;
        self.write_state()
    }

    /// Applies new parameters through the maps, without reloading programs:
    /// `features` must enable the same features (see
    /// [`crate::config::IfaceConfig::same_programs`]).
    pub fn update(&mut self, features: &Features) -> Result<()> {
        object::configure(self.ebpf(), features)?;
        self.features = features.clone();
        self.write_state()
    }

    /// What `pktguard stats` and `doctor` read about this guard.
    fn run_state(&self) -> RunState {
        RunState {
            pid: Some(std::process::id()),
            iface: self.iface.name.clone(),
            hooks: self.attached.iter().map(|a| a.name().to_string()).collect(),
            persist: self.persist,
            mss: self.features.clamp.map(|c| (c.mss_v4, c.mss_v6)),
            repair: self.features.repair.as_ref().map(ToString::to_string),
            gso: self.features.gso.map(|g| GsoState {
                action: crate::config::GsoGuardAction::of(&g).name().to_string(),
                min_size: g.min_size,
                max_segs: g.max_segs,
            }),
        }
    }

    fn write_state(&mut self) -> Result<()> {
        let st = self.run_state();
        self.lock.as_mut().expect("locked in start").write(&st)
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
                .args(["qdisc", "del", "dev", &self.iface.name, "clsact"])
                .status();
        }
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_file(state::abi_path(&self.lock_path));
        // Unlink while still holding the lock, then release it.
        let _ = fs::remove_file(&self.lock_path);
        drop(self.lock.take());
    }
}
