//! Incident 5: rules in both iptables backends at once, each tool seeing
//! half the rule set.

use super::iptables_saves;
use crate::doctor::{Check, Host, Status};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new(
        "iptables_backends",
        Some(5),
        "iptables legacy vs nft backends",
    )
}

fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Incident 5: rules in both iptables backends at once.
pub(in crate::doctor) fn check(host: &dyn Host) -> Check {
    let c = blank();
    let (sets, notes) = iptables_saves(host);
    if sets.len() < 2 {
        return c.set(Status::Skipped, notes.join("; "));
    }
    let mut c = c;
    let (legacy, nft) = (count_rules(&sets[0].1), count_rules(&sets[1].1));
    c.evidence.push(format!(
        "legacy backend: {legacy} rules; nft backend: {nft} rules"
    ));
    if legacy > 0 && nft > 0 {
        c.fix.push(
            "make every component use one backend (update-alternatives --set iptables /usr/sbin/iptables-nft), \
             then move the other's rules: iptables-legacy-save > legacy.rules; iptables-legacy -F; iptables-legacy -X"
                .to_string(),
        );
        return c.set(
            Status::Fail,
            "rules in both backends: each tool sees half the rule set (incident 5)",
        );
    }
    c.set(Status::Ok, "one backend in use")
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_save_parsing() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-DROP - [0:0]\n-A INPUT -j KUBE-SERVICES\nCOMMIT\n";
        assert_eq!(count_rules(save), 1);
    }
}
