//! `pktguard stats`: the counters of every guarded interface, read from the
//! pinned maps while `pktguard run` is running.

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use guard_common::{
    CsumOutcome, GsoOutcome, Hook, MssConfig, MssCounter, MssOutcome, PIN_CONFIG, PIN_COUNTERS,
    PIN_CSUM_COUNTERS, PIN_DIR, PIN_GSO_COUNTERS, RUN_DIR,
};

use crate::sys;

/// The counters of one hook of one interface, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookStats {
    pub hook: Hook,
    /// What the program counted: one outcome per packet.
    pub outcomes: [u64; MssOutcome::COUNT],
    /// The reported counters, derived from the outcomes.
    pub counters: [u64; MssCounter::COUNT],
}

impl HookStats {
    pub fn get(&self, c: MssCounter) -> u64 {
        self.counters[c as usize]
    }

    pub fn outcome(&self, o: MssOutcome) -> u64 {
        self.outcomes[o as usize]
    }
}

/// The checksum repair's outcome counts of one hook, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsumHookStats {
    pub hook: Hook,
    pub outcomes: [u64; CsumOutcome::COUNT],
}

impl CsumHookStats {
    pub fn get(&self, o: CsumOutcome) -> u64 {
        self.outcomes[o as usize]
    }

    /// VXLAN frames from the peer ranges: every outcome but `NotVxlan`.
    pub fn vxlan_seen(&self) -> u64 {
        self.outcomes.iter().sum::<u64>() - self.get(CsumOutcome::NotVxlan)
    }
}

pub fn csum_hook_stats<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<Vec<CsumHookStats>> {
    let mut hooks = Vec::new();
    for hook in Hook::ALL {
        let mut outcomes = [0u64; CsumOutcome::COUNT];
        for o in CsumOutcome::ALL {
            outcomes[o as usize] = counters.get(&o.index(hook), 0)?.iter().sum();
        }
        hooks.push(CsumHookStats { hook, outcomes });
    }
    Ok(hooks)
}

/// The GSO guard's outcome counts, summed over CPUs (TC ingress only).
pub fn gso_stats<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<[u64; GsoOutcome::COUNT]> {
    let mut outcomes = [0u64; GsoOutcome::COUNT];
    for o in GsoOutcome::ALL {
        outcomes[o as usize] = counters.get(&o.index(Hook::TcIngress), 0)?.iter().sum();
    }
    Ok(outcomes)
}

#[derive(Clone, Debug)]
pub struct IfaceStats {
    pub iface: String,
    /// Attach points in use, as `pktguard run` recorded them.
    pub attached: Vec<String>,
    pub mss_v4: u16,
    pub mss_v6: u16,
    pub hooks: Vec<HookStats>,
    /// Empty unless the guard repairs checksums.
    pub csum: Vec<CsumHookStats>,
    /// The GSO guard's outcomes, and its action ("drop"/"flag"), if on.
    pub gso: Option<([u64; GsoOutcome::COUNT], String)>,
}

impl IfaceStats {
    pub fn hook(&self, hook: Hook) -> Option<&HookStats> {
        self.hooks.iter().find(|h| h.hook == hook)
    }
}

/// Sums the per-CPU counters of every hook.
pub fn hook_stats<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<Vec<HookStats>> {
    let mut hooks = Vec::new();
    for hook in Hook::ALL {
        let mut outcomes = [0u64; MssOutcome::COUNT];
        for o in MssOutcome::ALL {
            outcomes[o as usize] = counters.get(&o.index(hook), 0)?.iter().sum();
        }
        hooks.push(HookStats {
            hook,
            outcomes,
            counters: MssCounter::from_outcomes(&outcomes),
        });
    }
    Ok(hooks)
}

/// Reads the counters of the interface whose pins are in `dir`.
pub fn read_dir(dir: &Path, iface: &str, key: &str) -> Result<IfaceStats> {
    let counters = MapData::from_pin(dir.join(PIN_COUNTERS))
        .with_context(|| format!("opening {}", dir.join(PIN_COUNTERS).display()))?;
    let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(Map::PerCpuArray(counters))?;
    let hooks = hook_stats(&counters)?;
    let csum = match MapData::from_pin(dir.join(PIN_CSUM_COUNTERS)) {
        Ok(m) => csum_hook_stats(&PerCpuArray::try_from(Map::PerCpuArray(m))?)?,
        Err(_) => Vec::new(),
    };
    let gso = match MapData::from_pin(dir.join(PIN_GSO_COUNTERS)) {
        Ok(m) => Some(gso_stats(&PerCpuArray::try_from(Map::PerCpuArray(m))?)?),
        Err(_) => None,
    };
    let config = MapData::from_pin(dir.join(PIN_CONFIG))?;
    let config: Array<_, MssConfig> = Array::try_from(Map::Array(config))?;
    let cfg = config.get(&0, 0)?;
    let state =
        fs::read_to_string(Path::new(RUN_DIR).join(format!("{key}.lock"))).unwrap_or_default();
    let attached = state
        .lines()
        .find_map(|l| l.strip_prefix("hooks="))
        .map(|h| {
            h.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(IfaceStats {
        iface: iface.to_string(),
        attached,
        mss_v4: cfg.mss_v4,
        mss_v6: cfg.mss_v6,
        hooks,
        csum,
        gso: gso.map(|g| {
            let action = state
                .lines()
                .find_map(|l| l.strip_prefix("gso="))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            (g, action)
        }),
    })
}

/// Every interface guarded in this network namespace, or just `only`.
pub fn collect(only: Option<&str>) -> Result<Vec<IfaceStats>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(PIN_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {PIN_DIR}")),
    };
    let suffix = sys::iface_key("")?;
    for entry in entries {
        let entry = entry?;
        let key = entry.file_name().to_string_lossy().into_owned();
        let Some(iface) = sys::iface_of_key(&key, &suffix) else {
            continue;
        };
        if only.is_some_and(|o| o != iface) {
            continue;
        }
        out.push(read_dir(&entry.path(), &iface, &key)?);
    }
    out.sort_by(|a, b| a.iface.cmp(&b.iface));
    Ok(out)
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
            for o in &CsumOutcome::ALL[1..] {
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
                for o in &CsumOutcome::ALL[1..] {
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

/// A JSON string literal (interface names may hold any byte but '/', ':'
/// and white space).
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
                        CsumOutcome::ALL[1..]
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
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("eth0"), "\"eth0\"");
        assert_eq!(json_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }

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
