//! Helpers of the privileged tests: the compiled programs under
//! BPF_PROG_TEST_RUN, and `pktguard run` as a user starts it.

pub mod rate;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use guard_common::{Hook, LinkKind, MSS_CONFIG_MAP, MSS_COUNTERS_MAP, MssConfig, MssCounter};
use guard_user::{guard::counters::HookStats, lab::netns::Netns};

/// The guard's object loaded (not attached), for BPF_PROG_TEST_RUN, with
/// the other objects (drop monitor, lab, bench) whose programs tests run
/// too. A program is loaded into the kernel (verified) when first run:
/// under TCG in the kernel matrix, verifying programs a test does not run
/// costs seconds each.
pub struct Loaded {
    pub ebpf: std::cell::RefCell<Ebpf>,
    /// The drop monitor's, the lab's and the bench object, with their
    /// globals at their defaults (tests set none of them).
    pub others: Vec<std::cell::RefCell<Ebpf>>,
}

/// What a program did with one frame.
pub struct Ran {
    pub retval: u32,
    pub out: Vec<u8>,
    pub duration: Duration,
}

impl Loaded {
    pub fn new(cfg: MssConfig, link: LinkKind) -> Result<Loaded> {
        let ebpf = guard_user::guard::object::load(
            link,
            guard_common::FEATURE_MSS | guard_common::FEATURE_CSUM,
        )?;
        Loaded::with_guard(ebpf, cfg)
    }

    fn with_guard(guard: Ebpf, cfg: MssConfig) -> Result<Loaded> {
        use guard_user::objects::{BENCH, DROPS, LAB};
        let others = [DROPS, LAB, BENCH]
            .into_iter()
            .map(|o| Ok(std::cell::RefCell::new(Ebpf::load(o)?)))
            .collect::<Result<_>>()?;
        let mut loaded = Loaded {
            ebpf: std::cell::RefCell::new(guard),
            others,
        };
        loaded.set_config(cfg)?;
        Ok(loaded)
    }

    /// Every object, the guard's first.
    pub fn objects(&self) -> impl Iterator<Item = &std::cell::RefCell<Ebpf>> {
        std::iter::once(&self.ebpf).chain(&self.others)
    }

    /// The object that holds program `name`.
    fn object_of(&self, name: &str) -> Result<&std::cell::RefCell<Ebpf>> {
        self.objects()
            .find(|o| o.borrow().program(name).is_some())
            .ok_or_else(|| anyhow!("no program {name}"))
    }

    /// Loads program `name` into the kernel unless it is.
    fn ensure_loaded(&self, name: &str) -> Result<()> {
        let mut ebpf = self.object_of(name)?.borrow_mut();
        match ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
        {
            aya::programs::Program::Xdp(p) if p.fd().is_err() => {
                p.load().with_context(|| format!("loading {name}"))?
            }
            aya::programs::Program::SchedClassifier(p) if p.fd().is_err() => {
                p.load().with_context(|| format!("loading {name}"))?
            }
            _ => {}
        }
        Ok(())
    }

