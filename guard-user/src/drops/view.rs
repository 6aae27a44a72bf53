//! The report as text: a table on a terminal, one line per row in a pipe,
//! one JSON object per interval with `--json`.

use super::table::Row;
use crate::cmd::json_str;

pub fn render_table(rows: &[Row], header: &str) -> String {
    let mut out = format!("{header}\n");
    out.push_str(&format!(
        "{:>10} {:>10}  {:<28} {:<6} {:<20} {}\n",
        "RATE/s", "TOTAL", "REASON", "PROTO", "IFACE", "LOCATION"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:>10.1} {:>10}  {:<28} {:<6} {:<20} {}\n",
            r.rate, r.total, r.reason, r.protocol, r.iface, r.location
        ));
    }
    if rows.is_empty() {
        out.push_str("(no drops yet)\n");
    }
    out
}

pub fn render_plain(rows: &[Row], t: f64) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "t={t:.1}s reason={} location={} proto={} iface={} total={} rate={:.1}/s\n",
                r.reason, r.location, r.protocol, r.iface, r.total, r.rate
            )
        })
        .collect()
}

pub fn render_json(rows: &[Row], t: f64, interval: f64, lost: u64) -> String {
    let drops: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"reason\":{},\"location\":{},\"function\":{},\"protocol\":{},\"iface\":{},\"ifindex\":{},\"netns\":{},\"total\":{},\"rate\":{:.3}}}",
                json_str(&r.reason),
                json_str(&r.location),
                json_str(&r.function),
                json_str(&r.protocol),
                json_str(&r.iface),
                r.ifindex,
                r.netns,
                r.total,
                r.rate
            )
        })
        .collect();
    format!(
        "{{\"t\":{t:.3},\"interval\":{interval:.3},\"lost\":{lost},\"drops\":[{}]}}\n",
        drops.join(",")
    )
}
