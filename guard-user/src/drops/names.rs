//! How a drop key becomes words: reasons from the kernel's BTF, locations
//! from /proc/kallsyms, interfaces from (ifindex, netns), protocols by number.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use guard_common::DropKey;

use super::monitor::DropMonitor;
use crate::host::{btf::Btf, sys};

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
}
