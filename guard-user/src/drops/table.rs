//! The report's rows: drops per key with their rate over the last interval,
//! filtered by interface and reason, most frequent first.

use std::time::Duration;

use guard_common::DropKey;

use super::{monitor::Snapshot, names::protocol_name};

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub reason: String,
    pub location: String,
    pub function: String,
    pub protocol: String,
    pub iface: String,
    pub ifindex: u32,
    pub netns: u32,
    pub total: u64,
    /// Drops per second over the last interval.
    pub rate: f64,
}

/// Which rows to keep.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// (ifindex, netns inode) of `--iface`.
    pub iface: Option<(u32, u32)>,
    /// The kernel's value of `--reason`.
    pub reason: Option<u32>,
}

impl Filter {
    pub fn keeps(&self, k: &DropKey) -> bool {
        self.iface
            .is_none_or(|(i, ns)| k.ifindex == i && k.netns == ns)
            && self.reason.is_none_or(|r| k.reason == r)
    }
}

/// Rows for `now`, with rates against `before`, most frequent first (by
/// rate, then total), at most `top`.
pub fn rows(
    now: &Snapshot,
    before: &Snapshot,
    elapsed: Duration,
    filter: &Filter,
    top: usize,
    mut name: impl FnMut(&DropKey) -> (String, String, String, String),
) -> Vec<Row> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut keys: Vec<(&DropKey, u64, f64)> = now
        .iter()
        .filter(|(k, _)| filter.keeps(k))
        .map(|(k, &n)| {
            let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (k, n, d as f64 / secs)
        })
        .collect();
    keys.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
    keys.truncate(top);
    keys.into_iter()
        .map(|(k, total, rate)| {
            let (reason, location, function, iface) = name(k);
            Row {
                reason,
                location,
                function,
                protocol: protocol_name(k.protocol),
                iface,
                ifindex: k.ifindex,
                netns: k.netns,
                total,
                rate,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drops::view::render_json;

    #[test]
    fn rows_rank_by_rate_then_total_and_filter() {
        let key = |reason, ifindex| DropKey {
            location: 0x1000,
            reason,
            ifindex,
            netns: 7,
            protocol: 0x0800,
            _pad: 0,
        };
        let before: Snapshot = [(key(1, 1), 100), (key(2, 1), 0)].into();
        let now: Snapshot = [(key(1, 1), 100), (key(2, 1), 50), (key(3, 2), 10)].into();
        let name = |k: &DropKey| {
            (
                k.reason.to_string(),
                String::new(),
                String::new(),
                k.ifindex.to_string(),
            )
        };
        let r = rows(
            &now,
            &before,
            Duration::from_secs(2),
            &Filter::default(),
            10,
            name,
        );
        let order: Vec<_> = r
            .iter()
            .map(|r| (r.reason.as_str(), r.total, r.rate))
            .collect();
        assert_eq!(order, [("2", 50, 25.0), ("3", 10, 5.0), ("1", 100, 0.0)]);
        let r = rows(
            &now,
            &before,
            Duration::from_secs(2),
            &Filter::default(),
            1,
            name,
        );
        assert_eq!(r.len(), 1);
        let f = Filter {
            iface: Some((1, 7)),
            reason: None,
        };
        assert_eq!(
            rows(&now, &before, Duration::from_secs(1), &f, 10, name).len(),
            2
        );
        let f = Filter {
            iface: Some((1, 8)),
            reason: None,
        };
        assert!(rows(&now, &before, Duration::from_secs(1), &f, 10, name).is_empty());
        let f = Filter {
            iface: None,
            reason: Some(3),
        };
        assert_eq!(
            rows(&now, &before, Duration::from_secs(1), &f, 10, name).len(),
            1
        );
        let json = render_json(&r, 1.0, 2.0, 0);
        assert!(
            json.starts_with("{\"t\":1.000,") && json.ends_with("]}\n"),
            "{json}"
        );
    }
}
