//! What `pktguard run` is tested on from the command line: a guarded veth
//! in its own namespace, everything pktguard could leave on it, and a
//! failing run's exit code and message.

use std::fs;

use aya::programs::{SchedClassifier, TcAttachType};
use guard_common::{PIN_DIR, RUN_DIR};
use guard_user::lab::netns::{self, Netns, VethEnd};

use crate::pktguard_in;

/// The interface the command-line tests guard.
pub const IFACE: &str = "g0";

/// A namespace with a veth `g0` (its peer in a second namespace).
pub fn host() -> (Netns, Netns) {
    let tag = netns::unique_tag();
    let ns = Netns::new(&format!("pg-{tag}-host")).unwrap();
    let peer = Netns::new(&format!("pg-{tag}-peer")).unwrap();
    netns::veth(
        &VethEnd::new(&ns, IFACE, &[], 1500),
        &VethEnd::new(&peer, "g1", &[], 1500),
    )
    .unwrap();
    (ns, peer)
}

/// Everything pktguard could have left on `IFACE` of `ns`, described.
pub fn leftovers(ns: &Netns) -> Vec<String> {
    let mut found = Vec::new();
    let link = ns.ip(&["link", "show", "dev", IFACE]).unwrap();
    if link.contains("xdp") {
        found.push(format!("XDP program: {link}"));
    }
    for dir in ["ingress", "egress"] {
        let filters = ns
            .exec(&["tc", "filter", "show", "dev", IFACE, dir])
            .unwrap();
        if !filters.trim().is_empty() {
            found.push(format!("tc {dir} filter: {filters}"));
        }
    }
    let qdisc = ns.exec(&["tc", "qdisc", "show", "dev", IFACE]).unwrap();
    if qdisc.contains("clsact") {
        found.push(format!("clsact qdisc: {qdisc}"));
    }
    // Kernels without TCX (before 6.6) show netlink filters above only.
    if crate::has_tcx() {
        let tcx = ns
            .run(|| {
                let mut progs = Vec::new();
                for at in [TcAttachType::Ingress, TcAttachType::Egress] {
                    let (_, p) =
                        SchedClassifier::query_tcx(&guard_user::host::iface::ifname(IFACE)?, at)?;
                    progs.extend(p.iter().map(|i| format!("tcx {at:?}: prog {}", i.id())));
                }
                Ok(progs)
            })
            .unwrap();
        found.extend(tcx);
    }
    let inode = {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(ns.path()).unwrap().ino()
    };
    let suffix = format!("{IFACE}@{inode}");
    for dir in [PIN_DIR, RUN_DIR] {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&suffix) {
                    found.push(format!("{}", e.path().display()));
                }
            }
        }
    }
    found
}

/// Runs `pktguard ARGS` in `ns`; returns (exit code, stderr).
pub fn fails(ns: &Netns, args: &[&str]) -> (i32, String) {
    let out = pktguard_in(ns, args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
