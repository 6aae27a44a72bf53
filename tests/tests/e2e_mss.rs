//! Incident 3 end to end: a tunnel MTU smaller than the segments that reach
//! it, with the "too big" ICMP lost. Without the guard the transfer stalls;
//! with `pktguard run` on the node it completes within the clamp.

use std::time::Duration;

use guard_user::lab::{NODE_CLIENT_IF, NODE_TUNNEL_IF, TUNNEL_MTU, TunnelLab};
use pktguard_tests::{Running, pktguard_in};

const BYTES: usize = 4 << 20;
const STALL: Duration = Duration::from_secs(2);
const DONE: Duration = Duration::from_secs(30);
const MSS_V4: u32 = TUNNEL_MTU - 40;
const MSS_V6: u32 = TUNNEL_MTU - 60;

fn stats_json(lab: &TunnelLab) -> String {
    let out = pktguard_in(&lab.node, &["stats", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The number after `"name":` in the JSON of `hook` of `iface`.
fn counter(json: &str, iface: &str, hook: &str, name: &str) -> u64 {
    let at = json
        .find(&format!("\"iface\":\"{iface}\""))
        .expect("iface in stats");
    let rest = &json[at..];
    let at = rest.find(&format!("\"{hook}\":{{")).expect("hook in stats");
    let rest = &rest[at..];
    let at = rest
        .find(&format!("\"{name}\":"))
        .expect("counter in stats")
        + name.len()
        + 3;
    rest[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn incident3(run_args: &[&str], clamp_hooks: &[(&str, &str)]) {
    let lab = TunnelLab::new().expect("lab namespaces");
    for v6 in [false, true] {
        let t = lab.transfer(v6, BYTES, STALL).unwrap();
        assert!(
            !t.completed(),
            "v6={v6}: the black hole did not stall the transfer: {t}"
        );
        assert!(
            t.client_mss > MSS_V4,
            "v6={v6}: without the guard the MSS is not clamped: {t}"
        );
    }
    let guard = Running::start(&lab.node, run_args).expect("pktguard run");
    for v6 in [false, true] {
        let t = lab.transfer(v6, BYTES, DONE).unwrap();
        let limit = if v6 { MSS_V6 } else { MSS_V4 };
        assert!(t.completed(), "v6={v6}: with the guard: {t}");
        assert!(
            t.server_mss <= limit,
            "v6={v6}: pod's MSS above the clamp: {t}"
        );
        assert!(
            t.client_mss <= limit,
            "v6={v6}: client's MSS above the clamp: {t}"
        );
    }
    let json = stats_json(&lab);
    for (iface, hook) in clamp_hooks {
        assert!(
            counter(&json, iface, hook, "clamped") >= 2,
            "{iface}/{hook} clamped nothing: {json}"
        );
    }
    let (status, output) = guard.stop(libc::SIGTERM).unwrap();
    assert!(status.success(), "{status}: {output:?}");
}

/// TC on the node's client-facing interface: SYNs at ingress, SYN-ACKs at egress.
#[test]
fn incident3_tc_both_directions() {
    incident3(
        &[
            "--iface",
            NODE_CLIENT_IF,
            "--attach",
            "tc",
            "--direction",
            "both",
            "--mtu",
            "1440",
        ],
        &[
            (NODE_CLIENT_IF, "tc-ingress"),
            (NODE_CLIENT_IF, "tc-egress"),
        ],
    );
}

/// Native XDP on both node interfaces: SYNs from the client, SYN-ACKs from the pod.
#[test]
fn incident3_xdp_ingress_on_both_links() {
    incident3(
        &[
            "--iface",
            NODE_CLIENT_IF,
            "--iface",
            NODE_TUNNEL_IF,
            "--attach",
            "xdp",
            "--direction",
            "ingress",
            "--mtu",
            "1440",
        ],
        &[
            (NODE_CLIENT_IF, "xdp-ingress"),
            (NODE_TUNNEL_IF, "xdp-ingress"),
        ],
    );
}

/// `--tunnel-dev` reads the clamp from the narrow link itself.
#[test]
fn incident3_tunnel_dev() {
    incident3(
        &["--iface", NODE_CLIENT_IF, "--tunnel-dev", NODE_TUNNEL_IF],
        &[
            (NODE_CLIENT_IF, "tc-ingress"),
            (NODE_CLIENT_IF, "tc-egress"),
        ],
    );
}
