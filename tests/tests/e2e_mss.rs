//! Incident 3 end to end: a tunnel MTU smaller than the segments that reach
//! it, with the "too big" ICMP lost. Without the guard the transfer stalls;
//! with `pktguard run` on the node it completes within the clamp.

use std::time::Duration;

use guard_user::lab::mss::{NODE_CLIENT_IF, NODE_TUNNEL_IF, TUNNEL_MTU, TunnelLab};
use pktguard_tests::Running;

const BYTES: usize = 4 << 20;
const STALL: Duration = Duration::from_secs(2);
const DONE: Duration = Duration::from_secs(30);
const MSS_V4: u32 = TUNNEL_MTU - 40;
const MSS_V6: u32 = TUNNEL_MTU - 60;
/// Native XDP at ingress of both node links: SYNs from the client, SYN-ACKs from the pod.
const XDP_ON_BOTH_LINKS: &[&str] = &[
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
];

fn stats_json(lab: &TunnelLab) -> String {
    pktguard_tests::stats_json(&lab.node)
}

fn counter(json: &str, iface: &str, hook: &str, name: &str) -> u64 {
    pktguard_tests::stats_counter(json, iface, "hooks", hook, name)
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
    guard.stop_ok();
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
        XDP_ON_BOTH_LINKS,
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

/// A SYN whose MSS sits at an odd offset (options start with a NOP) is the
/// case the kernel's own clamps get wrong on this kernel (nft `maxseg` and
/// iptables TCPMSS leave a bad checksum: see README). Through pktguard it is
/// clamped and the pod, which verifies the checksum, answers it.
fn odd_offset_syn_answered(run_args: &[&str]) {
    use guard_ebpf::testpkt::{self, Segment};
    let lab = TunnelLab::new().unwrap();
    // testpkt's segments run 10.77.1.2:40000 -> 10.77.2.2:8080 (fd77:1::2 ->
    // fd77:2::2), the lab's client and pod.
    let _listeners = [false, true].map(|v6| {
        let addr = std::net::SocketAddr::new(TunnelLab::pod_addr(v6), 8080);
        lab.pod
            .run(|| Ok(std::net::TcpListener::bind(addr)?))
            .unwrap()
    });
    let guard = Running::start(&lab.node, run_args).unwrap();
    let odd = [1, 2, 4, 0x05, 0xb4, 1, 1, 1]; // NOP, MSS 1460, NOP x3
    for v6 in [false, true] {
        let mut seg = Segment::syn(&odd);
        seg.v6 = v6;
        let frame = seg.build();
        let segment = frame[testpkt::tcp_offset(&frame)..].to_vec();
        let answer = lab
            .client
            .run(|| {
                let raw = pktguard_tests::RawTcp::new(v6)?;
                for _ in 0..3 {
                    raw.send(TunnelLab::pod_addr(v6), &segment)?;
                    if let Some(mss) = raw.synack(8080, 40000, Duration::from_secs(1))? {
                        return Ok(Some(mss));
                    }
                }
                Ok(None)
            })
            .unwrap();
        let limit = if v6 { MSS_V6 } else { MSS_V4 } as u16;
        let mss =
            answer.unwrap_or_else(|| panic!("v6={v6}: no SYN-ACK: the clamped SYN was dropped"));
        assert!(mss <= limit, "v6={v6}: SYN-ACK MSS {mss} above the clamp");
    }
    let json = stats_json(&lab);
    assert!(json.contains("\"clamped\":"), "{json}");
    guard.stop_ok();
}

#[test]
fn odd_offset_syn_answered_tc() {
    odd_offset_syn_answered(&["--iface", NODE_CLIENT_IF, "--attach", "tc", "--mtu", "1440"]);
}

#[test]
fn odd_offset_syn_answered_xdp() {
    odd_offset_syn_answered(XDP_ON_BOTH_LINKS);
}

/// trafgen's frames carry only the Ethernet header in the linear area: at
/// TC the headers must be pulled before they can be read. The clamped SYN
/// is answered, and counted as clamped rather than malformed.
#[test]
fn trafgen_frames_are_pulled_and_clamped_at_tc() {
    use guard_ebpf::testpkt::Segment;
    let lab = TunnelLab::new().unwrap();
    let addr = std::net::SocketAddr::new(TunnelLab::pod_addr(false), 8080);
    let _listener = lab
        .pod
        .run(|| Ok(std::net::TcpListener::bind(addr)?))
        .unwrap();
    let guard = Running::start(
        &lab.node,
        &["--iface", NODE_CLIENT_IF, "--attach", "tc", "--mtu", "1440"],
    )
    .unwrap();
    let mut frame = Segment::syn(&[1, 2, 4, 0x05, 0xb4, 1, 1, 1]).build();
    frame[0..6].copy_from_slice(&lab.node.mac(NODE_CLIENT_IF).unwrap());
    frame[6..12].copy_from_slice(&lab.client.mac(guard_user::lab::mss::CLIENT_IF).unwrap());
    let raw = lab
        .client
        .run(|| pktguard_tests::RawTcp::new(false))
        .unwrap();
    let mut answer = None;
    for _ in 0..3 {
        pktguard_tests::trafgen_send(&lab.client, guard_user::lab::mss::CLIENT_IF, &frame, 1)
            .unwrap();
        answer = raw.synack(8080, 40000, Duration::from_secs(1)).unwrap();
        if answer.is_some() {
            break;
        }
    }
    let mss = answer.expect("no SYN-ACK to the trafgen SYN");
    assert!(mss <= MSS_V4 as u16, "SYN-ACK MSS {mss}");
    let json = stats_json(&lab);
    assert!(
        counter(&json, NODE_CLIENT_IF, "tc-ingress", "clamped") >= 1,
        "{json}"
    );
    assert_eq!(
        counter(&json, NODE_CLIENT_IF, "tc-ingress", "malformed"),
        0,
        "{json}"
    );
    guard.stop_ok();
}
