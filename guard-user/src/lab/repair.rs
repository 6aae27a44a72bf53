//! Incident 4 rebuilt in namespaces: node A sends VXLAN (outer UDP checksum
//! 0, as flannel does) to node B, and the outer packet is SNATed a second
//! time on A. On a kernel without ea64d8d6c675 (before 5.7, 4.19.123,
//! 5.4.41) the kernel's own NAT does it, from kube-proxy's rules
//! ([`SecondSnat::Kernel`]); elsewhere a test-only program on A's underlay
//! does what that NAT did (checksum 0 -> 0xffff, new source port, no
//! fix-up). B counts UdpInCsumErrors and drops every frame; with `pktguard
//! run --csum-repair` on B's underlay the frames get through.

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

/// Who SNATs the outer packet a second time on node A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondSnat {
    /// The kernel's NAT, from the rules kube-proxy installed before
    /// kubernetes PR 92035: node traffic to a Service is marked 0x4000,
    /// and every marked packet is `MASQUERADE --random-fully`d on
    /// POSTROUTING; the VXLAN packet keeps the inner packet's mark. Only a
    /// kernel without the NAT fix breaks the outer checksum.
    Kernel,
    /// The test-only program (a mock of the pre-fix NAT, for kernels that
    /// have the fix); `corrupt` also flips a byte of the inner packet.
    Program { corrupt: bool },
}

impl SecondSnat {
    /// The kernel's own NAT where the running kernel has the bug, the
    /// program elsewhere.
    pub fn for_this_kernel() -> SecondSnat {
        if kernel_has_nat_bug() {
            SecondSnat::Kernel
        } else {
            SecondSnat::Program { corrupt: false }
        }
    }
}

/// Whether the running kernel lacks ea64d8d6c675 ("netfilter: nat: never
/// update the UDP checksum when it's 0").
pub fn kernel_has_nat_bug() -> bool {
    crate::host::sys::kernel_release()
        .ok()
        .and_then(|r| crate::doctor::proc::kernel_release(&r))
        .is_some_and(|v| !crate::doctor::has_nat_csum_fix(v))
}

/// kube-proxy's mark for traffic to be masqueraded (KUBE-MARK-MASQ).
const MASQ_MARK: &str = "0x4000/0x4000";

pub struct VxlanLab {
    pub a: Netns,
    pub b: Netns,
    pub v6_underlay: bool,
    pub snat: SecondSnat,
    /// The double-SNAT program on A's underlay (detached on drop), with
    /// [`SecondSnat::Program`].
    program: Option<Ebpf>,
}

impl VxlanLab {
    /// `mtu`: the underlay MTU.
    pub fn new(v6_underlay: bool, mtu: u32, snat: SecondSnat) -> Result<VxlanLab> {
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
        let corrupt = match snat {
            SecondSnat::Kernel => {
                kube_proxy_rules(&a, v6_underlay)?;
                return Ok(VxlanLab {
                    a,
                    b,
                    v6_underlay,
                    snat,
                    program: None,
                });
            }
            SecondSnat::Program { corrupt } => corrupt,
        };
        if corrupt {
            // The inner checksum must be final before the byte flips, or it
            // would be computed over the flipped byte (CHECKSUM_PARTIAL).
            a.exec(&["ethtool", "-K", "vx0", "tx", "off"])?;
        }
        let object = objects::with_constants(objects::LAB, &[(LT_LAB_CORRUPT, corrupt as u64)])?;
        let mut program = objects::load(&mut EbpfLoader::new(), object)?;
        let prog: &mut SchedClassifier = program
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
            program: Some(program),
        })
    }

    /// Frames the double-SNAT program has mangled so far; with the kernel's
    /// NAT, the packets A's second SNAT rule has masqueraded (the first of
    /// each connection: the inner TCP one and the outer UDP flow).
    pub fn mangled(&self) -> Result<u64> {
        let Some(program) = &self.program else {
            return masqueraded(&self.a, self.v6_underlay);
        };
        let map = program
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

/// The iptables of an underlay family, nf_tables backend (the one every
/// kernel of the matrix and the hosts have).
fn iptables(v6: bool) -> &'static str {
    if v6 { "ip6tables-nft" } else { "iptables-nft" }
}

