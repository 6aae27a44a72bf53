//! One file per check, each `check(host, ...)` plus its `blank()` (id,
//! incident, title) for when it cannot run; and what several checks read.

pub(super) mod guard;
pub(super) mod iptables_backends;
pub(super) mod kube_mark_drop;
pub(super) mod lro;
pub(super) mod pktguard;
pub(super) mod route_cache;
pub(super) mod tunnel_mtu;
pub(super) mod vxlan_csum;

use super::Host;

/// Both iptables backends' rule sets, as their save tools print them.
const IPTABLES_SAVES: [&[&str]; 2] = [&["iptables-legacy-save"], &["iptables-nft-save"]];

/// Outputs of the tools that exist: (what, output).
fn rulesets(host: &dyn Host, tools: &[&[&str]]) -> (Vec<(String, String)>, Vec<String>) {
    let (mut found, mut notes) = (Vec::new(), Vec::new());
    for args in tools {
        match host.command(args) {
            Ok(Some(out)) => found.push((args.join(" "), out)),
            Ok(None) => notes.push(format!("{} not installed", args[0])),
            Err(e) => notes.push(format!("{e:#}")),
        }
    }
    (found, notes)
}

/// [`rulesets`] of [`IPTABLES_SAVES`]: legacy first, then nft.
fn iptables_saves(host: &dyn Host) -> (Vec<(String, String)>, Vec<String>) {
    rulesets(host, &IPTABLES_SAVES)
}
