//! Packets the tests send by hand: trafgen's frame syntax and a raw TCP
//! socket that sends hand-built segments and watches for the answer.

use std::time::Duration;

use anyhow::{Context as _, Result};
use guard_user::lab::netns::Netns;

/// A frame as trafgen's packet syntax: `{ 0x.., 0x.., ... }`.
pub fn trafgen_packet(frame: &[u8]) -> String {
    let bytes: Vec<String> = frame.iter().map(|b| format!("{b:#04x}")).collect();
    format!("{{ {} }}", bytes.join(", "))
}

/// Sends `frame` `count` times out of `dev` in `ns` with trafgen, from one
/// CPU (the events test counts per CPU), without touching IRQ affinities.
pub fn trafgen_send(ns: &Netns, dev: &str, frame: &[u8], count: u32) -> Result<()> {
    let packet = trafgen_packet(frame);
    let count = count.to_string();
    ns.exec(&[
        "trafgen",
        "-o",
        dev,
        "-n",
        &count,
        "-P",
        "1",
        "--notouch-irq",
        "--no-cpu-stats",
        "-q",
        &packet,
    ])
    .map(drop)
}

/// setsockopt(2) with a value of type `T` (an int, a timeval).
pub fn setsockopt<T>(
    fd: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: a valid fd, and a pointer and length of one live `T`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A raw TCP socket in the calling thread's namespace: sends hand-built
/// segments and watches for the answer.
pub struct RawTcp {
    fd: std::os::fd::OwnedFd,
    v6: bool,
}

impl RawTcp {
    pub fn new(v6: bool) -> Result<RawTcp> {
        use std::os::fd::FromRawFd as _;
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_TCP,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("raw TCP socket");
        }
        // SAFETY: a fresh, valid fd.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv).context("SO_RCVTIMEO")?;
        Ok(RawTcp { fd, v6 })
    }

    /// Sends a TCP segment (header, options, payload; checksum included).
    pub fn send(&self, dst: std::net::IpAddr, segment: &[u8]) -> Result<()> {
        /// sendto(2) of `segment` to the socket address `sa`.
        fn sendto<A>(fd: &std::os::fd::OwnedFd, segment: &[u8], sa: &A) -> isize {
            use std::os::fd::AsRawFd as _;
            // SAFETY: valid fd and buffer, and a pointer and length of one
            // live socket address.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    segment.as_ptr().cast(),
                    segment.len(),
                    0,
                    (sa as *const A).cast(),
                    std::mem::size_of::<A>() as libc::socklen_t,
                )
            }
        }
        let rc = match dst {
            std::net::IpAddr::V4(a) => {
                // SAFETY: zeroed sockaddr_in is valid; fields set below.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                sendto(&self.fd, segment, &sa)
            }
            std::net::IpAddr::V6(a) => {
                // SAFETY: zeroed sockaddr_in6 is valid; fields set below.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = a.octets();
                sendto(&self.fd, segment, &sa)
            }
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("sending a raw segment");
        }
        Ok(())
    }

    /// Waits up to `wait` for a SYN-ACK from port `from` to port `to`;
    /// returns the MSS option it carries (0 if none).
    pub fn synack(&self, from: u16, to: u16, wait: Duration) -> Result<Option<u16>> {
        use std::os::fd::AsRawFd as _;
        let deadline = std::time::Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            // SAFETY: valid fd and buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let pkt = &buf[..n as usize];
            // IPv4 raw sockets deliver the IP header, IPv6 ones do not.
            let tcp = if self.v6 {
                0
            } else {
                (pkt[0] & 0x0f) as usize * 4
            };
            if pkt.len() < tcp + 20 {
                continue;
            }
            let t = &pkt[tcp..];
            let (sport, dport) = (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            );
            if sport != from || dport != to || t[13] & 0x12 != 0x12 {
                continue;
            }
            let doff = ((t[12] >> 4) as usize * 4).min(t.len());
            let opts = &t[20..doff];
            let mut i = 0;
            while i + 1 < opts.len() {
                match opts[i] {
                    0 => break,
                    1 => i += 1,
                    2 if i + 3 < opts.len() => {
                        return Ok(Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]])));
                    }
                    _ => i += (opts[i + 1] as usize).max(2),
                }
            }
            return Ok(Some(0));
        }
        Ok(None)
    }
}
