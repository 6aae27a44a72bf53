//! Incident 3 end to end: a tunnel MTU smaller than the segments that reach
//! it, with the "too big" ICMP lost. Without the guard the transfer stalls;
//! with `pktguard run` on the node it completes within the clamp.

use std::time::Duration;

use guard_user::lab::mss::{IPIP_DEV, NODE_CLIENT_IF, NODE_TUNNEL_IF, TUNNEL_MTU, TunnelLab};
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

/// Incident 3 as in the seed: Calico's IPIP (`tunl0`, MTU 1440) between
/// the node and the pod's node, the node's "fragmentation needed" lost.
/// Without the guard the client's full-sized segments do not fit the
/// tunnel and the transfer stalls; with `pktguard run` on the node's
/// client-facing interface it completes within the clamp, read from
/// `--mtu` or from the tunnel device itself. IPv4, as IPIP is. Needs the
/// kernel's IPIP driver (every guest of the matrix has it; `cargo xtask
/// test` leaves these out on a host without one, and says so).
fn incident3_ipip(run_args: &[&str]) {
    let lab = TunnelLab::ipip().expect("lab namespaces");
    let t = lab.transfer(false, BYTES, STALL).unwrap();
    assert!(
        !t.completed(),
        "the black hole did not stall the transfer: {t}"
    );
    assert!(
        t.client_mss > MSS_V4,
        "without the guard the MSS is not clamped: {t}"
    );
    let guard = Running::start(&lab.node, run_args).expect("pktguard run");
    let t = lab.transfer(false, BYTES, DONE).unwrap();
    assert!(t.completed(), "with the guard: {t}");
    assert!(t.server_mss <= MSS_V4, "pod's MSS above the clamp: {t}");
    assert!(t.client_mss <= MSS_V4, "client's MSS above the clamp: {t}");
    let json = stats_json(&lab);
    for hook in ["tc-ingress", "tc-egress"] {
        assert!(
            counter(&json, NODE_CLIENT_IF, hook, "clamped") >= 1,
            "{hook} clamped nothing: {json}"
        );
    }
    guard.stop_ok();
}

#[test]
fn incident3_ipip_tunl0_mtu() {
    incident3_ipip(&[
        "--iface",
        NODE_CLIENT_IF,
        "--attach",
        "tc",
        "--direction",
        "both",
        "--mtu",
        "1440",
    ]);
}

#[test]
fn incident3_ipip_tunl0_tunnel_dev() {
    incident3_ipip(&["--iface", NODE_CLIENT_IF, "--tunnel-dev", IPIP_DEV]);
}

/// NOP, MSS 1460, NOP x3: the MSS value at an odd offset of the TCP header.
const ODD: [u8; 8] = [1, 2, 4, 0x05, 0xb4, 1, 1, 1];
/// MSS 1460 first: the value at an even offset.
const EVEN: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 1, 1, 1];

/// Listeners in the pod on port 8080, where testpkt's segments go
/// (10.77.1.2:40000 -> 10.77.2.2:8080, fd77:1::2 -> fd77:2::2: the lab's
/// client and pod).
fn pod_listeners(lab: &TunnelLab) -> [std::net::TcpListener; 2] {
    [false, true].map(|v6| {
        let addr = std::net::SocketAddr::new(TunnelLab::pod_addr(v6), 8080);
        lab.pod
            .run(|| Ok(std::net::TcpListener::bind(addr)?))
            .unwrap()
    })
}

/// Sends a SYN with `options` from the client, raw, up to three times: the
/// MSS of the pod's SYN-ACK, or None when none came.
fn syn_answer(lab: &TunnelLab, v6: bool, options: &[u8]) -> Option<u16> {
    syn_answer_until(lab, v6, options, || false)
}

/// `syn_answer`, which stops sending when `enough` says that no answer
/// will come (a SYN the pod counted as broken is not retried for nothing).
fn syn_answer_until(
    lab: &TunnelLab,
    v6: bool,
    options: &[u8],
    enough: impl Fn() -> bool,
) -> Option<u16> {
    use guard_ebpf::testpkt::{self, Segment};
    let mut seg = Segment::syn(options);
    seg.v6 = v6;
    let frame = seg.build();
    let segment = frame[testpkt::tcp_offset(&frame)..].to_vec();
    let raw = lab.client.run(|| pktguard_tests::RawTcp::new(v6)).unwrap();
    for _ in 0..3 {
        // The socket belongs to the client's namespace wherever it is used.
        raw.send(TunnelLab::pod_addr(v6), &segment).unwrap();
        if let Some(mss) = raw.synack(8080, 40000, Duration::from_secs(1)).unwrap() {
            return Some(mss);
        }
        if enough() {
            break;
        }
    }
    None
}

