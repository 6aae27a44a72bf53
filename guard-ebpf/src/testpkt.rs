//! Test frames for the host tests and the BPF_PROG_TEST_RUN tables: built
//! field by field, with checksums computed here, independently of the code
//! under test.

use guard_common::MssOutcome;

use crate::csum::{fold, sum_words};

/// A TCP segment to build.
#[derive(Clone, Debug)]
pub struct Segment {
    pub v6: bool,
    /// Inline 802.1Q tags in front of the IP header (0 for a raw IP frame
    /// means "no Ethernet header at all" only with `raw_ip`).
    pub vlans: usize,
    pub raw_ip: bool,
    /// IPv4 header length in 32-bit words (5..=15); options are NOPs.
    pub ihl: u8,
    pub flags: u8,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    /// IPv4 flags/fragment offset field.
    pub frag: u16,
    /// IPv6 extension headers in front of TCP, 8 bytes each (a fragment
    /// header says "first fragment, more follow").
    pub v6_ext: Vec<u8>,
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const RST: u8 = 0x04;

impl Segment {
    pub fn syn(options: &[u8]) -> Self {
        Segment {
            v6: false,
            vlans: 0,
            raw_ip: false,
            ihl: 5,
            flags: SYN,
            options: options.to_vec(),
            payload: Vec::new(),
            frag: 0x4000, // DF
            v6_ext: Vec::new(),
        }
    }

    pub fn v6(mut self) -> Self {
        self.v6 = true;
        self
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn build(&self) -> Vec<u8> {
        assert!(
            self.options.len().is_multiple_of(4),
            "TCP options must fill whole words"
        );
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&40000u16.to_be_bytes());
        tcp.extend_from_slice(&8080u16.to_be_bytes());
        tcp.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        let ack = if self.flags & ACK != 0 {
            0x0a0b_0c0du32
        } else {
            0
        };
        tcp.extend_from_slice(&ack.to_be_bytes());
        let doff = (20 + self.options.len()) / 4;
        tcp.push((doff as u8) << 4);
        tcp.push(self.flags);
        tcp.extend_from_slice(&64240u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(&self.options);
        tcp.extend_from_slice(&self.payload);

        let mut frame = Vec::new();
        if !self.raw_ip {
            frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
            for _ in 0..self.vlans {
                frame.extend_from_slice(&0x8100u16.to_be_bytes());
                frame.extend_from_slice(&100u16.to_be_bytes());
            }
            let ethertype: u16 = if self.v6 { 0x86dd } else { 0x0800 };
            frame.extend_from_slice(&ethertype.to_be_bytes());
        }
        let l3 = frame.len();
        let pseudo = if self.v6 {
            let src = [0xfd, 0x77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]; // fd77:1::2
            let dst = [0xfd, 0x77, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]; // fd77:2::2
            let ext_len = 8 * self.v6_ext.len();
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&((tcp.len() + ext_len) as u16).to_be_bytes());
            frame.push(self.v6_ext.first().copied().unwrap_or(6));
            frame.push(64);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&dst);
            for (i, kind) in self.v6_ext.iter().enumerate() {
                let next = self.v6_ext.get(i + 1).copied().unwrap_or(6);
                if *kind == 44 {
                    frame.extend_from_slice(&[next, 0, 0, 1, 0, 0, 0x12, 0x34]);
                } else {
                    // Hdr Ext Len 0 (8 bytes): PadN filling the rest.
                    frame.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                }
            }
            let mut p = Vec::new();
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
            p.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 6]);
            p
        } else {
            let src = [10, 77, 1, 2];
            let dst = [10, 77, 2, 2];
            let hlen = self.ihl as usize * 4;
            frame.push(0x40 | self.ihl);
            frame.push(0);
            frame.extend_from_slice(&((hlen + tcp.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[0x12, 0x34]);
            frame.extend_from_slice(&self.frag.to_be_bytes());
            frame.push(64);
            frame.push(6);
            frame.extend_from_slice(&[0, 0]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&dst);
            frame.resize(l3 + hlen.max(20), 1); // IP options: NOPs
            let check = !fold(sum_words(&frame[l3..l3 + hlen.max(20)], 0));
            frame[l3 + 10..l3 + 12].copy_from_slice(&check.to_be_bytes());
            let mut p = Vec::new();
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
            p.extend_from_slice(&[0, 6]);
            p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            p
        };
        let check = !fold(sum_words(&tcp, sum_words(&pseudo, 0)));
        tcp[16..18].copy_from_slice(&check.to_be_bytes());
        frame.extend_from_slice(&tcp);
        frame
    }
}

