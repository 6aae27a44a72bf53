//! One interface, resolved once from its name: index, link kind, driver and
//! the key its pins and state file go by. Commands resolve it and pass it on.

use anyhow::{Result, anyhow, bail};
use guard_common::LinkKind;

use super::sys;

/// The driver behind an interface, as `ethtool -i` tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    /// The bus address: empty for virtual devices.
    pub bus: String,
}

/// An interface of the calling thread's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub link_kind: LinkKind,
    /// None when the driver did not answer.
    pub driver: Option<Driver>,
    /// The name pins and the state file use ([`sys::iface_key`]).
    pub key: String,
}

impl Iface {
    /// Resolves `name`, or says that it does not exist here or is of a
    /// kind pktguard does not guard.
    pub fn resolve(name: &str) -> Result<Iface> {
        let ifindex = sys::ifindex(name)?;
        let link_kind = link_kind(name)?;
        let key = sys::iface_key(name)?;
        Ok(Iface {
            name: name.to_string(),
            ifindex,
            link_kind,
            driver: driver(name),
            key,
        })
    }

    /// Reads the index and driver again: a device re-created under the
    /// same name has a new index (and may have a new driver).
    pub fn refresh(&mut self) -> Result<()> {
        self.ifindex = sys::ifindex(&self.name)?;
        self.driver = driver(&self.name);
        Ok(())
    }

    /// The name as aya takes it (a C string).
    pub fn c_name(&self) -> Result<std::ffi::CString> {
        ifname(&self.name)
    }
}

impl std::fmt::Display for Iface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// An interface name as aya takes it (a C string).
pub fn ifname(iface: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(iface).map_err(|_| anyhow!("interface name {iface:?} has a NUL byte"))
}

fn driver(name: &str) -> Option<Driver> {
    sys::driver_info(name)
        .ok()
        .map(|(name, bus)| Driver { name, bus })
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
