//! The compiled programs in the real kernel under BPF_PROG_TEST_RUN: one row
//! per case of the clamp's table, at XDP and at TC ingress and egress.

use guard_common::{
    Hook, LinkKind, MssConfig, MssOutcome, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
};
use guard_ebpf::testpkt::{self, Segment, mss_cases};
use pktguard_tests::{Loaded, Table};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1): the clamp never decides a packet's fate.
const TC_ACT_UNSPEC: u32 = u32::MAX;
const V4: u16 = 1400;
const V6: u16 = 1380;

fn table(prog: &str, hook: Hook, verdict: u32) {
    let loaded = Loaded::new(MssConfig::new(V4, V6), LinkKind::Ethernet).expect("load the object");
    let mut table = Table::new(prog);
    for case in &mss_cases(V4, V6) {
        let before = loaded.counters().unwrap()[hook as usize].clone();
        // The skb harness refuses frames too short for their IP header
        // on 6.x; 5.10 runs them, and the program must then count them as
        // the row says (malformed).
        let ran = match loaded.run(prog, &case.frame, 1) {
            Err(_) if hook != Hook::XdpIngress && kernel_refuses_at_tc(&case.frame) => continue,
            r => r.unwrap_or_else(|e| panic!("{}: {e:#}", case.name)),
        };
        let after = loaded.counters().unwrap()[hook as usize].clone();
        let mut why = Vec::new();
        if case.outcome == MssOutcome::Clamped && !testpkt::tcp_checksum_ok(&ran.out) {
            why.push("bad TCP checksum".to_string());
        }
        // Exactly one outcome is counted per packet: this row's.
        for o in MssOutcome::ALL {
            let delta = after.outcome(o) - before.outcome(o);
            let want = (o == case.outcome) as u64;
            if delta != want {
                why.push(format!("{o:?} moved by {delta} (want {want})"));
            }
        }
        table.row(&case.name, &ran, verdict, &case.out, why);
    }
    table.finish();
}

/// The skb test harness pulls the IP header itself and refuses (EINVAL)
/// frames too short for it; such rows run at XDP only.
fn kernel_refuses_at_tc(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12..14] == [0x08, 0x00] && frame.len() < 14 + 20
}

pktguard_tests::test_cases!(table {
    xdp_table: PROG_XDP, Hook::XdpIngress, XDP_PASS;
    tc_ingress_table: PROG_TC_INGRESS, Hook::TcIngress, TC_ACT_UNSPEC;
    tc_egress_table: PROG_TC_EGRESS, Hook::TcEgress, TC_ACT_UNSPEC;
});

/// The clamp lives in a map: changing it changes what a loaded program does.
#[test]
fn clamp_changes_at_runtime() {
    let mut loaded = Loaded::new(MssConfig::new(1400, 1380), LinkKind::Ethernet).unwrap();
    let syn = Segment::syn(&testpkt::mss(1460)).build();
    let ran = loaded.run(PROG_XDP, &syn, 1).unwrap();
    assert_eq!(testpkt::mss_of(&ran.out), Some(1400));
    loaded.set_config(MssConfig::new(1200, 1180)).unwrap();
    let ran = loaded.run(PROG_XDP, &syn, 1).unwrap();
    assert_eq!(testpkt::mss_of(&ran.out), Some(1200));
    assert!(testpkt::tcp_checksum_ok(&ran.out));
    // 0 turns the clamp off for that family: the SYN passes unchanged.
    loaded.set_config(MssConfig::new(0, 0)).unwrap();
    let ran = loaded.run(PROG_XDP, &syn, 1).unwrap();
    assert_eq!(ran.out, syn);
}

/// Raw-IP devices (tun, wireguard, ipip) carry no Ethernet header.
#[test]
fn raw_ip_frames() {
    let loaded = Loaded::new(MssConfig::new(1400, 1380), LinkKind::RawIp).unwrap();
    for v6 in [false, true] {
        let mut seg = Segment::syn(&testpkt::mss(1460));
        seg.raw_ip = true;
        seg.v6 = v6;
        // BPF_PROG_TEST_RUN needs an Ethernet-sized frame for TC; XDP takes it raw.
        let ran = loaded.run(PROG_XDP, &seg.build(), 1).unwrap();
        assert_eq!(
            testpkt::mss_of(&ran.out),
            Some(if v6 { 1380 } else { 1400 })
        );
        assert!(testpkt::tcp_checksum_ok(&ran.out));
    }
}
