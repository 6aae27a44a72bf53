//! Incident 5: kube-proxy chains without KUBE-MARK-DROP, which kube-proxy
//! before 1.16 in IPVS mode needs from kubelet.

use super::iptables_saves;
use crate::doctor::{Check, Host, Status};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new(
        "kube_mark_drop",
        Some(5),
        "KUBE-* chains without KUBE-MARK-DROP",
    )
}

fn kube_chains(save: &str) -> Vec<&str> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with("KUBE-"))
        .collect()
}

/// Incident 5: kube-proxy chains without KUBE-MARK-DROP.
pub(in crate::doctor) fn check(host: &dyn Host) -> Check {
    let c = blank();
    let (sets, notes) = iptables_saves(host);
    if sets.is_empty() {
        return c.set(Status::Skipped, notes.join("; "));
    }
    let mut c = c;
    c.evidence.extend(notes);
    let mut missing = Vec::new();
    let has_mark = |out: &str| kube_chains(out).contains(&"KUBE-MARK-DROP");
    for (what, out) in &sets {
        let chains = kube_chains(out);
        if chains.is_empty() {
            continue;
        }
        let mark = has_mark(out);
        c.evidence.push(format!(
            "{what}: {} KUBE-* chains, KUBE-MARK-DROP {}",
            chains.len(),
            if mark { "present" } else { "missing" }
        ));
        if !mark {
            missing.push(what.clone());
        }
    }
    if c.evidence.iter().all(|e| !e.contains("KUBE-* chains")) {
        return c.set(Status::Ok, "no kube-proxy chains");
    }
    if missing.is_empty() {
        return c.set(Status::Ok, "KUBE-MARK-DROP present");
    }
    if sets.iter().any(|(_, out)| has_mark(out)) {
        c.evidence.push(
            "KUBE-MARK-DROP exists in the other backend: the rule sets are split".to_string(),
        );
    }
    c.fix.push(
        "run kube-proxy and kubelet on the same iptables backend; kube-proxy < 1.16 in IPVS mode needs KUBE-MARK-DROP (kubelet makes it)"
            .to_string(),
    );
    c.set(
        Status::Warn,
        format!(
            "KUBE-* chains without KUBE-MARK-DROP in {} (Service VIPs unreachable with kube-proxy < 1.16 IPVS; harmless on 1.28+)",
            missing.join(", ")
        ),
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_save_parsing() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-DROP - [0:0]\n-A INPUT -j KUBE-SERVICES\nCOMMIT\n";
        assert_eq!(kube_chains(save), ["KUBE-SERVICES", "KUBE-MARK-DROP"]);
    }
}