    /// Loads with only `features` (FEATURE_* bits) compiled in.
    pub fn with_features(cfg: MssConfig, link: LinkKind, features: u8) -> Result<Loaded> {
        let loaded = Loaded::with_guard(guard_user::guard::object::load(link, features)?, cfg)?;
        // Multi-buffer XDP and bpf_xdp_load_bytes arrived in 5.18: the
        // loader never loads these programs on older kernels, nor does this.
        let frags = guard_user::guard::object::xdp_frags_supported();
        for name in [
            guard_common::PROG_XDP,
            guard_common::PROG_XDP_FRAGS,
            guard_common::PROG_BENCH_EMPTY_XDP,
            guard_common::PROG_BENCH_EMPTY_XDP_FRAGS,
            guard_common::PROG_BENCH_CSUM_PASS_XDP,
        ] {
            if !frags
                && name != guard_common::PROG_XDP
                && name != guard_common::PROG_BENCH_EMPTY_XDP
            {
                eprintln!("{name}: not loaded (multi-buffer XDP needs Linux 5.18)");
                continue;
            }
            let mut ebpf = loaded.object_of(name)?.borrow_mut();
            let p: &mut Xdp = ebpf.program_mut(name).expect("xdp program").try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        for name in [
            guard_common::PROG_TC_INGRESS,
            guard_common::PROG_TC_EGRESS,
            guard_common::PROG_BENCH_EMPTY_TC,
            guard_common::PROG_LAB_DOUBLE_SNAT,
            guard_common::PROG_BENCH_CSUM_PASS_TC,
            guard_common::PROG_TC_GSO,
            guard_common::PROG_TC_GSO_TYPED,
        ] {
            let mut ebpf = loaded.object_of(name)?.borrow_mut();
            let p: &mut SchedClassifier = ebpf.program_mut(name).expect("tc program").try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let mut ebpf = loaded
            .object_of(guard_common::PROG_DROP_MONITOR)?
            .borrow_mut();
        let p: &mut aya::programs::RawTracePoint = ebpf
            .program_mut(guard_common::PROG_DROP_MONITOR)
            .expect("drop monitor")
            .try_into()?;
        p.load().context("loading the drop monitor")?;
        let btf = aya::Btf::from_sys_fs()?;
        let p: &mut aya::programs::BtfTracePoint = ebpf
            .program_mut(guard_common::PROG_DROP_MONITOR_BTF)
            .expect("drop monitor (BTF)")
            .try_into()?;
        p.load("kfree_skb", &btf)
            .context("loading the drop monitor (BTF)")?;
        drop(ebpf);
        Ok(loaded)
    }

    /// Changes the clamp of the loaded programs.
    pub fn set_config(&mut self, cfg: MssConfig) -> Result<()> {
        guard_user::guard::object::set_config(self.ebpf.get_mut(), MSS_CONFIG_MAP, cfg)
    }

    /// Runs program `name` on `frame`, `repeat` times.
    pub fn run(&self, name: &str, frame: &[u8], repeat: u32) -> Result<Ran> {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        };
        self.ensure_loaded(name)?;
        let ebpf = self.object_of(name)?.borrow();
        let prog = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?;
        let res = match prog {
            aya::programs::Program::Xdp(p) => p.test_run(opts)?,
            aya::programs::Program::SchedClassifier(p) => p.test_run(opts)?,
            _ => bail!("{name} cannot be test-run here"),
        };
        out.truncate(res.data_size_out as usize);
        Ok(Ran {
            retval: res.return_value,
            out,
            duration: res.duration,
        })
    }

    /// Runs TC program `name` on `frame` as a GSO packet: an `__sk_buff`
    /// context carrying gso_size and gso_segs.
    pub fn run_gso(&self, name: &str, frame: &[u8], gso_size: u32, gso_segs: u32) -> Result<Ran> {
        self.run_gso_repeat(name, frame, gso_size, gso_segs, 1)
    }

    /// [`Loaded::run_gso`], `repeat` times.
    pub fn run_gso_repeat(
        &self,
        name: &str,
        frame: &[u8],
        gso_size: u32,
        gso_segs: u32,
        repeat: u32,
    ) -> Result<Ran> {
        use aya_ebpf_bindings::bindings::__sk_buff;
        // SAFETY: plain old data; all-zero is a valid __sk_buff.
        let mut skb: __sk_buff = unsafe { std::mem::zeroed() };
        skb.gso_size = gso_size;
        skb.gso_segs = gso_segs;
        // SAFETY: reading the bytes of a plain struct.
        let ctx = unsafe {
            std::slice::from_raw_parts(
                (&skb as *const __sk_buff).cast::<u8>(),
                std::mem::size_of::<__sk_buff>(),
            )
        };
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(ctx),
            repeat,
            ..TestRunOptions::new()
        };
        self.ensure_loaded(name)?;
        let ebpf = self.object_of(name)?.borrow();
        let aya::programs::Program::SchedClassifier(p) = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
        else {
            bail!("{name} is not a TC program");
        };
        let res = p.test_run(opts)?;
        out.truncate(res.data_size_out as usize);
        Ok(Ran {
            retval: res.return_value,
            out,
            duration: res.duration,
        })
    }

