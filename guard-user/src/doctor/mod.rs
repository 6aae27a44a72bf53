//! `pktguard doctor`: the host settings behind each incident, checked.
//! Every check reads through a [`Host`] (the live machine or a fixture
//! tree), says ok / warn / fail / skipped, shows the evidence it read and
//! the exact command that fixes what it found. `--fix` applies the safe
//! fixes (offload toggles) and says what it changed.

mod checks;
pub use checks::vxlan_csum::has_nat_csum_fix;
pub mod host;
pub mod proc;

use anyhow::Result;

use crate::cmd::json_str;
use checks::{
    iptables_backends, kube_mark_drop, lro, pktguard, route_cache, tunnel_mtu, vxlan_csum,
};
pub use host::{Fixture, Host, Live, Overlay};
use proc::{OSRELEASE, read_trim};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Skipped,
    Warn,
    Fail,
}

impl Status {
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
    }
}

/// A change `--fix` may make: turn an offload feature off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    pub iface: String,
    /// The kernel's feature name.
    pub feature: String,
    /// The same as an `ethtool -K` command.
    pub command: String,
}

/// The result of one check.
#[derive(Clone, Debug)]
pub struct Check {
    pub id: &'static str,
    pub incident: Option<u8>,
    pub title: &'static str,
    pub status: Status,
    /// One line: what was found (or why skipped).
    pub summary: String,
    /// What was read.
    pub evidence: Vec<String>,
    /// Commands that fix it (for the operator to run, or `--fix`).
    pub fix: Vec<String>,
    pub fixes: Vec<Fix>,
}

impl Check {
    fn new(id: &'static str, incident: Option<u8>, title: &'static str) -> Check {
        Check {
            id,
            incident,
            title,
            status: Status::Ok,
            summary: String::new(),
            evidence: Vec::new(),
            fix: Vec::new(),
            fixes: Vec::new(),
        }
    }

    fn set(mut self, status: Status, summary: impl Into<String>) -> Check {
        self.status = status;
        self.summary = summary.into();
        self
    }
}

/// Every check, in incident order.
pub fn run_checks(host: &dyn Host) -> Vec<Check> {
    let links = host.links();
    let no_links = |blank: Check, e: &anyhow::Error| {
        blank.set(Status::Skipped, format!("cannot list interfaces: {e:#}"))
    };
    let mut checks = Vec::new();
    match &links {
        Ok(l) => checks.push(lro::check(host, l)),
        Err(e) => checks.push(no_links(lro::blank(), e)),
    }
    checks.push(route_cache::check(host));
    match &links {
        Ok(l) => {
            checks.push(tunnel_mtu::check(host, l));
            checks.push(vxlan_csum::check(host, l));
        }
        Err(e) => {
            checks.push(no_links(tunnel_mtu::blank(), e));
            checks.push(no_links(vxlan_csum::blank(), e));
        }
    }
    checks.push(iptables_backends::check(host));
    checks.push(kube_mark_drop::check(host));
    checks.push(pktguard::check(host));
    checks
}

/// Applies the safe fixes of `checks`; returns what changed and what failed.
pub fn apply_fixes(host: &dyn Host, checks: &[Check]) -> (Vec<String>, Vec<String>) {
    let (mut changed, mut failed) = (Vec::new(), Vec::new());
    for fix in checks.iter().flat_map(|c| &c.fixes) {
        match host.set_feature(&fix.iface, &fix.feature, false) {
            Ok(()) => changed.push(fix.command.clone()),
            Err(e) => failed.push(format!("{}: {e:#}", fix.command)),
        }
    }
    (changed, failed)
}

pub fn render_text(
    kernel: &str,
    checks: &[Check],
    changed: &[String],
    failed: &[String],
) -> String {
    let mut out = format!("pktguard doctor: kernel {kernel}\n");
    for c in checks {
        let incident = c
            .incident
            .map_or("          ".to_string(), |i| format!("incident {i}"));
        out.push_str(&format!(
            "{:<8} {incident}  {}: {}\n",
            format!("[{}]", c.status.name()),
            c.title,
            c.summary
        ));
        for e in &c.evidence {
            out.push_str(&format!("{:21}- {e}\n", ""));
        }
        for f in &c.fix {
            out.push_str(&format!("{:21}fix: {f}\n", ""));
        }
    }
    for ch in changed {
        out.push_str(&format!("changed: {ch}\n"));
    }
    for f in failed {
        out.push_str(&format!("could not fix: {f}\n"));
    }
    let n = |s| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "summary: {} ok, {} warn, {} fail, {} skipped\n",
        n(Status::Ok),
        n(Status::Warn),
        n(Status::Fail),
        n(Status::Skipped)
    ));
    out
}

pub fn render_json(
    kernel: &str,
    checks: &[Check],
    changed: &[String],
    failed: &[String],
) -> String {
    let list = |v: &[String]| v.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",");
    let items: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{{\"id\":{},\"incident\":{},\"title\":{},\"status\":{},\"summary\":{},\"evidence\":[{}],\"fix\":[{}]}}",
                json_str(c.id),
                c.incident.map_or("null".to_string(), |i| i.to_string()),
                json_str(c.title),
                json_str(c.status.name()),
                json_str(&c.summary),
                list(&c.evidence),
                list(&c.fix)
            )
        })
        .collect();
    format!(
        "{{\"kernel\":{},\"checks\":[{}],\"changed\":[{}],\"fix_failed\":[{}]}}\n",
        json_str(kernel),
        items.join(","),
        list(changed),
        list(failed)
    )
}

/// `pktguard doctor`: runs the checks on `host`, applies the fixes with
/// `fix` (then checks again), prints, and returns whether any check failed.
pub fn doctor(host: &dyn Host, json: bool, fix: bool) -> Result<bool> {
    let kernel = read_trim(host, OSRELEASE).unwrap_or_else(|| "?".into());
    let mut checks = run_checks(host);
    let (mut changed, mut failed) = (Vec::new(), Vec::new());
    if fix {
        (changed, failed) = apply_fixes(host, &checks);
        if !changed.is_empty() {
            checks = run_checks(host);
        }
    }
    if json {
        print!("{}", render_json(&kernel, &checks, &changed, &failed));
    } else {
        print!("{}", render_text(&kernel, &checks, &changed, &failed));
        if !fix && checks.iter().any(|c| !c.fixes.is_empty()) {
            println!("`pktguard doctor --fix` applies the offload changes above");
        }
    }
    Ok(checks.iter().any(|c| c.status == Status::Fail) || !failed.is_empty())
}
