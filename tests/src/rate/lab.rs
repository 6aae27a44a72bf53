//! The rate lab: generator -> router -> sink in namespaces, one hook on the
//! router at a time, and trafgen's rounds measured at the sink.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use guard_ebpf::testpkt::{ACK, Segment};
use guard_user::lab::netns::{self, Netns, VethEnd};

use crate::Running;

use super::{Hook, Kind};

pub(super) struct Lab {
    generator: Netns,
    router: Netns,
    sink: Netns,
    frames: [Vec<u8>; 2],
}

impl Lab {
    /// testpkt's segments run 10.77.1.2 -> 10.77.2.2: the generator's and
    /// the sink's addresses.
    pub(super) fn new() -> Result<Lab> {
        let tag = netns::unique_tag();
        let generator = Netns::new(&format!("pg-{tag}-rgen"))?;
        let router = Netns::new(&format!("pg-{tag}-rrt"))?;
        let sink = Netns::new(&format!("pg-{tag}-rsink"))?;
        netns::veth(
            &VethEnd::new(&generator, "g0", &["10.77.1.2/24"], 1500),
            &VethEnd::new(&router, "r0", &["10.77.1.1/24"], 1500),
        )?;
        netns::veth(
            &VethEnd::new(&router, "r1", &["10.77.2.1/24"], 1500),
            &VethEnd::new(&sink, "s0", &["10.77.2.2/24"], 1500),
        )?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        router.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        router.sysctl("net.ipv4.conf.r0.rp_filter", "0")?;
        let sink_mac = sink.mac_text("s0")?;
        router.ip(&[
            "neigh",
            "replace",
            "10.77.2.2",
            "lladdr",
            &sink_mac,
            "dev",
            "r1",
            "nud",
            "permanent",
        ])?;
        // The sink counts and drops: no RST travels back through the router.
        sink.exec(&[
            "nft",
            "add table netdev sinkdrop; add chain netdev sinkdrop in { type filter hook ingress device s0 priority 0; policy drop; }",
        ])?;
        let (dst, src) = (router.mac("r0")?, generator.mac("g0")?);
        let frame = |mut f: Vec<u8>| {
            f[0..6].copy_from_slice(&dst);
            f[6..12].copy_from_slice(&src);
            f
        };
        let syn = frame(Segment::syn(&[2, 4, 0x05, 0xb4]).build());
        let data = frame(Segment::syn(&[]).flags(ACK).payload(&[0x5a; 64]).build());
        Ok(Lab {
            generator,
            router,
            sink,
            frames: [syn, data],
        })
    }

    fn sink_rx(&self) -> Result<u64> {
        let dev = self.sink.exec(&["cat", "/proc/net/dev"])?;
        let line = dev
            .lines()
            .find(|l| l.trim_start().starts_with("s0:"))
            .ok_or_else(|| anyhow!("no s0 in /proc/net/dev"))?;
        let rest = line.split_once(':').map(|x| x.1).unwrap_or("");
        Ok(rest.split_whitespace().nth(1).unwrap_or("0").parse()?)
    }

    /// Puts `hook` on the router; the returned guard takes it off.
    pub(super) fn hook(&self, hook: Hook) -> Result<Option<Running>> {
        let r = &self.router;
        match hook {
            Hook::None => Ok(None),
            Hook::Nftables => {
                r.exec(&[
                    "nft",
                    "add table inet clamp; add chain inet clamp mssfix { type filter hook forward priority 0; }; \
                     add rule inet clamp mssfix tcp flags syn tcp option maxseg size set 1400",
                ])?;
                Ok(None)
            }
            Hook::Iptables => {
                r.exec(&[
                    "iptables",
                    "-t",
                    "mangle",
                    "-A",
                    "FORWARD",
                    "-p",
                    "tcp",
                    "--tcp-flags",
                    "SYN,RST",
                    "SYN",
                    "-j",
                    "TCPMSS",
                    "--set-mss",
                    "1400",
                ])?;
                Ok(None)
            }
            Hook::PktguardTc | Hook::PktguardXdp | Hook::PktguardXdpGeneric => {
                let attach = match hook {
                    Hook::PktguardTc => "tc",
                    Hook::PktguardXdp => "xdp",
                    _ => "xdp-generic",
                };
                Ok(Some(Running::start(
                    r,
                    &[
                        "--iface",
                        "r0",
                        "--attach",
                        attach,
                        "--direction",
                        "ingress",
                        "--mtu",
                        "1440",
                    ],
                )?))
            }
        }
    }

    pub(super) fn unhook(&self, hook: Hook, guard: Option<Running>) -> Result<()> {
        match hook {
            Hook::Nftables => {
                self.router.exec(&["nft", "delete table inet clamp"])?;
            }
            Hook::Iptables => {
                self.router
                    .exec(&["iptables", "-t", "mangle", "-F", "FORWARD"])?;
            }
            _ => {}
        }
        if let Some(g) = guard {
            let (status, out) = g.stop(libc::SIGTERM)?;
            if !status.success() {
                bail!("pktguard run failed: {out:?}");
            }
        }
        Ok(())
    }

    /// Forwarded packets per second, and trafgen's run-queue wait in % of
    /// the window.
    pub(super) fn measure(
        &self,
        kind: Kind,
        warmup: Duration,
        window: Duration,
    ) -> Result<(f64, f64)> {
        let frame = &self.frames[kind as usize];
        let packet = crate::trafgen_packet(frame);
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.generator.path().display()))
            .args([
                "--",
                "trafgen",
                "-o",
                "g0",
                "-P",
                "1",
                "--notouch-irq",
                "--no-cpu-stats",
                "-q",
            ])
            .arg(&packet)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting trafgen (cargo xtask setup installs netsniff-ng)")?;
        let result = self.window(&mut child, warmup, window);
        stop_trafgen(&mut child);
        result
    }

    fn window(&self, child: &mut Child, warmup: Duration, window: Duration) -> Result<(f64, f64)> {
        std::thread::sleep(warmup);
        let worker = worker_pid(child.id()).unwrap_or(child.id());
        let (rx0, w0, t0) = (self.sink_rx()?, runq_wait(worker)?, Instant::now());
        std::thread::sleep(window);
        let (rx1, w1, t1) = (self.sink_rx()?, runq_wait(worker)?, Instant::now());
        let secs = (t1 - t0).as_secs_f64();
        if let Ok(Some(status)) = child.try_wait() {
            bail!("trafgen exited early: {status}");
        }
        Ok((
            (rx1 - rx0) as f64 / secs,
            (w1 - w0) as f64 / 1e9 / secs * 100.0,
        ))
    }
}

/// trafgen forks its worker (which pins itself to a CPU): the child's child.
fn worker_pid(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds the process has waited on a run queue (/proc/PID/schedstat).
fn runq_wait(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .with_context(|| format!("reading /proc/{pid}/schedstat"))?;
    Ok(s.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// Stops trafgen by signalling its worker first (the parent waits for it).
fn stop_trafgen(child: &mut Child) {
    if let Some(w) = worker_pid(child.id()) {
        // SAFETY: kill(2) on trafgen's worker.
        unsafe { libc::kill(w as i32, libc::SIGINT) };
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