/// The pod's TCP checksum errors (Tcp InCsumErrors, both families).
fn pod_tcp_csum_errors(lab: &TunnelLab) -> u64 {
    let text = lab.pod.exec(&["cat", "/proc/net/snmp"]).unwrap();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InCsumErrors")
        .and_then(|(_, v)| v.parse().ok())
        .expect("Tcp InCsumErrors")
}

/// A SYN whose MSS sits at an odd offset (options start with a NOP) is the
/// case the kernel's own clamps get wrong (`kernel_clamp_*` below). Through
/// pktguard it is clamped and the pod, which verifies the checksum,
/// answers it and counts no checksum error.
fn odd_offset_syn_answered(run_args: &[&str]) {
    let lab = TunnelLab::new().unwrap();
    let _listeners = pod_listeners(&lab);
    let guard = Running::start(&lab.node, run_args).unwrap();
    for v6 in [false, true] {
        let limit = if v6 { MSS_V6 } else { MSS_V4 } as u16;
        let errors = pod_tcp_csum_errors(&lab);
        let mss = syn_answer(&lab, v6, &ODD)
            .unwrap_or_else(|| panic!("v6={v6}: no SYN-ACK: the clamped SYN was dropped"));
        assert!(mss <= limit, "v6={v6}: SYN-ACK MSS {mss} above the clamp");
        assert_eq!(
            pod_tcp_csum_errors(&lab),
            errors,
            "v6={v6}: the pod counted checksum errors"
        );
    }
    let json = stats_json(&lab);
    assert!(json.contains("\"clamped\":"), "{json}");
    guard.stop_ok();
}

/// The kernel's own MSS clamps on the node's forward path, to 1400.
#[derive(Clone, Copy, Debug)]
enum KernelClamp {
    /// `tcp option maxseg size set 1400` (inet: both families).
    NftMaxseg,
    /// `-j TCPMSS --set-mss 1400`, legacy iptables (IPv4).
    IptablesLegacy,
    /// The same rule through iptables' nf_tables backend (IPv4).
    IptablesNft,
}

impl KernelClamp {
    fn install(self, node: &guard_user::lab::netns::Netns) {
        let tcpmss = [
            "-t",
            "mangle",
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "--tcp-flags",
            "SYN,RST",
            "SYN",
            "-j",
            "TCPMSS",
            "--set-mss",
            "1400",
        ];
        let out = match self {
            KernelClamp::NftMaxseg => node.exec(&[
                "nft",
                "add table inet kclamp; \
                 add chain inet kclamp clamp { type filter hook forward priority -150; }; \
                 add rule inet kclamp clamp tcp flags & (syn|rst) == syn tcp option maxseg size set 1400",
            ]),
            KernelClamp::IptablesLegacy => node.exec(&[&["iptables-legacy"], &tcpmss[..]].concat()),
            KernelClamp::IptablesNft => node.exec(&[&["iptables-nft"], &tcpmss[..]].concat()),
        };
        out.unwrap_or_else(|e| panic!("{self:?}: {e:#}"));
    }

    fn families(self) -> &'static [bool] {
        match self {
            KernelClamp::NftMaxseg => &[false, true],
            _ => &[false],
        }
    }
}

/// The kernel's clamps on the SYNs pktguard clamps right
/// (`odd_offset_syn_answered_*`: the same lab and SYNs, pktguard in place
/// of the kernel's rule). With the MSS at an even offset the kernel's
/// clamp works (the pod answers, and its SYN-ACK, clamped on the way back,
/// says 1400). At an odd offset the kernel rewrites the value and leaves a
/// wrong TCP checksum: the pod counts a checksum error and never answers.
/// No kernel of the matrix has a fix (4.19 to 6.18 alike).
fn kernel_clamp(clamp: KernelClamp) {
    let lab = TunnelLab::new().unwrap();
    let _listeners = pod_listeners(&lab);
    clamp.install(&lab.node);
    for &v6 in clamp.families() {
        let what = format!("{clamp:?} v6={v6}");
        let even = syn_answer(&lab, v6, &EVEN);
        assert_eq!(
            even,
            Some(1400),
            "{what}: even offset, through the kernel's clamp"
        );
        let errors = pod_tcp_csum_errors(&lab);
        let odd = syn_answer_until(&lab, v6, &ODD, || pod_tcp_csum_errors(&lab) > errors);
        assert_eq!(
            odd, None,
            "{what}: the kernel's clamp of an odd offset was answered"
        );
        assert!(
            pod_tcp_csum_errors(&lab) > errors,
            "{what}: the pod counted no checksum error"
        );
    }
}

pktguard_tests::test_cases!(kernel_clamp {
    kernel_clamp_nft_maxseg_breaks_odd_offsets: KernelClamp::NftMaxseg;
    kernel_clamp_iptables_legacy_breaks_odd_offsets: KernelClamp::IptablesLegacy;
    kernel_clamp_iptables_nft_breaks_odd_offsets: KernelClamp::IptablesNft;
});

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
