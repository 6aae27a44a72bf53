//! The clamp's case table: every frame shape with the outcome it must
//! count and the MSS it must leave.

use super::*;

/// A row of the clamp's table: a frame, the one outcome it must be counted
/// as, and the frame that must come out.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub frame: Vec<u8>,
    pub outcome: MssOutcome,
    pub out: Vec<u8>,
}

pub(super) fn untouched(name: &str, frame: Vec<u8>, outcome: MssOutcome) -> Case {
    Case {
        name: name.to_string(),
        out: frame.clone(),
        frame,
        outcome,
    }
}

/// `seg` carrying MSS `from` must come out exactly as the same segment
/// built from scratch with MSS `to` (checksums computed afresh).
pub(super) fn clamped(name: &str, seg: Segment, from: u16, to: u16) -> Case {
    let with = |v: u16| {
        let mut s = seg.clone();
        let at = s
            .options
            .windows(2)
            .position(|w| w == [2, 4])
            .expect("an MSS option");
        s.options[at..at + 4].copy_from_slice(&mss(v));
        s.build()
    };
    Case {
        name: name.to_string(),
        frame: with(from),
        outcome: MssOutcome::Clamped,
        out: with(to),
    }
}

/// The clamp's cases: every kind of frame the issue names, for clamps
/// `v4` and `v6` (both below 1460).
pub fn mss_cases(v4: u16, v6: u16) -> Vec<Case> {
    use MssOutcome::*;
    let m = mss(1460);
    let odd = [&[1][..], &m[..], &[1, 1, 1][..]].concat();
    let with_ts = [&m[..], &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0][..]].concat();
    let sack_first = [&[1, 1, 4, 2][..], &m[..]].concat();
    let mut cases = vec![
        clamped("v4 SYN", Segment::syn(&m), 1460, v4),
        clamped("v4 SYN-ACK", Segment::syn(&m).flags(SYN | ACK), 1460, v4),
        clamped("v6 SYN", Segment::syn(&m).v6(), 1460, v6),
        clamped(
            "v6 SYN-ACK",
            Segment::syn(&m).v6().flags(SYN | ACK),
            1460,
            v6,
        ),
        clamped(
            "MSS at an odd offset (after a NOP)",
            Segment::syn(&odd),
            1460,
            v4,
        ),
        clamped("v6 MSS at an odd offset", Segment::syn(&odd).v6(), 1460, v6),
        clamped(
            "MSS after SACK-permitted",
            Segment::syn(&sack_first),
            1460,
            v4,
        ),
        clamped("MSS before timestamps", Segment::syn(&with_ts), 1460, v4),
        clamped("jumbo MSS 65495", Segment::syn(&mss(65495)), 65495, v4),
    ];
    for vlans in 1..=2 {
        let mut s = Segment::syn(&m);
        s.vlans = vlans;
        cases.push(clamped(&format!("{vlans} VLAN tag(s)"), s, 1460, v4));
    }
    for ihl in [6, 15] {
        let mut s = Segment::syn(&m);
        s.ihl = ihl;
        cases.push(clamped(&format!("IPv4 IHL {ihl}"), s, 1460, v4));
    }
    let payload = Segment::syn(&m).payload(&[0xab; 33]);
    cases.push(clamped("SYN with an odd-length payload", payload, 1460, v4));

    cases.push(untouched(
        "MSS below the clamp",
        Segment::syn(&mss(v4 - 100)).build(),
        AlreadySmall,
    ));
    cases.push(untouched(
        "MSS equal to the clamp",
        Segment::syn(&mss(v4)).build(),
        AlreadySmall,
    ));
    cases.push(untouched(
        "v6 MSS below the clamp",
        Segment::syn(&mss(v6 - 1)).v6().build(),
        AlreadySmall,
    ));
    cases.push(untouched(
        "SYN without options",
        Segment::syn(&[]).build(),
        NoMssOption,
    ));
    cases.push(untouched(
        "40 bytes of NOPs (longer than the walk)",
        Segment::syn(&[1; 40]).build(),
        SkippedSyn,
    ));
    let eol = [&[0, 1, 1, 1][..], &m[..]].concat();
    cases.push(untouched(
        "EOL before the MSS",
        Segment::syn(&eol).build(),
        NoMssOption,
    ));
    cases.push(untouched(
        "data segment",
        Segment::syn(&m).flags(ACK).payload(&[1; 100]).build(),
        NotSyn,
    ));
    cases.push(untouched(
        "SYN+RST",
        Segment::syn(&m).flags(SYN | RST).build(),
        NotSyn,
    ));
    cases.push(untouched(
        "option length 0",
        Segment::syn(&[8, 0, 1, 1]).build(),
        MalformedSyn,
    ));
    cases.push(untouched(
        "option length 1",
        Segment::syn(&[8, 1, 1, 1]).build(),
        MalformedSyn,
    ));
    cases.push(untouched(
        "option past the header",
        Segment::syn(&[1, 1, 8, 10]).build(),
        MalformedSyn,
    ));
    cases.push(untouched(
        "kind on the last byte",
        Segment::syn(&[1, 1, 1, 8]).build(),
        MalformedSyn,
    ));
    cases.push(untouched(
        "MSS length 3",
        Segment::syn(&[2, 3, 5, 1]).build(),
        MalformedSyn,
    ));

    let base = Segment::syn(&m);
    let mut ihl4 = base.clone();
    ihl4.ihl = 4;
    cases.push(untouched("IPv4 IHL 4", ihl4.build(), Malformed));
    let full = base.build();
    let tcp = tcp_offset(&full);
    let mut doff4 = full.clone();
    doff4[tcp + 12] = 4 << 4;
    cases.push(untouched("TCP doff 4", doff4, Malformed));
    let mut doff15 = full.clone();
    doff15[tcp + 12] = 15 << 4;
    cases.push(untouched("TCP doff past the segment", doff15, Malformed));
    cases.push(untouched(
        "truncated TCP header",
        full[..tcp + 10].to_vec(),
        Malformed,
    ));
    cases.push(untouched(
        "truncated IPv4 header",
        full[..24].to_vec(),
        Malformed,
    ));
    let mut frag = base.clone();
    frag.frag = 0x2000;
    cases.push(untouched(
        "IPv4 SYN in a first fragment",
        frag.build(),
        SkippedSyn,
    ));
    let mut later = base.clone();
    later.frag = 0x0010;
    cases.push(untouched("IPv4 later fragment", later.build(), NotSyn));
    let behind = |exts: &[u8]| {
        let mut s = base.clone().v6();
        s.v6_ext = exts.to_vec();
        s
    };
    cases.push(untouched(
        "IPv6 SYN behind destination options",
        behind(&[60]).build(),
        SkippedSyn,
    ));
    cases.push(untouched(
        "IPv6 SYN behind hop-by-hop and routing",
        behind(&[0, 43]).build(),
        SkippedSyn,
    ));
    cases.push(untouched(
        "IPv6 SYN in a first fragment",
        behind(&[44]).build(),
        SkippedSyn,
    ));
    cases.push(untouched(
        "IPv6 SYN behind 5 extension headers",
        behind(&[0, 60, 60, 60, 60]).build(),
        Skipped,
    ));
    cases.push(untouched(
        "IPv6 data segment behind destination options",
        behind(&[60]).flags(ACK).build(),
        NotSyn,
    ));
    let mut mld = behind(&[0]).build();
    mld[14 + 40] = 58; // hop-by-hop, then ICMPv6: an MLD report
    cases.push(untouched("ICMPv6 behind hop-by-hop (MLD)", mld, NotSyn));
    let mut arp = full.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    cases.push(untouched("not IP (ARP ethertype)", arp, NotSyn));
    let mut udp = full.clone();
    udp[14 + 9] = 17;
    cases.push(untouched("UDP", udp, NotSyn));
    cases
}
