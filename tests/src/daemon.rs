//! `pktguard` as a user starts it: the binary under test, run in a
//! namespace, and `pktguard run` in the background until dropped.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use guard_user::lab::netns::Netns;

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

/// Runs `cmd` (`what` names it in a panic) and asserts that it exits 0;
/// a failure shows its stderr and stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
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

    /// Stops it with SIGTERM as an operator would, asserts that it exited
    /// cleanly, and returns what it printed.
    pub fn stop_ok(self) -> Vec<String> {
        let (status, output) = self.stop(libc::SIGTERM).expect("stopping pktguard run");
        assert!(status.success(), "pktguard run exited {status}: {output:?}");
        output
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

pub(crate) fn wait_timeout(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
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