    pub fn counters(&self) -> Result<Vec<HookStats>> {
        let ebpf = self.ebpf.borrow();
        let map = ebpf.map(MSS_COUNTERS_MAP).expect("counter map");
        guard_user::guard::counters::hook_stats(&PerCpuArray::try_from(map)?)
    }

    pub fn counter(&self, hook: Hook, c: MssCounter) -> Result<u64> {
        Ok(self.counters()?[hook as usize].get(c))
    }

    /// The checksum repair's outcome counts per hook.
    pub fn csum_counters(&self) -> Result<Vec<guard_user::guard::counters::CsumHookStats>> {
        let ebpf = self.ebpf.borrow();
        let map = ebpf
            .map(guard_common::CSUM_COUNTERS_MAP)
            .expect("csum counters");
        guard_user::guard::counters::csum_hook_stats(&PerCpuArray::try_from(map)?)
    }

    /// Sets the GSO guard's configuration.
    pub fn set_gso(&mut self, cfg: guard_common::GsoConfig) -> Result<()> {
        guard_user::guard::object::set_config(
            self.ebpf.get_mut(),
            guard_common::GSO_CONFIG_MAP,
            cfg,
        )
    }

    /// The GSO guard's outcome counts.
    pub fn gso_counters(&self) -> Result<[u64; guard_common::GsoOutcome::COUNT]> {
        let ebpf = self.ebpf.borrow();
        let map = ebpf
            .map(guard_common::GSO_COUNTERS_MAP)
            .expect("gso counters");
        guard_user::guard::counters::gso_stats(&PerCpuArray::try_from(map)?)
    }

    /// Sets the repair configuration.
    pub fn set_repair(&mut self, cfg: guard_common::CsumConfig) -> Result<()> {
        guard_user::guard::object::set_config(
            self.ebpf.get_mut(),
            guard_common::CSUM_CONFIG_MAP,
            cfg,
        )
    }
}

/// The `pktguard` binary under test (built by `cargo xtask test`).
pub fn pktguard_bin() -> PathBuf {
    std::env::var_os("PKTGUARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pktguard")
        })
}

/// A frame as trafgen's packet syntax: `{ 0x.., 0x.., ... }`.
pub fn trafgen_packet(frame: &[u8]) -> String {
    let bytes: Vec<String> = frame.iter().map(|b| format!("{b:#04x}")).collect();
    format!("{{ {} }}", bytes.join(", "))
}

/// Runs `pktguard ARGS` in namespace `ns` (nsenter keeps bpffs visible).
pub fn pktguard_in(ns: &Netns, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(pktguard_bin())
        .args(args);
    c
}

/// A `pktguard run` in the background, stopped (SIGTERM) when dropped.
/// How long `pktguard run` may take to say it runs. A bound, not a timing:
/// on the host it takes well under a second, but a TCG guest with one vCPU
/// busy with a test's connections verifies the programs several times
/// slower (the upgrade-under-traffic test on 5.10 needed over 20 s).
pub const START_LIMIT: Duration = Duration::from_secs(120);

pub struct Running {
    child: Child,
    pub output: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `pktguard run ARGS` in `ns` and waits until it says it runs.
    pub fn start(ns: &Netns, args: &[&str]) -> Result<Running> {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        Running::spawn(pktguard_in(ns, &all))
    }

