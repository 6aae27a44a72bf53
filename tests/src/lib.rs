//! Helpers of the privileged tests: the compiled programs under
//! BPF_PROG_TEST_RUN, and `pktguard run` as a user starts it.

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
    maps::{Array, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use guard_common::{Hook, LinkKind, MSS_CONFIG_MAP, MSS_COUNTERS_MAP, MssConfig, MssCounter};
use guard_user::{netns::Netns, stats::HookStats};

/// The guard's object loaded (not attached), for BPF_PROG_TEST_RUN.
pub struct Loaded {
    pub ebpf: Ebpf,
}

/// What a program did with one frame.
pub struct Ran {
    pub retval: u32,
    pub out: Vec<u8>,
    pub duration: Duration,
}

impl Loaded {
    pub fn new(cfg: MssConfig, link: LinkKind) -> Result<Loaded> {
        let mut ebpf = guard_user::loader::load(link)?;
        for name in [guard_common::PROG_XDP, guard_common::PROG_BENCH_EMPTY_XDP] {
            let p: &mut Xdp = ebpf.program_mut(name).expect("xdp program").try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        for name in [
            guard_common::PROG_TC_INGRESS,
            guard_common::PROG_TC_EGRESS,
            guard_common::PROG_BENCH_EMPTY_TC,
        ] {
            let p: &mut SchedClassifier = ebpf.program_mut(name).expect("tc program").try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let mut loaded = Loaded { ebpf };
        loaded.set_config(cfg)?;
        Ok(loaded)
    }

    /// Changes the clamp of the loaded programs.
    pub fn set_config(&mut self, cfg: MssConfig) -> Result<()> {
        let mut config: Array<_, MssConfig> =
            Array::try_from(self.ebpf.map_mut(MSS_CONFIG_MAP).expect("config map"))?;
        config.set(0, cfg, 0)?;
        Ok(())
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
        let prog = self
            .ebpf
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

    pub fn counters(&self) -> Result<Vec<HookStats>> {
        let map = self.ebpf.map(MSS_COUNTERS_MAP).expect("counter map");
        guard_user::stats::hook_stats(&PerCpuArray::try_from(map)?)
    }

    pub fn counter(&self, hook: Hook, c: MssCounter) -> Result<u64> {
        Ok(self.counters()?[hook as usize].get(c))
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
        let mut child = pktguard_in(ns, &all)
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
        loop {
            match r.lines.recv_timeout(Duration::from_secs(20)) {
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