/// The MSS option with value `mss`.
pub fn mss(mss: u16) -> [u8; 4] {
    let [hi, lo] = mss.to_be_bytes();
    [2, 4, hi, lo]
}

/// Offset of the IP header and the IP version of a frame built here.
fn l3_of(frame: &[u8]) -> (usize, u8) {
    // Ethernet frames built here start with 0x02 (a local MAC address).
    if matches!(frame[0] >> 4, 4 | 6) {
        return (0, frame[0] >> 4);
    }
    let mut off = 12;
    loop {
        match u16::from_be_bytes([frame[off], frame[off + 1]]) {
            0x8100 | 0x88a8 => off += 4,
            0x0800 => return (off + 2, 4),
            0x86dd => return (off + 2, 6),
            t => panic!("not an IP frame: ethertype {t:#x}"),
        }
    }
}

/// Offset of the TCP header of a frame built here.
pub fn tcp_offset(frame: &[u8]) -> usize {
    let (l3, v) = l3_of(frame);
    if v == 4 {
        return l3 + (frame[l3] & 0x0f) as usize * 4;
    }
    let (mut next, mut off) = (frame[l3 + 6], l3 + 40);
    while next != 6 {
        next = frame[off];
        off += 8;
    }
    off
}

/// Whether the TCP checksum of a frame built here verifies, recomputed from
/// scratch over the pseudo-header and the whole segment.
pub fn tcp_checksum_ok(frame: &[u8]) -> bool {
    let (l3, v) = l3_of(frame);
    let tcp = tcp_offset(frame);
    let seg = &frame[tcp..];
    let mut pseudo = Vec::new();
    if v == 4 {
        pseudo.extend_from_slice(&frame[l3 + 12..l3 + 20]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    } else {
        pseudo.extend_from_slice(&frame[l3 + 8..l3 + 40]);
        pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
    }
    fold(sum_words(seg, sum_words(&pseudo, 0))) == 0xffff
}

/// The MSS option value of a frame built here, found by a plain walk.
pub fn mss_of(frame: &[u8]) -> Option<u16> {
    let tcp = tcp_offset(frame);
    let doff = (frame[tcp + 12] >> 4) as usize * 4;
    let opts = &frame[tcp + 20..tcp + doff];
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            2 => return Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]])),
            _ => i += opts[i + 1].max(1) as usize,
        }
    }
    None
}

/// A row of the clamp's table: a frame, the one outcome it must be counted
/// as, and the frame that must come out.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub frame: Vec<u8>,
    pub outcome: MssOutcome,
    pub out: Vec<u8>,
}

fn untouched(name: &str, frame: Vec<u8>, outcome: MssOutcome) -> Case {
    Case {
        name: name.to_string(),
        out: frame.clone(),
        frame,
        outcome,
    }
}

