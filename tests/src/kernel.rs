//! The running kernel as the tests see it: its version, TCX, and the TC
//! programs attached to a device.

use aya::programs::SchedClassifier;
use guard_user::lab::netns::Netns;

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    guard_user::host::sys::kernel_version().is_ok_and(|v| v >= (major, minor))
}

/// TCX arrived in 6.6; before it TC programs are netlink (cls_bpf) filters.
pub fn has_tcx() -> bool {
    kernel_at_least(6, 6)
}

/// (attach point, program id, attachment id) of the TC programs on `dev`
/// in `ns`. With TCX: programs from BPF_PROG_QUERY, their link ids from
/// `bpftool link` (this bpftool names neither TCX links nor their
/// devices). Before TCX: cls_bpf filters from `tc filter show`, the
/// attachment id being the filter's priority and handle.
pub fn tc_programs(ns: &Netns, dev: &str) -> Vec<(String, u32, u64)> {
    use aya::programs::TcAttachType;
    let mut v = Vec::new();
    if !has_tcx() {
        for dir in ["ingress", "egress"] {
            let text = ns
                .exec(&["tc", "filter", "show", "dev", dev, dir])
                .unwrap_or_default();
            for line in text.lines().filter(|l| l.contains(" id ")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let after = |key: &str| {
                    words
                        .iter()
                        .position(|w| *w == key)
                        .and_then(|i| words.get(i + 1))
                        .copied()
                };
                let num = |w: Option<&str>| {
                    w.and_then(|w| match w.strip_prefix("0x") {
                        Some(hex) => u64::from_str_radix(hex, 16).ok(),
                        None => w.parse().ok(),
                    })
                    .unwrap_or(0)
                };
                let id = num(after("id")) as u32;
                let slot = (num(after("pref")) << 32) | num(after("handle"));
                v.push((dir.to_string(), id, slot));
            }
        }
        return v;
    }
    // bpftool fails when a link goes away while it lists (other tests run).
    let listing = (0..10)
        .find_map(|_| guard_user::lab::netns::cmd(&["bpftool", "link", "show", "-j"]).ok())
        .expect("bpftool link show");
    let links: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let link_of = |prog: u32| {
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["prog_id"].as_u64() == Some(prog as u64))
            .and_then(|l| l["id"].as_u64())
            .unwrap_or(0)
    };
    for (name, at) in [
        ("ingress", TcAttachType::Ingress),
        ("egress", TcAttachType::Egress),
    ] {
        let (_, progs) = ns
            .run(|| {
                Ok(SchedClassifier::query_tcx(
                    &guard_user::host::iface::ifname(dev)?,
                    at,
                )?)
            })
            .unwrap();
        for p in progs {
            v.push((name.to_string(), p.id(), link_of(p.id())));
        }
    }
    v
}
