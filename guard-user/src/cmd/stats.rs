//! `pktguard stats`: the counters of every guarded interface, read from the
//! pinned maps while `pktguard run` is running, as a table or JSON.

use anyhow::{Result, bail};
use clap::Args;
use guard_common::{GsoOutcome, Hook, MssCounter, RepairOutcome};

use super::json_str;
use crate::guard::counters::{self, IfaceStats};

#[derive(Args)]
pub struct StatsArgs {
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this interface.
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
}

pub fn run(args: StatsArgs) -> Result<()> {
    let all = counters::collect(args.iface.as_deref())?;
    if let Some(iface) = &args.iface
        && all.is_empty()
    {
        bail!("{iface} is not guarded in this network namespace");
    }
    if args.json {
        print!("{}", render_json(&all));
    } else {
        print!("{}", render_table(&all));
    }
    Ok(())
}

pub fn render_table(stats: &[IfaceStats]) -> String {
    let mut s = String::new();
    if stats.is_empty() {
        s.push_str(
            "no interface is guarded in this network namespace (start one with `pktguard run`)\n",
        );
        return s;
    }
    s.push_str(&format!("{:<16} {:<12}", "IFACE", "HOOK"));
    for c in MssCounter::ALL {
        s.push_str(&format!(" {:>13}", c.name()));
    }
    s.push('\n');
    for i in stats {
        let clamp_on = i.mss_v4 != 0 || i.mss_v6 != 0;
        for h in &i.hooks {
            let attached = clamp_on && i.attached.iter().any(|a| hook_matches(a, h.hook));
            if !attached && h.counters.iter().all(|c| *c == 0) {
                continue;
            }
            s.push_str(&format!("{:<16} {:<12}", i.iface, h.hook.name()));
            for c in h.counters {
                s.push_str(&format!(" {c:>13}"));
            }
            s.push('\n');
        }
        if !i.csum.is_empty() {
            s.push_str(&format!("{:<16} {:<12} {:>10}", "", "REPAIR", "vxlan_seen"));
            for o in &RepairOutcome::ALL[1..] {
                s.push_str(&format!(" {:>22}", o.name()));
            }
            s.push('\n');
            for h in &i.csum {
                if h.hook == Hook::TcEgress {
                    continue;
                }
                let attached = i.attached.iter().any(|a| hook_matches(a, h.hook));
                if !attached && h.vxlan_seen() == 0 {
                    continue;
                }
                s.push_str(&format!(
                    "{:<16} {:<12} {:>10}",
                    i.iface,
                    h.hook.name(),
                    h.vxlan_seen()
                ));
                for o in &RepairOutcome::ALL[1..] {
                    s.push_str(&format!(" {:>22}", h.get(*o)));
                }
                s.push('\n');
            }
        }
        if let Some((g, action)) = &i.gso {
            let seen: u64 = g.iter().sum::<u64>() - g[GsoOutcome::NotGso as usize];
            s.push_str(&format!("{:<16} {:<12} {:>10}", "", "GSO", "gso_seen"));
            for o in &GsoOutcome::ALL[1..] {
                s.push_str(&format!(" {:>18}", o.name()));
            }
            s.push('\n');
            s.push_str(&format!("{:<16} {:<12} {seen:>10}", i.iface, action));
            for o in &GsoOutcome::ALL[1..] {
                s.push_str(&format!(" {:>18}", g[*o as usize]));
            }
            s.push('\n');
        }
        let clamp = if clamp_on {
            format!("IPv4 MSS <= {}, IPv6 MSS <= {}", i.mss_v4, i.mss_v6)
        } else {
            "off".to_string()
        };
        s.push_str(&format!(
            "{:<16} clamp: {clamp}; attached: {}\n",
            i.iface,
            if i.attached.is_empty() {
                "-".to_string()
            } else {
                i.attached.join(", ")
            }
        ));
    }
    s
}

/// One JSON document: `{"interfaces":[{"iface":..,"hooks":{..}}]}`.
pub fn render_json(stats: &[IfaceStats]) -> String {
    let ifaces: Vec<String> = stats
        .iter()
        .map(|i| {
            let hooks: Vec<String> = i
                .hooks
                .iter()
                .map(|h| {
                    let fields: Vec<String> = MssCounter::ALL
                        .iter()
                        .map(|c| format!("\"{}\":{}", c.name(), h.get(*c)))
                        .collect();
                    format!("\"{}\":{{{}}}", h.hook.name(), fields.join(","))
                })
                .collect();
            let attached: Vec<String> = i.attached.iter().map(|a| json_str(a)).collect();
            let csum: Vec<String> = i
                .csum
                .iter()
                .map(|h| {
                    let mut fields = vec![format!("\"vxlan_seen\":{}", h.vxlan_seen())];
                    fields.extend(
                        RepairOutcome::ALL[1..]
                            .iter()
                            .map(|o| format!("\"{}\":{}", o.name(), h.get(*o))),
                    );
                    format!("\"{}\":{{{}}}", h.hook.name(), fields.join(","))
                })
                .collect();
            let gso = match &i.gso {
                Some((g, action)) => {
                    let mut fields = vec![
                        format!("\"action\":{}", json_str(action)),
                        format!(
                            "\"gso_seen\":{}",
                            g.iter().sum::<u64>() - g[GsoOutcome::NotGso as usize]
                        ),
                    ];
                    fields.extend(
                        GsoOutcome::ALL[1..]
                            .iter()
                            .map(|o| format!("\"{}\":{}", o.name(), g[*o as usize])),
                    );
                    format!("{{{}}}", fields.join(","))
                }
                None => "null".to_string(),
            };
            format!(
                "{{\"iface\":{},\"attached\":[{}],\"mss_v4\":{},\"mss_v6\":{},\"hooks\":{{{}}},\"csum\":{{{}}},\"gso\":{}}}",
                json_str(&i.iface),
                attached.join(","),
                i.mss_v4,
                i.mss_v6,
                hooks.join(","),
                csum.join(","),
                gso
            )
        })
        .collect();
    format!("{{\"interfaces\":[{}]}}\n", ifaces.join(","))
}

/// Whether an attachment name recorded by `run` feeds this hook's counters.
fn hook_matches(attachment: &str, hook: Hook) -> bool {
    match hook {
        Hook::XdpIngress => attachment.starts_with("xdp"),
        Hook::TcIngress => attachment == "tc-ingress",
        Hook::TcEgress => attachment == "tc-egress",
    }
}

#[cfg(test)]
mod tests {
    use guard_common::MssOutcome;

    use super::*;
    use crate::guard::counters::HookStats;

    #[test]
    fn json_has_every_counter_of_every_hook() {
        let outcomes = [1u64; MssOutcome::COUNT];
        let s = IfaceStats {
            iface: "n0".into(),
            attached: vec!["tc-ingress".into()],
            mss_v4: 1400,
            mss_v6: 1380,
            hooks: Hook::ALL
                .iter()
                .map(|h| HookStats {
                    hook: *h,
                    outcomes,
                    counters: MssCounter::from_outcomes(&outcomes),
                })
                .collect(),
            csum: Vec::new(),
            gso: None,
        };
        let json = render_json(&[s]);
        assert!(
            json.starts_with("{\"interfaces\":[{\"iface\":\"n0\""),
            "{json}"
        );
        assert_eq!(json.matches("\"seen\":9").count(), Hook::COUNT, "{json}");
        assert_eq!(json.matches("\"syn\":6").count(), Hook::COUNT, "{json}");
    }
}
