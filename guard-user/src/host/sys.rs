//! What the loader asks of the host: interfaces, privileges, kernel version,
//! bpffs, network namespaces. Interface queries go through ioctls on a socket
//! of the calling thread's network namespace (sysfs may show another one).

use std::{
    ffi::CString,
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the returned value.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

pub(crate) fn ioctl(req: &mut libc::ifreq, op: libc::Ioctl) -> io::Result<()> {
    let sock = ctl_socket()?;
    // SAFETY: `req` is a valid ifreq for these SIOC* requests.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface's index, or a message that says it does not exist.
pub fn ifindex(name: &str) -> Result<u32> {
    let cname = CString::new(name).map_err(|_| anyhow!("invalid interface name {name:?}"))?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        bail!("interface {name:?} does not exist in this network namespace (see `ip link show`)");
    }
    Ok(index)
}

pub fn mtu(name: &str) -> Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(&mut req, libc::SIOCGIFMTU).with_context(|| format!("reading the MTU of {name}"))?;
    // SAFETY: SIOCGIFMTU filled the ifru_mtu member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

/// ARPHRD_* type of the interface's hardware address.
pub fn hw_type(name: &str) -> Result<u16> {
    let mut req = ifreq(name)?;
    ioctl(&mut req, libc::SIOCGIFHWADDR)
        .with_context(|| format!("reading the link type of {name}"))?;
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

/// Driver name and bus address (empty for virtual devices) from ethtool.
pub fn driver_info(name: &str) -> Result<(String, String)> {
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // SAFETY: plain old data; all-zero is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    ioctl(&mut req, libc::SIOCETHTOOL)
        .with_context(|| format!("asking the driver of {name} (ethtool -i)"))?;
    let text = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok((text(&info.driver), text(&info.bus_info)))
}

/// Whether this process may load and attach BPF programs.
pub fn check_privileges() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 12;
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_BPF: u64 = 39;
    let has = |c: u64| caps & (1 << c) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        return Ok(());
    }
    bail!(
        "pktguard needs root (or CAP_BPF and CAP_NET_ADMIN) to load and attach BPF programs: run it with sudo"
    )
}

/// The running kernel's release, e.g. `6.1.0-50-cloud-amd64`.
pub fn kernel_release() -> Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel release")?
        .trim()
        .to_string())
}

/// The running kernel's (major, minor).
pub fn kernel_version() -> Result<(u32, u32)> {
    let release = kernel_release()?;
    parse_kernel_release(&release)
        .ok_or_else(|| anyhow!("cannot parse the kernel release {release:?}"))
}

pub fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The oldest kernel the programs are written for: the incident kernel
/// 4.19 (no global data, no loops, 4,096 instructions: see README,
/// Kernels), and every helper they call exists there. What a kernel lacks
/// beyond that is probed and said at start (host/kernel.rs).
pub const MIN_KERNEL: (u32, u32) = (4, 19);

pub fn check_kernel() -> Result<()> {
    let v = kernel_version()?;
    if v < MIN_KERNEL {
        bail!(
            "kernel {}.{} is too old: pktguard needs Linux {}.{} or newer",
            v.0,
            v.1,
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf unless it is there already.
pub fn ensure_bpffs(root: &str) -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let path = CString::new(root)?;
    // SAFETY: statfs into a zeroed struct, valid path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    mount_fs("bpf", root)
        .with_context(|| format!("mounting bpffs at {root} (try: mount -t bpf bpf {root})"))
}

/// Inode of a network namespace file (this thread's by default).
pub fn netns_inode(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .ino())
}

/// The name pins and locks use for an interface: its name in the initial
/// network namespace, `name@<netns inode>` in any other (and wherever the
/// initial one cannot be told), since interface names repeat across
/// namespaces.
pub fn iface_key(iface: &str) -> Result<String> {
    let mine = netns_inode(Path::new("/proc/thread-self/ns/net"))?;
    let init = netns_inode(Path::new("/proc/1/ns/net")).ok();
    Ok(if init == Some(mine) {
        iface.to_string()
    } else {
        format!("{iface}@{mine}")
    })
}

/// The interface a pin directory or state file named `key` belongs to, if
/// it belongs to this network namespace (`suffix`: [`iface_key`] of "").
/// Names starting with `_` are pktguard's own (the drop monitor).
pub fn iface_of_key(key: &str, suffix: &str) -> Option<String> {
    if key.starts_with('_') {
        return None;
    }
    if suffix.is_empty() {
        (!key.contains('@')).then(|| key.to_string())
    } else {
        key.strip_suffix(suffix).map(str::to_string)
    }
}

/// Mounts a pseudo file system (`bpf`, `tracefs`) at `target`.
pub fn mount_fs(fstype: &str, target: &str) -> io::Result<()> {
    let (fs, dir) = (
        CString::new(fstype).map_err(io::Error::other)?,
        CString::new(target).map_err(io::Error::other)?,
    );
    fs::create_dir_all(target)?;
    // SAFETY: valid NUL-terminated strings, no data.
    let rc = unsafe { libc::mount(fs.as_ptr(), dir.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Enters the network namespace at `path` for the calling thread.
pub fn enter_netns(path: &Path) -> Result<()> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a valid namespace fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_kernel_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(
            parse_kernel_release("4.19.90-24.4.v2101.ky10.x86_64"),
            Some((4, 19))
        );
        assert_eq!(parse_kernel_release("5.4"), Some((5, 4)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }

    #[test]
    fn keys_of_this_namespace() {
        assert_eq!(iface_of_key("eth0", "").as_deref(), Some("eth0"));
        assert_eq!(iface_of_key("eth0@42", ""), None);
        assert_eq!(iface_of_key("eth0@42", "@42").as_deref(), Some("eth0"));
        assert_eq!(iface_of_key("eth0@43", "@42"), None);
        assert_eq!(iface_of_key("eth0", "@42"), None);
        assert_eq!(iface_of_key("_drops", ""), None);
    }

    #[test]
    fn loopback_is_known_and_unknown_is_named() {
        assert!(ifindex("lo").is_ok());
        let err = ifindex("nosuch0").unwrap_err().to_string();
        assert!(
            err.contains("nosuch0") && err.contains("does not exist"),
            "{err}"
        );
        assert!(ifreq("a-name-longer-than-15").is_err());
    }
}
