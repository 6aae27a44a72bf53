//! The run state of each guarded interface: its lock and state file in
//! /run/pktguard (one writer, one parser) and the walk over the pin
//! directories of this network namespace's guards.

use std::{
    fs,
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use guard_common::{PIN_DIR, RUN_DIR};

use crate::host::sys;

/// What `pktguard run` records for one interface, in `<key>.lock`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunState {
    pub pid: Option<u32>,
    pub iface: String,
    /// Attach points in use (`Attachment::name`).
    pub hooks: Vec<String>,
    /// Left attached and pinned on exit (`--persist`).
    pub persist: bool,
    /// The clamps (IPv4, IPv6), when the clamp is on.
    pub mss: Option<(u16, u16)>,
    /// The repair's description, when it is on.
    pub repair: Option<String>,
    pub gso: Option<GsoState>,
}

/// The GSO guard as recorded: `gso=<action> min_size=N max_segs=N`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GsoState {
    /// "drop" or "flag" ([`crate::config::GsoGuardAction::name`]).
    pub action: String,
    pub min_size: u32,
    pub max_segs: u32,
}

impl std::fmt::Display for GsoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} min_size={} max_segs={}",
            self.action, self.min_size, self.max_segs
        )
    }
}

impl RunState {
    /// The file's text: one `name=value` per line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(pid) = self.pid {
            s.push_str(&format!("pid={pid}\n"));
        }
        s.push_str(&format!(
            "iface={}\nhooks={}\n",
            self.iface,
            self.hooks.join(",")
        ));
        if self.persist {
            s.push_str("persist=1\n");
        }
        if let Some((v4, v6)) = self.mss {
            s.push_str(&format!("mss_v4={v4}\nmss_v6={v6}\n"));
        }
        if let Some(r) = &self.repair {
            s.push_str(&format!("repair={r}\n"));
        }
        if let Some(g) = &self.gso {
            s.push_str(&format!("gso={g}\n"));
        }
        s
    }

    /// Reads what [`RunState::render`] wrote; unknown or broken lines are
    /// skipped (a file of an older pktguard, or one cut short).
    pub fn parse(text: &str) -> RunState {
        let mut st = RunState::default();
        let (mut v4, mut v6) = (None, None);
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            match k {
                "pid" => st.pid = v.parse().ok(),
                "iface" => st.iface = v.to_string(),
                "hooks" => {
                    st.hooks = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                "persist" => st.persist = v == "1",
                "mss_v4" => v4 = v.parse().ok(),
                "mss_v6" => v6 = v.parse().ok(),
                "repair" => st.repair = Some(v.to_string()),
                "gso" => {
                    let mut words = v.split_whitespace();
                    let mut g = GsoState {
                        action: words.next().unwrap_or("?").to_string(),
                        ..GsoState::default()
                    };
                    for (k, n) in words.filter_map(|w| w.split_once('=')) {
                        match k {
                            "min_size" => g.min_size = n.parse().unwrap_or(0),
                            "max_segs" => g.max_segs = n.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    st.gso = Some(g);
                }
                _ => {}
            }
        }
        st.mss = v4.zip(v6);
        st
    }

    /// The state of the interface whose key is `key`, as its guard last
    /// wrote it (empty when there is none).
    pub fn read(key: &str) -> RunState {
        RunState::parse(&fs::read_to_string(lock_path(key)).unwrap_or_default())
    }
}

/// The lock and state file of the interface whose key is `key`.
pub fn lock_path(key: &str) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{key}.lock"))
}

/// The pin directory of the interface whose key is `key`.
pub fn pin_dir(key: &str) -> PathBuf {
    PathBuf::from(PIN_DIR).join(key)
}

/// bpffs holds only BPF objects: the maps' layout version is kept next to
/// the state file, as `<key>.abi`.
pub fn abi_path(lock_path: &Path) -> PathBuf {
    lock_path.with_extension("abi")
}

