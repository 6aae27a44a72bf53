//! Network namespaces for the lab and the tests: created with iproute2,
//! deleted on drop (which also deletes the links inside them).

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result, bail};

use crate::host::sys;

/// Runs a command; its stderr becomes the error.
pub fn cmd(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {} (is it installed? `cargo xtask setup`)", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A unique tag for namespace names: this process and a counter.
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Netns> {
        cmd(&["ip", "netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        cmd(&all)
    }

    /// A command inside the namespace. `nsenter --net` keeps the mount
    /// namespace, so bpffs pins stay visible (`ip netns exec` remounts /sys).
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let net = format!("--net={}", self.path().display());
        let mut all = vec!["nsenter", &net, "--"];
        all.extend_from_slice(args);
        cmd(&all)
    }

    /// The MAC address of `dev`, as `ip` prints it (`aa:bb:cc:dd:ee:ff`).
    pub fn mac_text(&self, dev: &str) -> Result<String> {
        let link = self.ip(&["-br", "link", "show", "dev", dev])?;
        link.split_whitespace()
            .nth(2)
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no MAC for {dev}: {link}"))
    }

    /// The MAC address of `dev`.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6]> {
        let text = self.mac_text(dev)?;
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for b in &mut mac {
            let part = parts
                .next()
                .ok_or_else(|| anyhow::anyhow!("bad MAC {text}"))?;
            *b = u8::from_str_radix(part, 16)?;
        }
        Ok(mac)
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it
    /// opens, and interfaces it names, belong to the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                sys::enter_netns(&path)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| bail!("a thread in namespace {} panicked", self.name))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair between two namespaces, with addresses and MTUs.
pub struct VethEnd<'a> {
    pub ns: &'a Netns,
    pub name: &'a str,
    pub addrs: &'a [&'a str],
    pub mtu: u32,
}

impl<'a> VethEnd<'a> {
    pub fn new(ns: &'a Netns, name: &'a str, addrs: &'a [&'a str], mtu: u32) -> VethEnd<'a> {
        VethEnd {
            ns,
            name,
            addrs,
            mtu,
        }
    }
}

pub fn veth(a: &VethEnd<'_>, b: &VethEnd<'_>) -> Result<()> {
    cmd(&[
        "ip", "link", "add", a.name, "netns", &a.ns.name, "type", "veth", "peer", "name", b.name,
        "netns", &b.ns.name,
    ])?;
    for end in [a, b] {
        let mtu = end.mtu.to_string();
        // No duplicate address detection on the link-local address either
        // (the others are added `nodad`): while it runs, the first IPv6
        // connection of a fresh lab times out.
        end.ns
            .sysctl(&format!("net.ipv6.conf.{}.accept_dad", end.name), "0")?;
        end.ns.ip(&["link", "set", end.name, "mtu", &mtu, "up"])?;
        for addr in end.addrs {
            if addr.contains(':') {
                end.ns
                    .ip(&["-6", "addr", "add", addr, "dev", end.name, "nodad"])?;
            } else {
                end.ns.ip(&["addr", "add", addr, "dev", end.name])?;
            }
        }
    }
    Ok(())
}
