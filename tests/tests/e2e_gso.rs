//! Incident 1 end to end: GSO packets written into a tap with a
//! virtio_net_hdr are forwarded by a node and segmented on the way to a
//! sink. Valid aggregates arrive the same with and without the guard; a
//! malformed one (gso_size 1: one segment per byte) is dropped and counted.

use std::time::Duration;

use guard_user::lab::gso::{GsoLab, TAP_IF, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6};
use pktguard_tests::{Running, stats_json};

/// What the sink received for one injected packet.
fn deliver(lab: &mut GsoLab, frame: &[u8], gso_type: u8, gso_size: u16) -> (u64, u64) {
    let (p0, b0) = lab.sink_rx().unwrap();
    lab.inject(frame, gso_type, gso_size)
        .expect("the tap took the packet");
    std::thread::sleep(Duration::from_millis(100));
    let (p1, b1) = lab.sink_rx_settled().unwrap();
    (p1 - p0, b1 - b0)
}

/// `pktguard run --gso-guard MODE` on the tap; `None` on a kernel without
/// `__sk_buff.gso_size` (before 5.7), where the one-line refusal is asserted.
fn start_guard(lab: &GsoLab, mode: &str) -> Option<Running> {
    let args = ["--iface", TAP_IF, "--gso-guard", mode];
    if !guard_user::guard::object::gso_size_supported() {
        let out = pktguard_tests::pktguard_in(&lab.node, &[&["run"][..], &args].concat())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("lacks (it exists since 5.7)"), "{stderr}");
        return None;
    }
    Some(Running::start(&lab.node, &args).unwrap())
}

/// Asserts the guard's GSO counters named in `want`, then stops it.
#[track_caller]
fn stop_with_counters(guard: Running, lab: &GsoLab, want: &[(&str, u64)]) {
    let json = stats_json(&lab.node);
    for &(name, n) in want {
        assert_eq!(gso_counter(&json, name), n, "{name}: {json}");
    }
    guard.stop_ok();
}

fn gso_counter(json: &str, name: &str) -> u64 {
    let at = json.find("\"gso\":{").expect("gso stats");
    let rest = &json[at..];
    let at = rest.find(&format!("\"{name}\":")).expect("counter") + name.len() + 3;
    rest[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn valid_aggregates_pass_and_gso_size_1_is_dropped() {
    let mut lab = GsoLab::new().expect("lab namespaces");
    let big = lab.tcp4_frame(60_000);
    let small = lab.tcp4_frame(1000);
    let without_valid = deliver(&mut lab, &big, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
    let without_bad = deliver(&mut lab, &small, VIRTIO_NET_HDR_GSO_TCPV4, 1);
    assert_eq!(
        without_valid.0,
        60_000u64.div_ceil(1448),
        "valid aggregate: {without_valid:?}"
    );
    assert!(
        without_bad.0 >= 900,
        "gso_size 1 did not amplify: {without_bad:?}"
    );

    let Some(guard) = start_guard(&lab, "drop") else {
        return;
    };
    let with_valid = deliver(&mut lab, &big, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
    let with_bad = deliver(&mut lab, &small, VIRTIO_NET_HDR_GSO_TCPV4, 1);
    assert_eq!(
        with_valid, without_valid,
        "the guard changed a valid aggregate"
    );
    assert_eq!(
        with_bad.0, 0,
        "the malformed aggregate got through: {with_bad:?}"
    );
    stop_with_counters(guard, &lab, &[("gso_ok", 1), ("gso_size_too_small", 1)]);
}

/// GRO super-packets of about 64 KB at MSS 536 and 1448, IPv4 and IPv6, are
/// never touched: the same segments reach the sink with the guard (drop) as
/// without it.
#[test]
fn legitimate_64k_aggregates_are_never_dropped() {
    let mut lab = GsoLab::new().expect("lab namespaces");
    let payload = 64_000;
    let cases = [
        (lab.tcp4_frame(payload), VIRTIO_NET_HDR_GSO_TCPV4, 536u16),
        (lab.tcp4_frame(payload), VIRTIO_NET_HDR_GSO_TCPV4, 1448),
        (lab.tcp6_frame(payload), VIRTIO_NET_HDR_GSO_TCPV6, 536),
        (lab.tcp6_frame(payload), VIRTIO_NET_HDR_GSO_TCPV6, 1448),
    ];
    let without: Vec<_> = cases
        .iter()
        .map(|(f, t, s)| deliver(&mut lab, f, *t, *s))
        .collect();
    for ((_, t, size), got) in cases.iter().zip(&without) {
        let want = (payload as u64).div_ceil(*size as u64);
        assert_eq!(got.0, want, "gso type {t}, gso_size {size}: {got:?}");
    }
    let Some(guard) = start_guard(&lab, "drop") else {
        return;
    };
    let with: Vec<_> = cases
        .iter()
        .map(|(f, t, s)| deliver(&mut lab, f, *t, *s))
        .collect();
    assert_eq!(with, without);
    stop_with_counters(guard, &lab, &[("gso_ok", cases.len() as u64)]);
}

/// The tap takes a gso_type that does not match the packet: TCPv4 GSO on an
/// IPv6 packet, TCPv4 GSO on a UDP datagram. Without the guard the stack
/// loses them when it segments; with it each is dropped at ingress and
/// counted under its own reason (read from the skb's shared info).
#[test]
fn mismatched_gso_types_are_dropped_under_their_own_reason() {
    let mut lab = GsoLab::new().expect("lab namespaces");
    let v6 = lab.tcp6_frame(4000);
    let udp = lab.udp4_frame(4000);
    let without_v6 = deliver(&mut lab, &v6, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
    let without_udp = deliver(&mut lab, &udp, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
    eprintln!("without the guard: TCPv4 on IPv6 -> {without_v6:?}, on UDP -> {without_udp:?}");

    let Some(guard) = start_guard(&lab, "drop") else {
        return;
    };
    let with_v6 = deliver(&mut lab, &v6, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
    let with_udp = deliver(&mut lab, &udp, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
    assert_eq!(with_v6, (0, 0), "TCPv4 GSO on IPv6 got through");
    assert_eq!(with_udp, (0, 0), "TCPv4 GSO on UDP got through");
    // A matching type still passes through the typed program.
    let ok = deliver(&mut lab, &v6, VIRTIO_NET_HDR_GSO_TCPV6, 1448);
    assert_eq!(
        ok.0,
        4000u64.div_ceil(1448),
        "valid TCPv6 aggregate: {ok:?}"
    );
    stop_with_counters(
        guard,
        &lab,
        &[("gso_type_vs_ip", 1), ("gso_type_vs_l4", 1), ("gso_ok", 1)],
    );
}

/// flag counts a malformed packet and lets it go on; the tap itself refuses
/// gso_size 0, which the guard therefore never sees.
#[test]
fn flag_counts_and_passes_and_the_tap_refuses_gso_size_0() {
    let mut lab = GsoLab::new().expect("lab namespaces");
    let small = lab.tcp4_frame(1000);
    let Some(guard) = start_guard(&lab, "flag") else {
        return;
    };
    let got = deliver(&mut lab, &small, VIRTIO_NET_HDR_GSO_TCPV4, 1);
    assert!(got.0 >= 900, "flag must let it through: {got:?}");
    assert!(
        lab.inject(&small, VIRTIO_NET_HDR_GSO_TCPV4, 0).is_err(),
        "the tap took gso_size 0"
    );
    stop_with_counters(guard, &lab, &[("gso_size_too_small", 1), ("gso_seen", 1)]);
}