/// The interface a state file named `file` (`<key>.lock`) belongs to, if
/// it is one of this network namespace's (`suffix`: [`sys::iface_key`] of "").
pub fn iface_of_state_file(file: &str, suffix: &str) -> Option<String> {
    sys::iface_of_key(file.strip_suffix(".lock")?, suffix)
}

/// The lock of one interface, held while its guard runs.
pub struct Lock {
    file: fs::File,
}

impl Lock {
    /// Takes the lock at `path` for `iface`, or says which pktguard holds it.
    pub fn acquire(path: &Path, iface: &str) -> Result<Lock> {
        fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        if !try_flock(&f, libc::LOCK_EX) {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            let pid = RunState::parse(&text)
                .pid
                .map_or_else(|| "unknown".to_string(), |p| p.to_string());
            bail!("{iface} is already guarded by another pktguard (pid {pid}): stop it first");
        }
        let mut lock = Lock { file: f };
        lock.write(&RunState {
            pid: Some(std::process::id()),
            ..RunState::default()
        })?;
        Ok(lock)
    }

    /// Replaces the state file's content with `state` (just the pid when
    /// `state.iface` is empty: the lock is held, nothing attached yet).
    pub fn write(&mut self, state: &RunState) -> Result<()> {
        let text = if state.iface.is_empty() {
            state.pid.map(|p| format!("pid={p}\n")).unwrap_or_default()
        } else {
            state.render()
        };
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// Whether the lock file at `path` is free (no running pktguard holds it).
pub fn lock_is_free(path: &Path) -> bool {
    match fs::File::open(path) {
        Ok(f) => try_flock(&f, libc::LOCK_EX),
        Err(_) => true,
    }
}

/// flock(2) without waiting; true when taken.
fn try_flock(f: &fs::File, op: libc::c_int) -> bool {
    // SAFETY: flock on a valid fd.
    unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) == 0 }
}

/// One guard's pin directory in this network namespace.
#[derive(Clone, Debug)]
pub struct Pinned {
    pub iface: String,
    pub key: String,
    pub dir: PathBuf,
}

/// Every guard pinned in this network namespace ([`PIN_DIR`]`/<key>`), in
/// the order the directory lists them; none when PIN_DIR does not exist.
pub fn pinned() -> Result<Vec<Pinned>> {
    let entries = match fs::read_dir(PIN_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {PIN_DIR}")),
    };
    let suffix = sys::iface_key("")?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let key = entry.file_name().to_string_lossy().into_owned();
        if let Some(iface) = sys::iface_of_key(&key, &suffix) {
            out.push(Pinned {
                iface,
                key,
                dir: entry.path(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_as_written() {
        let st = RunState {
            pid: Some(42),
            iface: "eth0".into(),
            hooks: vec!["xdp-native".into(), "tc-egress".into()],
            persist: true,
            mss: Some((1400, 1380)),
            repair: Some("VXLAN checksum repair on UDP ports 8472".into()),
            gso: Some(GsoState {
                action: "drop".into(),
                min_size: 88,
                max_segs: 1024,
            }),
        };
        let text = st.render();
        assert_eq!(
            text,
            "pid=42\niface=eth0\nhooks=xdp-native,tc-egress\npersist=1\nmss_v4=1400\nmss_v6=1380\nrepair=VXLAN checksum repair on UDP ports 8472\ngso=drop min_size=88 max_segs=1024\n"
        );
        assert_eq!(RunState::parse(&text), st);
        assert_eq!(RunState::parse("pid=7\n").pid, Some(7));
        assert_eq!(RunState::parse("").hooks, Vec::<String>::new());
    }

    #[test]
    fn state_files_of_this_namespace() {
        assert_eq!(
            iface_of_state_file("eth0.lock", "").as_deref(),
            Some("eth0")
        );
        assert_eq!(iface_of_state_file("eth0.abi", ""), None);
        assert_eq!(iface_of_state_file("eth0@9.lock", ""), None);
    }
}
