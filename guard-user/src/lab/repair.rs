//! Incident 4 rebuilt in namespaces: node A sends VXLAN (outer UDP checksum
//! 0, as flannel does) to node B; a test-only program on A's underlay does
//! what a second SNAT did on kernels before 5.7 (checksum 0 -> 0xffff, new
//! source port, no fix-up). B counts UdpInCsumErrors and drops every frame;
//! with `pktguard run --csum-repair` on B's underlay the frames get through.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{SchedClassifier, TcAttachType},
};
use guard_common::{LAB_SNAT_COUNTERS_MAP, LT_LAB_CORRUPT, PROG_LAB_DOUBLE_SNAT, RepairOutcome};

use crate::{
    config::repair::{RepairMode, RepairSpec},
    guard::{AttachMode, Direction, Features, Guard},
    lab::{
        accept_until, family,
        netns::{self, Netns, VethEnd},
        verdict,
    },
    objects,
};

/// B's underlay interface, where the repair runs.
pub const RECEIVER_IF: &str = "ub";
const SENDER_IF: &str = "ua";
const OVERLAY_A: &str = "10.99.0.1";
const OVERLAY_B: &str = "10.99.0.2";
const PORT: u16 = 7070;

pub struct VxlanLab {
    pub a: Netns,
    pub b: Netns,
    pub v6_underlay: bool,
    /// The double-SNAT program on A's underlay (detached on drop).
    snat: Ebpf,
}

impl VxlanLab {
    /// `mtu`: the underlay MTU. `corrupt`: the mangling program also flips
    /// a byte of the inner packet.
    pub fn new(v6_underlay: bool, mtu: u32, corrupt: bool) -> Result<VxlanLab> {
        let tag = netns::unique_tag();
        let a = Netns::new(&format!("pg-{tag}-vxa"))?;
        let b = Netns::new(&format!("pg-{tag}-vxb"))?;
        let (ua, ub) = if v6_underlay {
            ("fd78::1", "fd78::2")
        } else {
            ("192.168.77.1", "192.168.77.2")
        };
        let plen = if v6_underlay { "64" } else { "24" };
        let (a_addr, b_addr) = (format!("{ua}/{plen}"), format!("{ub}/{plen}"));
        netns::veth(
            &VethEnd::new(&a, SENDER_IF, &[&a_addr], mtu),
            &VethEnd::new(&b, RECEIVER_IF, &[&b_addr], mtu),
        )?;
        // veth would otherwise hide the problem: checksums are not computed
        // on A's way out, and B would trust them on the way in.
        a.exec(&["ethtool", "-K", SENDER_IF, "tx", "off"])?;
        b.exec(&["ethtool", "-K", RECEIVER_IF, "rx", "off"])?;
        let vxmtu = (mtu - if v6_underlay { 70 } else { 50 }).to_string();
        let macs = ["02:99:00:00:00:01", "02:99:00:00:00:02"];
        for (i, (ns, local, remote, dev)) in [(&a, ua, ub, SENDER_IF), (&b, ub, ua, RECEIVER_IF)]
            .into_iter()
            .enumerate()
        {
            // flannel sends the outer UDP checksum as 0 (IPv6 needs leave to).
            let csum: &[&str] = if v6_underlay {
                &["udp6zerocsumtx", "udp6zerocsumrx"]
            } else {
                &["noudpcsum"]
            };
            let mut args = vec![
                "link", "add", "vx0", "address", macs[i], "type", "vxlan", "id", "42", "local",
                local, "remote", remote, "dstport", "4789", "dev", dev,
            ];
            args.extend_from_slice(csum);
            ns.ip(&args)?;
            ns.sysctl("net.ipv6.conf.vx0.disable_ipv6", "1")?;
            ns.ip(&["link", "set", "vx0", "mtu", &vxmtu, "up"])?;
            let (me, peer) = if i == 0 {
                (OVERLAY_A, OVERLAY_B)
            } else {
                (OVERLAY_B, OVERLAY_A)
            };
            ns.ip(&["addr", "add", &format!("{me}/24"), "dev", "vx0"])?;
            // Static neighbours, as flannel installs them: an ARP frame
            // proves nothing about its payload and is never repaired.
            ns.ip(&[
                "neigh",
                "add",
                peer,
                "lladdr",
                macs[1 - i],
                "dev",
                "vx0",
                "nud",
                "permanent",
            ])?;
        }
        // One frame per skb on A's underlay, so that frames can be counted.
        a.exec(&["ethtool", "-K", "vx0", "tso", "off", "gso", "off"])?;
        if corrupt {
            // The inner checksum must be final before the byte flips, or it
            // would be computed over the flipped byte (CHECKSUM_PARTIAL).
            a.exec(&["ethtool", "-K", "vx0", "tx", "off"])?;
        }
        let object = objects::with_constants(objects::LAB, &[(LT_LAB_CORRUPT, corrupt as u64)])?;
        let mut snat = objects::load(&mut EbpfLoader::new(), object)?;
        let prog: &mut SchedClassifier = snat
            .program_mut(PROG_LAB_DOUBLE_SNAT)
            .ok_or_else(|| anyhow!("no program {PROG_LAB_DOUBLE_SNAT}"))?
            .try_into()?;
        prog.load()?;
        a.run(|| {
            crate::guard::tc::ensure_clsact(SENDER_IF)?;
            prog.attach(
                &crate::host::iface::ifname(SENDER_IF)?,
                TcAttachType::Egress,
            )
            .context("attaching the double-SNAT program")?;
            Ok(())
        })?;
        Ok(VxlanLab {
            a,
            b,
            v6_underlay,
            snat,
        })
    }

