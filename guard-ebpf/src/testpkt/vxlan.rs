//! VXLAN frames, the pre-5.7 double SNAT that breaks their outer checksum,
//! and the repair's case table.

use super::*;

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
        let pseudo = if self.v6 {
            let src = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let dst = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[17, 64]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&dst);
            pseudo_header(&[src, dst].concat(), 17, udp.len())
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
            pseudo_header(&[src, dst].concat(), 17, udp.len())
        };
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
pub(super) fn outer_pseudo(frame: &[u8], len: usize) -> Vec<u8> {
    let addrs = if frame[12..14] == [0x86, 0xdd] {
        &frame[22..54]
    } else {
        &frame[26..34]
    };
    pseudo_header(addrs, 17, len)
}

/// The outer UDP datagram of a VXLAN frame built here, and its pseudo-header.
pub(super) fn outer_datagram(frame: &[u8]) -> (std::ops::Range<usize>, Vec<u8>) {
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
        let pseudo = pseudo_header(&[src, dst].concat(), 17, udp.len());
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
pub struct RepairCase {
    pub name: String,
    pub frame: Vec<u8>,
    pub outcome: guard_common::RepairOutcome,
    pub out: Vec<u8>,
}

/// The repair's cases, for ports 4789/8472, any peer, mode recompute.
pub fn repair_cases() -> Vec<RepairCase> {
    use guard_common::RepairOutcome::*;
    let tcp4 = Segment::syn(&mss(1460)).payload(&[7; 301]).build();
    let tcp6 = Segment::syn(&mss(1460)).v6().payload(&[7; 300]).build();
    let mangled = |v: &Vxlan| {
        let mut z = v.clone();
        z.zero_csum = true;
        let mut f = z.build();
        double_snat(&mut f);
        f
    };
    let same = |name: &str, frame: Vec<u8>, outcome| RepairCase {
        name: name.into(),
        out: frame.clone(),
        frame,
        outcome,
    };
    let repaired = |name: &str, frame: Vec<u8>| RepairCase {
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