/// `seg` carrying MSS `from` must come out exactly as the same segment
/// built from scratch with MSS `to` (checksums computed afresh).
fn clamped(name: &str, seg: Segment, from: u16, to: u16) -> Case {
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

/// A VXLAN frame to build around an inner Ethernet frame.
#[derive(Clone, Debug)]
pub struct Vxlan {
    pub v6: bool,
    pub inner: Vec<u8>,
    pub dport: u16,
    /// Outer IPv4 header length in words.
    pub ihl: u8,
    /// Send the outer UDP checksum as 0 ("none"), as flannel does.
    pub zero_csum: bool,
    /// Outer IPv4 flags/fragment offset field.
    pub frag: u16,
}

impl Vxlan {
    pub fn new(inner: Vec<u8>) -> Self {
        Vxlan {
            v6: false,
            inner,
            dport: 4789,
            ihl: 5,
            zero_csum: false,
            frag: 0,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut udp = Vec::new();
        udp.extend_from_slice(&50000u16.to_be_bytes());
        udp.extend_from_slice(&self.dport.to_be_bytes());
        udp.extend_from_slice(&((8 + 8 + self.inner.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]); // VNI 1
        udp.extend_from_slice(&self.inner);
        let mut frame = vec![0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa];
        frame.extend_from_slice(&(if self.v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        let l3 = frame.len();
        let mut pseudo = Vec::new();
        if self.v6 {
            let src = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let dst = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[17, 64]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&dst);
            pseudo.extend_from_slice(&src);
            pseudo.extend_from_slice(&dst);
            pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        } else {
            let hlen = self.ihl as usize * 4;
            let (src, dst) = ([192, 168, 99, 1], [192, 168, 99, 2]);
            frame.push(0x40 | self.ihl);
            frame.push(0);
            frame.extend_from_slice(&((hlen + udp.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 1]);
            frame.extend_from_slice(&self.frag.to_be_bytes());
            frame.extend_from_slice(&[64, 17, 0, 0]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&dst);
            frame.resize(l3 + hlen, 1);
            let check = !fold(sum_words(&frame[l3..], 0));
            frame[l3 + 10..l3 + 12].copy_from_slice(&check.to_be_bytes());
            pseudo.extend_from_slice(&src);
            pseudo.extend_from_slice(&dst);
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        }
        if !self.zero_csum {
            let check = match !fold(sum_words(&udp, sum_words(&pseudo, 0))) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&check.to_be_bytes());
        }
        frame.extend_from_slice(&udp);
        frame
    }
}

/// Offset of the outer UDP header of a VXLAN frame built here.
pub fn outer_udp(frame: &[u8]) -> usize {
    if frame[12..14] == [0x86, 0xdd] {
        14 + 40
    } else {
        14 + (frame[14] & 0x0f) as usize * 4
    }
}

/// What pre-5.7 NAT did to a flannel frame on a second SNAT: a checksum of
/// 0 became 0xffff, the source port changed, nothing was fixed up.
pub fn double_snat(frame: &mut [u8]) {
    let udp = outer_udp(frame);
    frame[udp..udp + 2].copy_from_slice(&61000u16.to_be_bytes());
    frame[udp + 6..udp + 8].copy_from_slice(&[0xff, 0xff]);
}

/// The outer pseudo-header of a VXLAN frame built here, for a UDP length.
fn outer_pseudo(frame: &[u8], len: usize) -> Vec<u8> {
    let mut pseudo = Vec::new();
    if frame[12..14] == [0x86, 0xdd] {
        pseudo.extend_from_slice(&frame[22..54]);
        pseudo.extend_from_slice(&(len as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
    } else {
        pseudo.extend_from_slice(&frame[26..34]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    }
    pseudo
}

/// The outer UDP datagram of a VXLAN frame built here, and its pseudo-header.
fn outer_datagram(frame: &[u8]) -> (std::ops::Range<usize>, Vec<u8>) {
    let udp = outer_udp(frame);
    let len = u16::from_be_bytes([frame[udp + 4], frame[udp + 5]]) as usize;
    (udp..udp + len, outer_pseudo(frame, len))
}

/// Whether the outer UDP checksum of a VXLAN frame built here verifies.
pub fn outer_checksum_ok(frame: &[u8]) -> bool {
    let (range, pseudo) = outer_datagram(frame);
    fold(sum_words(&frame[range], sum_words(&pseudo, 0))) == 0xffff
}

/// An Ethernet frame carrying UDP (checksum computed, or 0 with `zero`).
pub fn udp_frame(payload: &[u8], zero: bool) -> Vec<u8> {
    let (src, dst) = ([10, 88, 0, 1], [10, 88, 0, 2]);
    let mut udp = Vec::new();
    udp.extend_from_slice(&5353u16.to_be_bytes());
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    if !zero {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        let check = !fold(sum_words(&udp, sum_words(&pseudo, 0)));
        udp[6..8].copy_from_slice(&check.to_be_bytes());
    }
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let check = !fold(sum_words(&f[14..34], 0));
    f[24..26].copy_from_slice(&check.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// The frame with its outer UDP checksum recomputed from scratch.
pub fn with_outer_fixed(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let (range, pseudo) = outer_datagram(&f);
    let check_at = range.start + 6;
    f[check_at..check_at + 2].copy_from_slice(&[0, 0]);
    let check = match !fold(sum_words(&f[range], sum_words(&pseudo, 0))) {
        0 => 0xffff,
        c => c,
    };
    f[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
    f
}

/// A row of the repair's table.
#[derive(Clone, Debug)]
pub struct CsumCase {
    pub name: String,
    pub frame: Vec<u8>,
    pub outcome: guard_common::CsumOutcome,
    pub out: Vec<u8>,
}

/// The repair's cases, for ports 4789/8472, any peer, mode recompute.
pub fn csum_cases() -> Vec<CsumCase> {
    use guard_common::CsumOutcome::*;
    let tcp4 = Segment::syn(&mss(1460)).payload(&[7; 301]).build();
    let tcp6 = Segment::syn(&mss(1460)).v6().payload(&[7; 300]).build();
    let mangled = |v: &Vxlan| {
        let mut z = v.clone();
        z.zero_csum = true;
        let mut f = z.build();
        double_snat(&mut f);
        f
    };
    let same = |name: &str, frame: Vec<u8>, outcome| CsumCase {
        name: name.into(),
        out: frame.clone(),
        frame,
        outcome,
    };
    let repaired = |name: &str, frame: Vec<u8>| CsumCase {
        name: name.into(),
        out: with_outer_fixed(&frame),
        frame,
        outcome: OuterRepaired,
    };
    let v4 = Vxlan::new(tcp4.clone());
    let mut v6 = Vxlan::new(tcp4.clone());
    v6.v6 = true;
    let mut inner6 = Vxlan::new(tcp6);
    inner6.dport = 8472;
    let mut opts = Vxlan::new(tcp4.clone());
    opts.ihl = 7;
    let inner_udp = Vxlan::new(udp_frame(&[9; 77], false));
    let inner_udp0 = Vxlan::new(udp_frame(&[9; 77], true));
    let mut other_port = Vxlan::new(tcp4.clone());
    other_port.dport = 53;
    let mut corrupt = mangled(&v4);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    let mut no_i_flag = mangled(&v4);
    let u = outer_udp(&no_i_flag);
    no_i_flag[u + 8] = 0;
    let mut zero = v4.clone();
    zero.zero_csum = true;
    let mut first_frag = v4.clone();
    first_frag.frag = 0x2000;
    let mut later_frag = v4.clone();
    later_frag.frag = 0x0100;
    let full = mangled(&v4);
    vec![
        same("valid IPv4 outer", v4.build(), OuterOk),
        same("valid IPv6 outer", v6.build(), OuterOk),
        same("outer checksum 0", zero.build(), OuterZero),
        repaired("double SNAT, IPv4 outer, inner TCP/IPv4", mangled(&v4)),
        repaired("double SNAT, IPv6 outer", mangled(&v6)),
        repaired("double SNAT, inner TCP/IPv6, port 8472", mangled(&inner6)),
        repaired("double SNAT, outer IPv4 options", mangled(&opts)),
        repaired("double SNAT, inner UDP", mangled(&inner_udp)),
        same(
            "double SNAT, inner UDP without checksum",
            mangled(&inner_udp0),
            NotInScope,
        ),
        same("double SNAT and an inner byte flipped", corrupt, InnerBad),
        same("double SNAT, VXLAN I flag clear", no_i_flag, NotInScope),
        same("UDP to another port", mangled(&other_port), NotVxlan),
        same(
            "truncated datagram",
            full[..full.len() - 10].to_vec(),
            Truncated,
        ),
        same("outer first fragment", first_frag.build(), NotInScope),
        same("outer later fragment", later_frag.build(), NotVxlan),
        same("TCP, not UDP", tcp4, NotVxlan),
    ]
}

/// A row of the GSO guard's table.
#[derive(Clone, Debug)]
pub struct GsoCase {
    pub name: String,
    pub frame: Vec<u8>,
    pub gso_size: u32,
    pub gso_segs: u32,
    /// `skb_shinfo(skb)->gso_type` in [`GSO_LAYOUT`]'s bits (0: unknown).
    pub gso_type: u32,
    pub outcome: guard_common::GsoOutcome,
}

/// SKB_GSO_* as Linux 4.x to 6.x number them (the loader reads the running
/// kernel's values from its BTF).
pub const SKB_GSO_TCPV4: u32 = 1 << 0;
pub const SKB_GSO_DODGY: u32 = 1 << 1;
pub const SKB_GSO_TCPV6: u32 = 1 << 4;
pub const SKB_GSO_UDP_TUNNEL: u32 = 1 << 10;
pub const SKB_GSO_UDP_L4: u32 = 1 << 17;

/// The layout the GSO cases are written for.
pub const GSO_LAYOUT: guard_common::GsoLayout = guard_common::GsoLayout {
    skb_head: 0,
    skb_end: 0,
    shinfo_gso_type: 0,
    tcpv4: SKB_GSO_TCPV4,
    tcpv6: SKB_GSO_TCPV6,
    udp: 1 << 16 | SKB_GSO_UDP_L4,
    // GRE, GRE_CSUM, IPXIP4, IPXIP6, UDP_TUNNEL, UDP_TUNNEL_CSUM, ESP.
    tunnel: 0xfc0 | 1 << 15,
    _pad: 0,
};

/// The GSO guard's cases, for its default limits (88, 1024).
pub fn gso_cases() -> Vec<GsoCase> {
    use guard_common::GsoOutcome::*;
    let case = |name: &str, frame: Vec<u8>, gso_size, gso_segs, outcome| GsoCase {
        name: name.into(),
        frame,
        gso_size,
        gso_segs,
        gso_type: 0,
        outcome,
    };
    let typed = |name: &str, frame: Vec<u8>, gso_type, outcome| GsoCase {
        name: name.into(),
        frame,
        gso_size: 1448,
        gso_segs: 0,
        gso_type,
        outcome,
    };
    let (v4_dodgy, v6_dodgy) = (SKB_GSO_TCPV4 | SKB_GSO_DODGY, SKB_GSO_TCPV6 | SKB_GSO_DODGY);
    let data = |v6: bool, n: usize| {
        let mut s = Segment::syn(&[]).flags(ACK).payload(&vec![7; n]);
        s.v6 = v6;
        s.build()
    };
    let v4 = data(false, 3000);
    let tcp = tcp_offset(&v4);
    let mut ihl4 = v4.clone();
    ihl4[14] = 0x44;
    let mut doff4 = v4.clone();
    doff4[tcp + 12] = 4 << 4;
    let mut short_total = v4.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    let mut frag = v4.clone();
    frag[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    let mut icmp = v4.clone();
    icmp[23] = 1;
    let mut arp = v4.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let udp = udp_frame(&[3; 2000], false);
    // A BIG TCP aggregate: IPv4 total length 0, the frame says how long.
    let mut big = data(false, 95_000);
    big[16..18].copy_from_slice(&[0, 0]);
    vec![
        case("not GSO", v4.clone(), 0, 0, NotGso),
        case("TCP/IPv4, 3 segments", v4.clone(), 1448, 3, Ok),
        case("TCP/IPv4, gso_segs 0 (tap/virtio)", v4.clone(), 1448, 0, Ok),
        case("TCP/IPv6, 3 segments", data(true, 3000), 1448, 3, Ok),
        case("UDP, any gso_segs", udp.clone(), 1400, 7, Ok),
        case(
            "gso_size 1 (amplification)",
            v4.clone(),
            1,
            3000,
            SizeTooSmall,
        ),
        case("gso_size 87", v4.clone(), 87, 35, SizeTooSmall),
        case(
            "gso_segs 2 for 3 segments",
            v4.clone(),
            1448,
            2,
            SegsMismatch,
        ),
        case("BIG TCP, 95 kB at MSS 1448", big.clone(), 1448, 66, Ok),
        case(
            "BIG TCP, 95 kB at gso_size 88: 1080 segments",
            big,
            88,
            0,
            TooManySegments,
        ),
        case("ARP", arp, 1448, 0, NotIp),
        case("ICMP", icmp, 1448, 0, NotTcpUdp),
        case("IPv4 fragment", frag, 1448, 0, Fragment),
        case("IHL 4", ihl4, 1448, 0, BadHeaders),
        case("doff 4", doff4, 1448, 0, BadHeaders),
        case(
            "total length below the headers",
            short_total,
            1448,
            0,
            BadHeaders,
        ),
        case(
            "truncated TCP header",
            v4[..tcp + 10].to_vec(),
            1448,
            0,
            BadHeaders,
        ),
        typed("gso_type TCPV4 on TCP/IPv4", v4.clone(), v4_dodgy, Ok),
        typed("gso_type TCPV6 on TCP/IPv6", data(true, 3000), v6_dodgy, Ok),
        typed(
            "gso_type TCPV4 on IPv6",
            data(true, 3000),
            v4_dodgy,
            TypeVsIp,
        ),
        typed("gso_type TCPV6 on IPv4", v4.clone(), v6_dodgy, TypeVsIp),
        typed("gso_type TCPV4 on UDP", udp.clone(), v4_dodgy, TypeVsL4),
        typed("gso_type UDP_L4 on UDP", udp.clone(), SKB_GSO_UDP_L4, Ok),
        typed(
            "gso_type UDP_L4 on TCP",
            v4.clone(),
            SKB_GSO_UDP_L4,
            TypeVsL4,
        ),
        typed(
            "gso_type TCPV4 inside a UDP tunnel (inner type: not judged)",
            udp,
            SKB_GSO_TCPV4 | SKB_GSO_UDP_TUNNEL,
            Ok,
        ),
    ]
}