    /// Starts `cmd` (a `pktguard run`, however wrapped) and waits until it
    /// says it runs.
    pub fn spawn(mut cmd: Command) -> Result<Running> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting pktguard run")?;
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut r = Running {
            child,
            output: Vec::new(),
            lines: rx,
        };
        let started = std::time::Instant::now();
        loop {
            match r
                .lines
                .recv_timeout(START_LIMIT.saturating_sub(started.elapsed()))
            {
                Ok(line) => {
                    let ready = line.contains("pktguard: running");
                    r.output.push(line);
                    if ready {
                        return Ok(r);
                    }
                }
                Err(_) => {
                    let _ = r.child.kill();
                    let status = r.child.wait()?;
                    r.output.extend(r.lines.try_iter());
                    bail!(
                        "pktguard run did not start ({status}):\n{}",
                        r.output.join("\n")
                    );
                }
            }
        }
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child (nsenter execs pktguard).
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// The next line it prints, within `wait` (kept in `output` too).
    pub fn next_line(&mut self, wait: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(wait).ok()?;
        self.output.push(line.clone());
        Some(line)
    }

    /// Sends `signal` and waits for the exit; returns the exit status and
    /// everything it printed.
    pub fn stop(mut self, signal: libc::c_int) -> Result<(std::process::ExitStatus, Vec<String>)> {
        // SAFETY: kill(2) on our own child. nsenter forwards the signal to pktguard.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_millis(50));
        self.output.extend(self.lines.try_iter());
        Ok((status, std::mem::take(&mut self.output)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = wait_timeout(&mut self.child, Duration::from_secs(10));
        }
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
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
        // SAFETY: valid fd and option value.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(RawTcp { fd, v6 })
    }

    /// Sends a TCP segment (header, options, payload; checksum included).
    pub fn send(&self, dst: std::net::IpAddr, segment: &[u8]) -> Result<()> {
        use std::os::fd::AsRawFd as _;
        let rc = match dst {
            std::net::IpAddr::V4(a) => {
                // SAFETY: zeroed sockaddr_in is valid; fields set below.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                // SAFETY: valid fd, buffer and address.
                unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        segment.as_ptr().cast(),
                        segment.len(),
                        0,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            std::net::IpAddr::V6(a) => {
                // SAFETY: zeroed sockaddr_in6 is valid; fields set below.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = a.octets();
                // SAFETY: valid fd, buffer and address.
                unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        segment.as_ptr().cast(),
                        segment.len(),
                        0,
                        (&sa as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
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

/// A counter from `pktguard stats --json`: `section` is "hooks" (the clamp)
/// or "csum" (the repair).
pub fn stats_counter(json: &str, iface: &str, section: &str, hook: &str, name: &str) -> u64 {
    let find = |s: &str, what: &str| -> usize {
        s.find(what)
            .unwrap_or_else(|| panic!("{what} not in stats: {json}"))
    };
    let rest = &json[find(json, &format!("\"iface\":\"{iface}\""))..];
    let rest = &rest[find(rest, &format!("\"{section}\":{{"))..];
    let rest = &rest[find(rest, &format!("\"{hook}\":{{"))..];
    let at = find(rest, &format!("\"{name}\":")) + name.len() + 3;
    rest[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a number")
}

/// `pktguard stats --json` run in `ns`.
pub fn stats_json(ns: &Netns) -> String {
    let out = pktguard_in(ns, &["stats", "--json"])
        .output()
        .expect("pktguard stats");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The rows of a BPF_PROG_TEST_RUN table: every row is checked, then all
/// failures are reported at once.
pub struct Table {
    prog: String,
    rows: usize,
    failures: Vec<String>,
}

impl Table {
    pub fn new(prog: &str) -> Table {
        Table {
            prog: prog.to_string(),
            rows: 0,
            failures: Vec::new(),
        }
    }

    /// One row: the program's verdict and output frame against the wanted
    /// ones, plus whatever else the caller found wrong.
    pub fn row(&mut self, name: &str, ran: &Ran, verdict: u32, out: &[u8], mut why: Vec<String>) {
        self.rows += 1;
        if ran.retval != verdict {
            why.insert(
                0,
                format!("verdict {} (want {})", ran.retval as i32, verdict as i32),
            );
        }
        if ran.out != out {
            why.insert(0, "output frame differs".to_string());
        }
        if !why.is_empty() {
            self.failures.push(format!("{name}: {}", why.join(", ")));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} rows failed:\n{}",
            self.prog,
            self.failures.len(),
            self.rows,
            self.failures.join("\n")
        );
    }
}

/// A `pktguard drops --json` in the background: every interval's JSON
/// document, parsed as a user's tooling would.
pub struct DropsWatch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl DropsWatch {
    /// Starts `pktguard drops --json --interval 200ms ARGS` in `ns` and waits
    /// for its first document (the monitor is attached from then on).
    pub fn start(ns: &Netns, args: &[&str]) -> Result<DropsWatch> {
        let mut all = vec!["drops", "--json", "--interval", "200ms"];
        all.extend_from_slice(args);
        let mut child = pktguard_in(ns, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting pktguard drops")?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let w = DropsWatch { child, lines: rx };
        w.lines
            .recv_timeout(Duration::from_secs(20))
            .context("pktguard drops printed nothing")?;
        Ok(w)
    }

    /// The first document (within `limit`) with a row that `pred` accepts;
    /// that row. Every document must parse.
    pub fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + limit;
        let mut last = String::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let doc: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("--json printed a line that does not parse: {line}"))?;
            let rows = doc["drops"]
                .as_array()
                .ok_or_else(|| anyhow!("no drops array in {line}"))?;
            if let Some(row) = rows.iter().find(|r| pred(r)) {
                return Ok(row.clone());
            }
            last = line;
        }
        bail!("no matching drop within {limit:?}; last document: {last}")
    }
}

impl Drop for DropsWatch {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child; nsenter forwards it.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = wait_timeout(&mut self.child, Duration::from_secs(10));
    }
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    guard_user::host::sys::kernel_version().is_ok_and(|v| v >= (major, minor))
}

/// TCX arrived in 6.6; before it TC programs are netlink (cls_bpf) filters.
pub fn has_tcx() -> bool {
    kernel_at_least(6, 6)
}

/// (attach point, program id, attachment id) of the TC programs on `dev`
/// in `ns`. With TCX: programs from BPF_PROG_QUERY, their link ids from
/// `bpftool link` (this bpftool names neither TCX links nor their
/// devices). Before TCX: cls_bpf filters from `tc filter show`, the
/// attachment id being the filter's priority and handle.
pub fn tc_programs(ns: &Netns, dev: &str) -> Vec<(String, u32, u64)> {
    use aya::programs::TcAttachType;
    let mut v = Vec::new();
    if !has_tcx() {
        for dir in ["ingress", "egress"] {
            let text = ns
                .exec(&["tc", "filter", "show", "dev", dev, dir])
                .unwrap_or_default();
            for line in text.lines().filter(|l| l.contains(" id ")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let after = |key: &str| {
                    words
                        .iter()
                        .position(|w| *w == key)
                        .and_then(|i| words.get(i + 1))
                        .copied()
                };
                let num = |w: Option<&str>| {
                    w.and_then(|w| match w.strip_prefix("0x") {
                        Some(hex) => u64::from_str_radix(hex, 16).ok(),
                        None => w.parse().ok(),
                    })
                    .unwrap_or(0)
                };
                let id = num(after("id")) as u32;
                let slot = (num(after("pref")) << 32) | num(after("handle"));
                v.push((dir.to_string(), id, slot));
            }
        }
        return v;
    }
    // bpftool fails when a link goes away while it lists (other tests run).
    let listing = (0..10)
        .find_map(|_| guard_user::lab::netns::cmd(&["bpftool", "link", "show", "-j"]).ok())
        .expect("bpftool link show");
    let links: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let link_of = |prog: u32| {
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["prog_id"].as_u64() == Some(prog as u64))
            .and_then(|l| l["id"].as_u64())
            .unwrap_or(0)
    };
    for (name, at) in [
        ("ingress", TcAttachType::Ingress),
        ("egress", TcAttachType::Egress),
    ] {
        let (_, progs) = ns
            .run(|| {
                Ok(SchedClassifier::query_tcx(
                    &guard_user::host::iface::ifname(dev)?,
                    at,
                )?)
            })
            .unwrap();
        for p in progs {
            v.push((name.to_string(), p.id(), link_of(p.id())));
        }
    }
    v
}
