//! The doctor's test harness: fixture trees, the checks of a namespace
//! (live, or over a fixture), and the namespaces with an underlay and a
//! VXLAN device the checks look at.

use std::{fs, path::PathBuf};

use guard_user::{
    doctor::{self, Check, Fixture, Live, Overlay, Status},
    lab::netns::{self, Netns, VethEnd},
};

/// A fixture tree in a temporary directory, removed on drop.
pub struct Tree(pub PathBuf);

impl Tree {
    pub fn new(files: &[(&str, &str)]) -> Tree {
        let root = std::env::temp_dir().join(format!("pktguard-doctor-{}", netns::unique_tag()));
        for (path, text) in files {
            let p = root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        Tree(root)
    }

    pub fn host(&self) -> Fixture {
        Fixture {
            root: self.0.clone(),
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The check `id` of `checks`, asserted to have come out `status`.
#[track_caller]
pub fn check<'a>(checks: &'a [Check], id: &str, status: Status) -> &'a Check {
    let c = checks.iter().find(|c| c.id == id).expect(id);
    assert_eq!(c.status, status, "{c:?}");
    c
}

/// The check `id` of `ns`, run from inside it, asserted to be `status`.
#[track_caller]
pub fn live_check(ns: &Netns, id: &str, status: Status) -> Check {
    check(&live_checks(ns), id, status).clone()
}

/// The checks of `ns`, run from inside it.
pub fn live_checks(ns: &Netns) -> Vec<Check> {
    ns.run(|| Ok(doctor::run_checks(&Live))).unwrap()
}

/// The checks of `ns` seen with the fixture's files first (an old kernel).
pub fn overlay_checks(ns: &Netns, tree: &Tree) -> Vec<Check> {
    let root = tree.0.clone();
    ns.run(move || {
        Ok(doctor::run_checks(&Overlay {
            files: Fixture { root },
        }))
    })
    .unwrap()
}

pub fn ns(name: &str) -> Netns {
    Netns::new(&format!("pg-{}-{name}", netns::unique_tag())).unwrap()
}

/// A namespace with an underlay veth `u0` (MTU 1500, peer elsewhere).
pub fn node() -> (Netns, Netns) {
    let (n, peer) = (ns("doc"), ns("docpeer"));
    netns::veth(
        &VethEnd::new(&n, "u0", &["10.88.0.1/24"], 1500),
        &VethEnd::new(&peer, "u1", &["10.88.0.2/24"], 1500),
    )
    .unwrap();
    (n, peer)
}

pub fn vxlan(n: &Netns, mtu: u32) {
    n.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "8472",
        "local",
        "10.88.0.1",
        "dev",
        "u0",
    ])
    .unwrap();
    n.ip(&["link", "set", "vx0", "mtu", &mtu.to_string(), "up"])
        .unwrap();
}

// Incident 1 -------------------------------------------------------------
