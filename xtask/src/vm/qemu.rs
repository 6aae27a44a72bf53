//! One qemu boot under TCG: its console watched for stalls, and the
//! libtest summaries in it tallied.

use super::*;

/// How a guest's run ended when it did not end by itself.
#[derive(Debug)]
pub enum Stuck {
    /// No console output for STALL_LIMIT.
    Stalled,
    /// Still printing at BOOT_LIMIT.
    OutOfTime,
}

/// One guest's console, with how it ended.
pub struct Console {
    pub text: String,
    pub stuck: Option<Stuck>,
}

/// The last test (or VMTEST step) a console shows, for a guest that did not
/// finish: the test that hung, or how far a slow guest got.
pub fn last_step(console: &str) -> Option<&str> {
    console
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("test ") || l.starts_with("VMTEST "))
}

/// One guest of the matrix: a kernel and its initramfs.
pub struct Guest<'a> {
    pub name: &'a str,
    pub source: Source,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

/// Boots every guest, no more at once than the machine has CPUs (each is
/// one TCG thread: more would only share the CPUs and stretch every guest
/// towards its limits); each guest's console goes to
/// `console-NAME.log`. Returns each guest with its console and how long it
/// ran, in the order given.
pub(crate) fn boot_all<'g, 'a>(
    vm: &Path,
    guests: &'g [Guest<'a>],
) -> Vec<(&'g Guest<'a>, Result<Console>, Duration)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..cpus.min(guests.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(g) = guests.get(i) else { break };
                    println!("== kernel {}: booting ({})", g.name, g.source);
                    let log = vm.join(format!("console-{}.log", g.name));
                    let started = Instant::now();
                    let console = boot(&g.vmlinuz, &g.initrd, &log);
                    done.lock().expect("no guest thread panics").push((
                        i,
                        console,
                        started.elapsed(),
                    ));
                }
            });
        }
    });
    let mut done = done.into_inner().expect("no guest thread panics");
    done.sort_by_key(|(i, _, _)| *i);
    done.into_iter()
        .map(|(i, c, took)| (&guests[i], c, took))
        .collect()
}

/// Boots `vmlinuz` with `initrd` under TCG, writing the console to `log`
/// line by line as it comes (kept when the guest is stuck or killed).
pub(crate) fn boot(vmlinuz: &Path, initrd: &Path, log: &Path) -> Result<Console> {
    use std::io::{BufRead as _, Write as _};
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max,-cx16",
            "-m",
            "512M",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 oops=panic quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64 (qemu-system-x86: cargo xtask setup)")?;
    let stdout = child.stdout.take().expect("piped");
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        // The serial console ends lines with CR LF.
        for line in std::io::BufReader::new(stdout)
            .split(b'\n')
            .map_while(Result::ok)
        {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let _ = writeln!(file, "{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut text = String::new();
    let mut last_output = Instant::now();
    let stuck = loop {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                last_output = Instant::now();
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if last_output.elapsed() > STALL_LIMIT {
            break Some(Stuck::Stalled);
        }
        if started.elapsed() > BOOT_LIMIT {
            break Some(Stuck::OutOfTime);
        }
    };
    if stuck.is_some() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = reader.join();
    while let Ok(line) = lines.try_recv() {
        text.push_str(&line);
        text.push('\n');
    }
    Ok(Console { text, stuck })
}

/// (passed, failed) of one guest's run, from libtest's summary lines; an
/// incomplete run (no `VMTEST done`) is a failure.
pub fn tally(console: &str, binaries: usize) -> (u32, u32) {
    let (mut passed, mut failed) = (0, 0);
    // Failures counted since the binary started: one that exits non-zero
    // without a failed test (a crash, or killed by its time limit) is one.
    let mut failed_here = 0;
    let mut exits = 0;
    for line in console.lines() {
        if let Some(rest) = line.split("test result: ").nth(1) {
            let num = |key: &str| -> u32 {
                rest.split(';')
                    .find(|p| p.contains(key))
                    .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
                    .unwrap_or(0)
            };
            passed += num("passed");
            failed += num("failed");
            failed_here += num("failed");
        } else if let Some(code) = line
            .strip_prefix("VMTEST ")
            .and_then(|l| l.split(" exit ").nth(1))
        {
            exits += 1;
            if code.trim() != "0" && failed_here == 0 {
                failed += 1;
            }
            failed_here = 0;
        }
    }
    if !console.contains("VMTEST done") || exits < binaries {
        failed += 1;
    }
    (passed, failed)
}
