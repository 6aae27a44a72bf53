//! Where the program finds a drop's fields: the `kfree_skb` tracepoint's
//! format from tracefs, and the sk_buff/net_device offsets from BTF.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use guard_common::{DROP_FIELD_NONE, DropLayout};

use super::names::Reasons;
use crate::host::{btf::Btf, sys};

const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
pub(super) const FORMAT: &str = "events/skb/kfree_skb/format";

/// The fields of a tracepoint's format file: name -> (offset, size).
#[derive(Debug, Default)]
pub struct TraceFormat {
    fields: HashMap<String, (u32, u32)>,
}

impl TraceFormat {
    /// Parses lines like `field:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;`.
    pub fn parse(text: &str) -> TraceFormat {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("field:") else {
                continue;
            };
            let mut parts = rest.split(';').map(str::trim);
            let decl = parts.next().unwrap_or_default();
            // The name is the last word, without an array suffix.
            let name = decl
                .rsplit([' ', '*'])
                .next()
                .unwrap_or_default()
                .split('[')
                .next()
                .unwrap_or_default();
            let num = |key: &str| -> Option<u32> {
                rest.split(';')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
            };
            if let (Some(off), Some(size)) = (num("offset:"), num("size:")) {
                fields.insert(name.to_string(), (off, size));
            }
        }
        TraceFormat { fields }
    }

    pub fn field(&self, name: &str) -> Option<(u32, u32)> {
        self.fields.get(name).copied()
    }
}

/// What the program needs, from the tracepoint's format and the BTF, plus
/// what could not be resolved (said to the operator).
pub fn layout(
    fmt: &TraceFormat,
    btf: Option<&Btf>,
    reasons: &Reasons,
) -> Result<(DropLayout, Vec<String>)> {
    let mut notes = Vec::new();
    if fmt.field("location").is_none() {
        bail!("skb:kfree_skb has no location field: not the tracepoint pktguard knows");
    }
    let mut l = DropLayout {
        not_dropped_yet: reasons.not_dropped_yet.unwrap_or(DROP_FIELD_NONE),
        consumed: reasons.consumed.unwrap_or(DROP_FIELD_NONE),
        ..DropLayout::default()
    };
    match fmt.field("reason") {
        Some((_, 4)) => l.has_reason = 1,
        _ => notes.push(
            "this kernel has no drop reasons (they arrived in 5.17): drops are counted by location only"
                .to_string(),
        ),
    }
    let skb = btf.ok_or_else(|| anyhow!("no BTF")).and_then(|b| {
        Ok([
            b.member("sk_buff", "protocol")?,
            b.member("sk_buff", "dev")?,
            b.member("net_device", "ifindex")?,
            b.member("net_device", "nd_net")?,
            b.member("net", "ns.inum")?,
        ])
    });
    match skb {
        Ok([p, d, i, n, inum])
            if p.size == 2 && d.size == 8 && i.size == 4 && n.size == 8 && inum.size == 4 =>
        {
            l.skb_protocol = p.offset;
            l.skb_dev = d.offset;
            l.dev_ifindex = i.offset;
            l.dev_net = n.offset;
            l.net_inum = inum.offset;
        }
        Ok(_) => notes.push(
            "unexpected sk_buff/net_device layout: protocols and interfaces not shown".into(),
        ),
        Err(e) => notes.push(format!("protocols and interfaces not shown: {e:#}")),
    }
    Ok((l, notes))
}

/// Mounts tracefs unless it is mounted already; returns where it is.
pub fn ensure_tracefs() -> Result<&'static str> {
    for root in TRACEFS {
        if Path::new(root).join(FORMAT).exists() {
            return Ok(root);
        }
    }
    let root = TRACEFS[0];
    sys::mount_fs("tracefs", root).with_context(|| {
        format!("mounting tracefs at {root} (try: mount -t tracefs nodev {root})")
    })?;
    if !Path::new(root).join(FORMAT).exists() {
        bail!("this kernel has no skb:kfree_skb tracepoint ({root}/{FORMAT} is missing)");
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: kfree_skb
ID: 2310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;
";

    /// 5.10: no reason, protocol right after location.
    const FORMAT_5_10: &str = "format:
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;
";

    #[test]
    fn tracepoint_formats() {
        let f = TraceFormat::parse(FORMAT_6_18);
        assert_eq!(f.field("skbaddr"), Some((8, 8)));
        assert_eq!(f.field("protocol"), Some((32, 2)));
        assert_eq!(f.field("reason"), Some((36, 4)));
        assert_eq!(f.field("common_pid"), Some((4, 4)));
        let (l, notes) = layout(&f, None, &Reasons::default()).unwrap();
        assert_eq!(l.has_reason, 1);
        assert_eq!(l.skb_dev, 0, "no BTF: no device");
        assert_eq!(notes.len(), 1, "{notes:?}");
        let btf = Btf::from_kernel().unwrap();
        let (l, notes) = layout(&f, Some(&btf), &Reasons::from_btf(&btf)).unwrap();
        assert!(
            l.skb_protocol > 0 && l.skb_dev > 0 && l.net_inum > 0,
            "{l:?}"
        );
        assert_ne!(l.consumed, DROP_FIELD_NONE);
        assert!(notes.is_empty(), "{notes:?}");

        let old = TraceFormat::parse(FORMAT_5_10);
        let (l, notes) = layout(&old, None, &Reasons::default()).unwrap();
        assert_eq!(l.has_reason, 0);
        assert!(notes[0].contains("5.17"), "{notes:?}");
        assert!(layout(&TraceFormat::parse("format:\n"), None, &Reasons::default()).is_err());
    }
}