/// kube-proxy's rules before PR 92035, on node A: the node's own traffic to
/// the Service (here: B's overlay address) carries the mark 0x4000, and
/// KUBE-POSTROUTING masquerades every marked packet with --random-fully,
/// without clearing the mark, so the VXLAN packet, which inherits it,
/// matches again. kube-proxy marks a connection's first packet (nat table);
/// here every packet of it is marked (filter OUTPUT, which every kernel's
/// nf_tables has, unlike the mangle chain's route type), as the kernel's
/// SOURCE.md recipe does: a SYN retransmitted after a timeout gets a new
/// flow hash, hence a new VXLAN source port and a new outer flow, whose
/// first packet must carry the mark too.
fn kube_proxy_rules(a: &Netns, v6_underlay: bool) -> Result<()> {
    let mark: &[&str] = &[
        "-t",
        "filter",
        "-A",
        "OUTPUT",
        "-d",
        OVERLAY_B,
        "-p",
        "tcp",
        "-j",
        "MARK",
        "--set-xmark",
        MASQ_MARK,
    ];
    let postrouting: [&[&str]; 3] = [
        &["-t", "nat", "-N", "KUBE-POSTROUTING"],
        &["-t", "nat", "-A", "POSTROUTING", "-j", "KUBE-POSTROUTING"],
        &[
            "-t",
            "nat",
            "-A",
            "KUBE-POSTROUTING",
            "-m",
            "mark",
            "--mark",
            MASQ_MARK,
            "-j",
            "MASQUERADE",
            "--random-fully",
        ],
    ];
    let mut rules = vec![(iptables(false), mark)];
    rules.extend(postrouting.map(|r| (iptables(false), r)));
    if v6_underlay {
        // The outer packet is IPv6: the same masquerade in ip6tables.
        rules.extend(postrouting.map(|r| (iptables(true), r)));
    }
    for (ipt, rule) in rules {
        a.exec(&[&[ipt], rule].concat())
            .with_context(|| format!("{ipt} {}", rule.join(" ")))?;
    }
    Ok(())
}

/// Packets A's KUBE-POSTROUTING masquerade has matched (IPv4 and, with an
/// IPv6 underlay, IPv6).
fn masqueraded(a: &Netns, v6_underlay: bool) -> Result<u64> {
    let mut total = 0;
    for v6 in [false, true] {
        if v6 && !v6_underlay {
            continue;
        }
        let text = a.exec(&[
            iptables(v6),
            "-t",
            "nat",
            "-L",
            "KUBE-POSTROUTING",
            "-v",
            "-x",
            "-n",
        ])?;
        let line = text
            .lines()
            .find(|l| l.contains("MASQUERADE"))
            .ok_or_else(|| anyhow!("no MASQUERADE rule in KUBE-POSTROUTING: {text}"))?;
        total += line
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no packet count in {line:?}"))?;
    }
    Ok(total)
}

/// `pktguard lab csum`: incident 4 before and after the guard, with a
/// verdict. The second SNAT is the running kernel's own where it has the
/// bug, and the test-only program elsewhere: said in the first lines.
pub fn report(bytes: usize, stall: Duration) -> Result<()> {
    let snat = SecondSnat::for_this_kernel();
    let release = crate::host::sys::kernel_release().unwrap_or_default();
    println!(
        "lab csum: node A -> VXLAN (outer UDP checksum 0, as flannel sends it) -> node B, the \
         outer packet SNATed a second time on A"
    );
    match snat {
        SecondSnat::Kernel => println!(
            "  the real bug: kernel {release} lacks ea64d8d6c675, so its own NAT \
             (kube-proxy's mark 0x4000 and MASQUERADE --random-fully) breaks the outer checksum"
        ),
        SecondSnat::Program { .. } => println!(
            "  kernel {release} has the NAT fix (ea64d8d6c675): a test-only program on A's \
             underlay does what the old NAT did (0 -> 0xffff, new source port)"
        ),
    }
    let mut ok = true;
    for v6 in [false, true] {
        let lab = VxlanLab::new(v6, 1500, snat).context("building the lab namespaces")?;
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
        let (mangled, errors) = (lab.mangled()?, lab.csum_errors()?);
        let after = lab.echo(bytes, Duration::from_secs(30))?;
        let (mangled, errors) = (lab.mangled()? - mangled, lab.csum_errors()? - errors);
        let hooks = guard.repair_counters()?;
        let repaired: u64 = hooks
            .iter()
            .map(|h| h.get(RepairOutcome::OuterRepaired))
            .sum();
        let attached: Vec<_> = guard.attached.iter().map(|a| a.name()).collect();
        let what = match snat {
            SecondSnat::Kernel => format!("packets masqueraded again {mangled}"),
            SecondSnat::Program { .. } => format!("frames mangled {mangled}"),
        };
        match &after {
            Ok(t) => println!(
                "  {underlay} underlay, with the guard on B ({}): {bytes}-byte echo completed in {t:.2?}; \
                 {what}, outer checksums repaired {repaired}, UDP checksum errors {errors}",
                attached.join(" + ")
            ),
            Err(why) => println!("  {underlay} underlay, with the guard: {why} (UNEXPECTED)"),
        }
        ok &= after.is_ok() && mangled > 0 && repaired > 0 && errors == 0;
        if snat != SecondSnat::Kernel {
            ok &= repaired >= mangled;
        }
    }
    verdict(
        ok,
        "without the guard every frame is dropped; with it the echo completes and every broken frame was repaired",
        "above",
    )
}
