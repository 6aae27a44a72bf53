//! The guards' counters, summed over CPUs: from a running guard's maps, or
//! from the maps pinned by the guards of this network namespace.

use std::{borrow::Borrow, path::Path};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use guard_common::{
    CSUM_COUNTERS_MAP, GSO_COUNTERS_MAP, GsoOutcome, Hook, MSS_COUNTERS_MAP, MssConfig, MssCounter,
    MssOutcome, PIN_CONFIG, PIN_COUNTERS, PIN_CSUM_COUNTERS, PIN_GSO_COUNTERS, RepairOutcome,
};

use super::Guard;
use crate::state::{self, RunState};

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
pub struct RepairHookStats {
    pub hook: Hook,
    pub outcomes: [u64; RepairOutcome::COUNT],
}

impl RepairHookStats {
    pub fn get(&self, o: RepairOutcome) -> u64 {
        self.outcomes[o as usize]
    }

    /// VXLAN frames from the peer ranges: every outcome but `NotVxlan`.
    pub fn vxlan_seen(&self) -> u64 {
        self.outcomes.iter().sum::<u64>() - self.get(RepairOutcome::NotVxlan)
    }
}

/// `out[slot]` = the sum over CPUs of entry `index`, for each (slot, index).
fn sum_into<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
    out: &mut [u64],
    entries: impl Iterator<Item = (usize, u32)>,
) -> Result<()> {
    for (slot, index) in entries {
        out[slot] = counters.get(&index, 0)?.iter().sum();
    }
    Ok(())
}

pub fn repair_hook_stats<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<Vec<RepairHookStats>> {
    let mut hooks = Vec::new();
    for hook in Hook::ALL {
        let mut outcomes = [0u64; RepairOutcome::COUNT];
        let entries = RepairOutcome::ALL
            .iter()
            .map(|o| (*o as usize, o.index(hook)));
        sum_into(counters, &mut outcomes, entries)?;
        hooks.push(RepairHookStats { hook, outcomes });
    }
    Ok(hooks)
}

/// The GSO guard's outcome counts, summed over CPUs (TC ingress only).
pub fn gso_stats<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<[u64; GsoOutcome::COUNT]> {
    let mut outcomes = [0u64; GsoOutcome::COUNT];
    let entries = GsoOutcome::ALL
        .iter()
        .map(|o| (*o as usize, o.index(Hook::TcIngress)));
    sum_into(counters, &mut outcomes, entries)?;
    Ok(outcomes)
}

/// Sums the per-CPU counters of every hook.
pub fn hook_stats<T: Borrow<MapData>>(counters: &PerCpuArray<T, u64>) -> Result<Vec<HookStats>> {
    let mut hooks = Vec::new();
    for hook in Hook::ALL {
        let mut outcomes = [0u64; MssOutcome::COUNT];
        let entries = MssOutcome::ALL.iter().map(|o| (*o as usize, o.index(hook)));
        sum_into(counters, &mut outcomes, entries)?;
        hooks.push(HookStats {
            hook,
            outcomes,
            counters: MssCounter::from_outcomes(&outcomes),
        });
    }
    Ok(hooks)
}

impl Guard {
    /// The repair's outcome counts per hook (empty without --csum-repair).
    pub fn repair_counters(&self) -> Result<Vec<RepairHookStats>> {
        let Some(map) = self.ebpf.as_ref().and_then(|e| e.map(CSUM_COUNTERS_MAP)) else {
            return Ok(Vec::new());
        };
        repair_hook_stats(&PerCpuArray::try_from(map)?)
    }

    /// The GSO guard's outcome counts (empty without --gso-guard).
    pub fn gso_counters(&self) -> Result<[u64; GsoOutcome::COUNT]> {
        let Some(map) = self.ebpf.as_ref().and_then(|e| e.map(GSO_COUNTERS_MAP)) else {
            return Ok([0; GsoOutcome::COUNT]);
        };
        gso_stats(&PerCpuArray::try_from(map)?)
    }

    /// The guard's counters, per hook.
    pub fn counters(&self) -> Result<Vec<HookStats>> {
        let map = self
            .ebpf
            .as_ref()
            .and_then(|e| e.map(MSS_COUNTERS_MAP))
            .ok_or_else(|| anyhow!("the eBPF object has no map {MSS_COUNTERS_MAP}"))?;
        hook_stats(&PerCpuArray::try_from(map)?)
    }
}

/// One guarded interface's counters and settings, as `pktguard stats` shows them.
#[derive(Clone, Debug)]
pub struct IfaceStats {
    pub iface: String,
    /// Attach points in use, as `pktguard run` recorded them.
    pub attached: Vec<String>,
    pub mss_v4: u16,
    pub mss_v6: u16,
    pub hooks: Vec<HookStats>,
    /// Empty unless the guard repairs checksums.
    pub csum: Vec<RepairHookStats>,
    /// The GSO guard's outcomes, and its action ("drop"/"flag"), if on.
    pub gso: Option<([u64; GsoOutcome::COUNT], String)>,
}

impl IfaceStats {
    pub fn hook(&self, hook: Hook) -> Option<&HookStats> {
        self.hooks.iter().find(|h| h.hook == hook)
    }
}

/// A pinned per-CPU counter map.
fn pinned_counters(path: &Path) -> Result<PerCpuArray<MapData, u64>> {
    let map = MapData::from_pin(path)?;
    Ok(PerCpuArray::try_from(Map::PerCpuArray(map))?)
}

/// Reads the counters of the interface whose pins are in `dir`.
pub fn read_dir(dir: &Path, iface: &str, key: &str) -> Result<IfaceStats> {
    let counters = pinned_counters(&dir.join(PIN_COUNTERS))
        .with_context(|| format!("opening {}", dir.join(PIN_COUNTERS).display()))?;
    let hooks = hook_stats(&counters)?;
    let csum = match pinned_counters(&dir.join(PIN_CSUM_COUNTERS)) {
        Ok(m) => repair_hook_stats(&m)?,
        Err(_) => Vec::new(),
    };
    let gso = match pinned_counters(&dir.join(PIN_GSO_COUNTERS)) {
        Ok(m) => Some(gso_stats(&m)?),
        Err(_) => None,
    };
    let config = MapData::from_pin(dir.join(PIN_CONFIG))?;
    let config: Array<_, MssConfig> = Array::try_from(Map::Array(config))?;
    let cfg = config.get(&0, 0)?;
    let state = RunState::read(key);
    let action = state.gso.map_or_else(|| "?".to_string(), |g| g.action);
    Ok(IfaceStats {
        iface: iface.to_string(),
        attached: state.hooks,
        mss_v4: cfg.mss_v4,
        mss_v6: cfg.mss_v6,
        hooks,
        csum,
        gso: gso.map(|g| (g, action)),
    })
}

/// Every interface guarded in this network namespace, or just `only`.
pub fn collect(only: Option<&str>) -> Result<Vec<IfaceStats>> {
    let mut out = Vec::new();
    for p in state::pinned()? {
        if only.is_some_and(|o| o != p.iface) {
            continue;
        }
        out.push(read_dir(&p.dir, &p.iface, &p.key)?);
    }
    out.sort_by(|a, b| a.iface.cmp(&b.iface));
    Ok(out)
}