    /// Frames the double-SNAT program has mangled so far.
    pub fn mangled(&self) -> Result<u64> {
        let map = self
            .snat
            .map(LAB_SNAT_COUNTERS_MAP)
            .ok_or_else(|| anyhow!("no map {LAB_SNAT_COUNTERS_MAP}"))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(counters.get(&0, 0)?.iter().sum())
    }

    /// B's UDP checksum error counter (UdpInCsumErrors, or Udp6InCsumErrors
    /// with an IPv6 underlay).
    pub fn csum_errors(&self) -> Result<u64> {
        if self.v6_underlay {
            let text = self.b.exec(&["cat", "/proc/net/snmp6"])?;
            text.lines()
                .find_map(|l| l.strip_prefix("Udp6InCsumErrors"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow!("no Udp6InCsumErrors in /proc/net/snmp6"))
        } else {
            let text = self.b.exec(&["cat", "/proc/net/snmp"])?;
            let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
            let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == "InCsumErrors")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| anyhow!("no Udp InCsumErrors in /proc/net/snmp"))
        }
    }

    /// A TCP connect from A to B over the overlay and an echo of `bytes`,
    /// within `wait`. Returns the time it took, or the reason it failed.
    pub fn echo(
        &self,
        bytes: usize,
        wait: Duration,
    ) -> Result<std::result::Result<Duration, String>> {
        let addr: SocketAddr = format!("{OVERLAY_B}:{PORT}").parse()?;
        let listener = self.b.run(|| Ok(TcpListener::bind(addr)?))?;
        listener.set_nonblocking(true)?;
        let start = Instant::now();
        let deadline = start + wait;
        let server = std::thread::spawn(move || -> Result<()> {
            let Some(mut conn) = accept_until(&listener, deadline)? else {
                return Ok(());
            };
            conn.set_nonblocking(false)?;
            conn.set_read_timeout(Some(wait))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        });
        let result = self.a.run(|| {
            let mut s = match TcpStream::connect_timeout(&addr, wait) {
                Ok(s) => s,
                Err(e) => return Ok(Err(format!("connect: {e}"))),
            };
            s.set_read_timeout(Some(wait))?;
            s.set_write_timeout(Some(wait))?;
            let data: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
            let reader = s.try_clone()?;
            let expect = data.clone();
            let echo = std::thread::spawn(move || {
                let mut r = reader;
                let mut got = vec![0u8; expect.len()];
                r.read_exact(&mut got).map(|_| got == expect)
            });
            if let Err(e) = s.write_all(&data) {
                return Ok(Err(format!("send: {e}")));
            }
            match echo.join() {
                Ok(Ok(true)) => Ok(Ok(start.elapsed())),
                Ok(Ok(false)) => Ok(Err("the echo differs".to_string())),
                Ok(Err(e)) => Ok(Err(format!("echo: {e}"))),
                Err(_) => bail!("echo thread panicked"),
            }
        })?;
        let _ = server.join();
        // Let the connection's last frames (FIN, ACK) pass before anyone counts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(result)
    }
}

/// `pktguard lab csum`: incident 4 before and after the guard, with a verdict.
pub fn report(bytes: usize, stall: Duration) -> Result<()> {
    println!(
        "lab csum: node A -> VXLAN (outer UDP checksum 0, as flannel sends it) -> node B; on A's \
         underlay a second SNAT as kernels before 5.7 did it (0 -> 0xffff, new source port)"
    );
    let mut ok = true;
    for v6 in [false, true] {
        let lab = VxlanLab::new(v6, 1500, false).context("building the lab namespaces")?;
        let underlay = family(v6);
        let errors = lab.csum_errors()?;
        let before = lab.echo(bytes, stall)?;
        let errors = lab.csum_errors()? - errors;
        match &before {
            Ok(t) => println!(
                "  {underlay} underlay, without the guard: echo completed in {t:.2?} (UNEXPECTED)"
            ),
            Err(why) => println!(
                "  {underlay} underlay, without the guard: {why}; B counted {errors} UDP checksum errors"
            ),
        }
        ok &= before.is_err() && errors > 0;
        let features = Features {
            clamp: None,
            repair: Some(RepairSpec::new(&[], &[], RepairMode::Recompute)?),
            gso: None,
        };
        let guard = lab
            .b
            .run(|| Guard::start(RECEIVER_IF, AttachMode::Auto, Direction::Ingress, &features))?;
        let mangled = lab.mangled()?;
        let after = lab.echo(bytes, Duration::from_secs(30))?;
        let mangled = lab.mangled()? - mangled;
        let hooks = guard.repair_counters()?;
        let repaired: u64 = hooks
            .iter()
            .map(|h| h.get(RepairOutcome::OuterRepaired))
            .sum();
        let attached: Vec<_> = guard.attached.iter().map(|a| a.name()).collect();
        match &after {
            Ok(t) => println!(
                "  {underlay} underlay, with the guard on B ({}): {bytes}-byte echo completed in {t:.2?}; \
                 frames mangled {mangled}, outer checksums repaired {repaired}",
                attached.join(" + ")
            ),
            Err(why) => println!("  {underlay} underlay, with the guard: {why} (UNEXPECTED)"),
        }
        ok &= after.is_ok() && repaired >= mangled && mangled > 0;
    }
    verdict(
        ok,
        "without the guard every frame is dropped; with it the echo completes and every mangled frame was repaired",
        "above",
    )
}
