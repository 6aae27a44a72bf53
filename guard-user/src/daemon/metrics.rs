//! Prometheus text exposition of the guards' counters (read from their maps
//! at scrape time), the attach mode of each interface, build info, and the
//! drop monitor's figures. Encoded with `prometheus-client`, the
//! Prometheus project's own Rust client, which keeps the naming rules
//! (`_total` on counters, `_info` on info metrics) right.

use anyhow::Result;
use guard_common::{GsoOutcome, Hook, MssOutcome, RepairOutcome};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    drops::{self, DropMonitor},
    guard::{Attachment, Guard},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PacketLabels {
    iface: String,
    hook: String,
    action: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachLabels {
    iface: String,
    attachment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: String,
    function: String,
    iface: String,
}

const fn hook_of(a: Attachment) -> Hook {
    match a {
        Attachment::XdpNative | Attachment::XdpGeneric => Hook::XdpIngress,
        Attachment::TcIngress | Attachment::TcGso => Hook::TcIngress,
        Attachment::TcEgress => Hook::TcEgress,
    }
}

/// The exposition of `guards` and `monitor`, now.
pub fn render<'a>(
    guards: impl Iterator<Item = &'a Guard>,
    monitor: Option<&DropMonitor>,
) -> String {
    let mut reg = Registry::default();
    reg.register(
        "pktguard_build",
        "pktguard's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let packets = Family::<PacketLabels, Counter>::default();
    reg.register(
        "pktguard_packets",
        "Packets the guard's programs looked at, by hook, action and outcome (reason)",
        packets.clone(),
    );
    let attached = Family::<AttachLabels, Gauge>::default();
    reg.register(
        "pktguard_attached",
        "1 for each program attachment of a guarded interface (xdp-native, xdp-generic, tc-ingress, tc-egress, tc-ingress-gso)",
        attached.clone(),
    );
    let add = |iface: &str, hook: Hook, action: &str, reason: &str, n: u64| {
        packets
            .get_or_create(&PacketLabels {
                iface: iface.to_string(),
                hook: hook.name().to_string(),
                action: action.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
    };
    for g in guards {
        let hooks: Vec<Hook> = g
            .attached
            .iter()
            .filter(|a| **a != Attachment::TcGso)
            .map(|a| hook_of(*a))
            .collect();
        for a in &g.attached {
            attached
                .get_or_create(&AttachLabels {
                    iface: g.iface.name.clone(),
                    attachment: a.name().to_string(),
                })
                .set(1);
        }
        if g.features.clamp.is_some() {
            for h in g.counters().unwrap_or_default() {
                if hooks.contains(&h.hook) {
                    for o in MssOutcome::ALL {
                        add(&g.iface.name, h.hook, "mss_clamp", o.name(), h.outcome(o));
                    }
                }
            }
        }
        for h in g.repair_counters().unwrap_or_default() {
            if hooks.contains(&h.hook) {
                for o in RepairOutcome::ALL {
                    add(&g.iface.name, h.hook, "csum_repair", o.name(), h.get(o));
                }
            }
        }
        if g.attached.contains(&Attachment::TcGso)
            && let Ok(c) = g.gso_counters()
        {
            for o in &GsoOutcome::ALL[1..] {
                add(
                    &g.iface.name,
                    Hook::TcIngress,
                    "gso_guard",
                    o.name(),
                    c[*o as usize],
                );
            }
        }
    }
    if let Some(m) = monitor
        && let Ok((snap, _)) = m.snapshot()
        && let Ok(mut names) = drops::IfaceNames::new()
    {
        let kdrops = Family::<DropLabels, Counter>::default();
        reg.register(
            "pktguard_kernel_drops",
            "Packets the kernel dropped, by drop reason, function and interface (the drop monitor)",
            kdrops.clone(),
        );
        for (k, n) in &snap {
            let (reason, _, function, iface) = drops::name_key(m, &mut names, k);
            kdrops
                .get_or_create(&DropLabels {
                    reason,
                    function,
                    iface,
                })
                .inc_by(*n);
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// Answers one HTTP request: the exposition on GET /metrics, 404 elsewhere.
pub async fn respond(mut stream: tokio::net::TcpStream, body: String) -> Result<()> {
    let mut buf = [0u8; 2048];
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf)).await??;
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let response = if request.starts_with("GET ") && (path == "/metrics" || path == "/") {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn exposition_names_follow_the_conventions() {
        let text = super::render(std::iter::empty(), None);
        assert!(text.contains("pktguard_build_info{version=\""), "{text}");
        assert!(text.contains("# TYPE pktguard_packets counter"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
