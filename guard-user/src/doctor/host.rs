//! What the doctor reads, behind one trait: the live host, or a fixture
//! tree (tests, or a host's files captured elsewhere, like an sosreport).
//! Files are read by their absolute paths (`/proc/net/rt6_stats`), which a
//! fixture maps under its root. procfs is read, never sysfs: /proc/net and
//! /proc/sys/net follow the reader's network namespace, sysfs the one that
//! mounted it.

use std::{
    fs, io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::host::{
    ethtool::{self, Feature},
    rtnl::{self, Link},
};

pub trait Host {
    /// A file, by its absolute path on the host.
    fn read(&self, path: &str) -> io::Result<String>;
    /// The names in a directory.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// The interfaces of the (current) network namespace.
    fn links(&self) -> Result<Vec<Link>>;
    /// An interface's offload features.
    fn features(&self, iface: &str) -> Result<Vec<Feature>>;
    /// Turns a feature on or off (`--fix`).
    fn set_feature(&self, iface: &str, name: &str, on: bool) -> Result<()>;
    /// A tool's standard output; `Ok(None)` when the tool is not installed.
    fn command(&self, args: &[&str]) -> Result<Option<String>>;
    /// Whether the pktguard holding lock file `path` still runs.
    fn lock_held(&self, path: &str) -> bool;
    /// The suffix of this network namespace's guard keys (`@<inode>`, or
    /// empty in the initial namespace): see [`crate::host::sys::iface_key`].
    fn key_suffix(&self) -> String {
        String::new()
    }
    /// One line of counters per guarded interface of this namespace.
    fn guard_counters(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The machine this runs on.
pub struct Live;

impl Host for Live {
    fn read(&self, path: &str) -> io::Result<String> {
        // /proc/net is /proc/self/net: the main thread's namespace. This
        // thread's may differ (the tests enter namespaces per thread).
        match path.strip_prefix("/proc/net/") {
            Some(rest) => fs::read_to_string(format!("/proc/thread-self/net/{rest}")),
            None => fs::read_to_string(path),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        Ok(v)
    }

    fn links(&self) -> Result<Vec<Link>> {
        rtnl::links()
    }

    fn features(&self, iface: &str) -> Result<Vec<Feature>> {
        ethtool::features(iface)
    }

    fn set_feature(&self, iface: &str, name: &str, on: bool) -> Result<()> {
        ethtool::set_feature(iface, name, on)
    }

    fn command(&self, args: &[&str]) -> Result<Option<String>> {
        let out = match Command::new(args[0]).args(&args[1..]).output() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other.with_context(|| format!("running {}", args[0]))?,
        };
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    fn lock_held(&self, path: &str) -> bool {
        let Ok(f) = fs::File::open(path) else {
            return false;
        };
        // SAFETY: flock on a valid fd; a shared lock is refused only while
        // the owner holds its exclusive one.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }

    fn key_suffix(&self) -> String {
        crate::host::sys::iface_key("").unwrap_or_default()
    }

    fn guard_counters(&self) -> Vec<String> {
        use guard_common::MssCounter;
        crate::guard::counters::collect(None)
            .unwrap_or_default()
            .iter()
            .map(|i| {
                let sum = |c| i.hooks.iter().map(|h| h.get(c)).sum::<u64>();
                let mut line = format!(
                    "{} counters: seen {}, SYNs {}, clamped {}",
                    i.iface,
                    sum(MssCounter::Seen),
                    sum(MssCounter::Syn),
                    sum(MssCounter::Clamped)
                );
                if !i.csum.is_empty() {
                    let fixed: u64 = i
                        .csum
                        .iter()
                        .map(|h| h.get(guard_common::RepairOutcome::OuterRepaired))
                        .sum();
                    line.push_str(&format!(", outer checksums repaired {fixed}"));
                }
                if let Some((g, _)) = &i.gso {
                    let bad: u64 = guard_common::GsoOutcome::ALL
                        .iter()
                        .filter(|o| o.is_malformed())
                        .map(|o| g[*o as usize])
                        .sum();
                    line.push_str(&format!(", malformed GSO {bad}"));
                }
                line
            })
            .collect()
    }
}

/// A fixture tree: files under `root`, plus
/// - `links`: one interface per line, `IFINDEX NAME KIND MTU [LOWER]`
///   (KIND `-` for a physical NIC);
/// - `ethtool/IFACE`: one feature per line, `NAME on|off [fixed]`;
/// - `commands/ARGS`: a tool's output, ARGS joined with `_`
///   (`commands/iptables-legacy-save`); a missing file: not installed.
///
/// Every pktguard state file under `/run/pktguard` counts as running.
pub struct Fixture {
    pub root: PathBuf,
}

impl Fixture {
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

impl Host for Fixture {
    fn read(&self, path: &str) -> io::Result<String> {
        fs::read_to_string(self.path(path))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Live.list(&self.path(dir).to_string_lossy())
    }

    fn links(&self) -> Result<Vec<Link>> {
        let text = self.read("/links").context("fixture: reading links")?;
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                if w.len() < 4 {
                    bail!("fixture links: bad line {l:?}");
                }
                Ok(Link {
                    ifindex: w[0].parse()?,
                    name: w[1].to_string(),
                    kind: if w[2] == "-" {
                        String::new()
                    } else {
                        w[2].into()
                    },
                    mtu: w[3].parse()?,
                    lower: w.get(4).map(|s| s.parse()).transpose()?,
                })
            })
            .collect()
    }

    fn features(&self, iface: &str) -> Result<Vec<Feature>> {
        let text = self
            .read(&format!("/ethtool/{iface}"))
            .map_err(|e| anyhow!("fixture: no features for {iface}: {e}"))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                Some(Feature {
                    name: w.first()?.to_string(),
                    active: *w.get(1)? == "on",
                    changeable: w.get(2) != Some(&"fixed"),
                })
            })
            .collect())
    }

    fn set_feature(&self, iface: &str, name: &str, on: bool) -> Result<()> {
        let mut f = self.features(iface)?;
        let feat = f
            .iter_mut()
            .find(|x| x.name == name)
            .ok_or_else(|| anyhow!("{iface} has no offload feature {name}"))?;
        if !feat.changeable {
            bail!("{iface}: {name} is fixed");
        }
        feat.active = on;
        let text: String = f
            .iter()
            .map(|x| {
                format!(
                    "{} {}{}\n",
                    x.name,
                    if x.active { "on" } else { "off" },
                    if x.changeable { "" } else { " fixed" }
                )
            })
            .collect();
        fs::write(self.path(&format!("/ethtool/{iface}")), text)?;
        Ok(())
    }

    fn command(&self, args: &[&str]) -> Result<Option<String>> {
        match fs::read_to_string(self.path(&format!("/commands/{}", args.join("_")))) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn lock_held(&self, path: &str) -> bool {
        Path::new(&self.path(path)).exists()
    }
}

/// Files from a fixture tree where it has them, everything else live: the
/// live namespace seen through, say, another kernel version.
pub struct Overlay {
    pub files: Fixture,
}

impl Host for Overlay {
    fn read(&self, path: &str) -> io::Result<String> {
        match self.files.read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Live.read(path),
            other => other,
        }
    }
    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Live.list(dir)
    }
    fn links(&self) -> Result<Vec<Link>> {
        Live.links()
    }
    fn features(&self, iface: &str) -> Result<Vec<Feature>> {
        Live.features(iface)
    }
    fn set_feature(&self, iface: &str, name: &str, on: bool) -> Result<()> {
        Live.set_feature(iface, name, on)
    }
    fn command(&self, args: &[&str]) -> Result<Option<String>> {
        match self.files.command(args)? {
            Some(s) => Ok(Some(s)),
            None => Live.command(args),
        }
    }
    fn lock_held(&self, path: &str) -> bool {
        Live.lock_held(path)
    }
    fn key_suffix(&self) -> String {
        Live.key_suffix()
    }
    fn guard_counters(&self) -> Vec<String> {
        Live.guard_counters()
    }
}
