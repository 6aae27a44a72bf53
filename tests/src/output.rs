//! What pktguard prints, read as a user's tooling would: counters from
//! `pktguard stats --json`, lines of `pktguard events --json`, documents
//! from `pktguard drops --json`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use guard_user::lab::netns::Netns;

use crate::daemon::{pktguard_in, run_ok, wait_timeout};

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
    let out = run_ok(&mut pktguard_in(ns, &["stats", "--json"]), "pktguard stats");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `pktguard events --json --count COUNT` started in `ns`, once it has said
/// on stderr that it listens (its first line, returned): the events of
/// what the caller does next are all in its output.
pub fn events_json(ns: &Netns, count: u32) -> (Child, String) {
    let mut events = pktguard_in(ns, &["events", "--json", "--count", &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pktguard events");
    let mut err = BufReader::new(events.stderr.take().expect("piped stderr"));
    let mut first = String::new();
    err.read_line(&mut first)
        .expect("pktguard events' first line");
    (events, first)
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
