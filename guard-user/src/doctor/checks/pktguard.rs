//! pktguard itself: which guards run, which are pinned without a daemon,
//! which left stale state, and whether the drop monitor runs.

use super::guard::guard_states;
use crate::doctor::{Check, Host, Status};

/// This check before it has looked.
pub(in crate::doctor) fn blank() -> Check {
    Check::new("pktguard", None, "pktguard on this host")
}

/// pktguard itself: what runs where.
pub(in crate::doctor) fn check(host: &dyn Host) -> Check {
    let mut c = blank();
    let gs = guard_states(host);
    let mut stale = 0;
    let mut pinned = 0;
    for g in &gs {
        let (key, s) = (&g.key, &g.state);
        if !g.attached() {
            stale += 1;
            c.evidence
                .push(format!("{key}: state left by a pktguard that was killed"));
            continue;
        }
        let who = if g.running {
            format!("pid {}", s.pid.map_or("?".to_string(), |p| p.to_string()))
        } else {
            pinned += 1;
            "pinned, no daemon: `pktguard run --persist` adopts it, `pktguard detach` removes it"
                .to_string()
        };
        let mut what = vec![format!("{key}: {} ({who})", s.hooks.join(","))];
        if let Some((v4, v6)) = s.mss {
            what.push(format!("MSS clamp {v4}/{v6}"));
        }
        if let Some(r) = &s.repair {
            what.push(format!("repair {r}"));
        }
        if let Some(g) = &s.gso {
            what.push(format!("gso guard {g}"));
        }
        c.evidence.push(what.join(", "));
    }
    if host.lock_held(guard_common::DROPS_LOCK) {
        c.evidence
            .push("drop monitor running (pktguard run --drop-monitor)".to_string());
    }
    let running = gs.iter().filter(|g| g.running).count() + pinned;
    if stale > 0 {
        c.fix.push(format!(
            "rm {}/<iface>.lock   # or start pktguard run on it again, which cleans up",
            guard_common::RUN_DIR
        ));
        return c.set(Status::Warn, format!("{running} running, {stale} stale"));
    }
    if running == 0 {
        c.evidence
            .push("`pktguard stats` shows counters while one runs".to_string());
        return c.set(Status::Ok, "no pktguard runs on this host");
    }
    c.evidence.extend(host.guard_counters());
    c.evidence.push("all counters: pktguard stats".to_string());
    c.set(Status::Ok, format!("{running} interface(s) guarded"))
}
