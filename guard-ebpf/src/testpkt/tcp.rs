//! TCP segments in Ethernet frames (IPv4 or IPv6), built field by field,
//! and the readers the tests check them with (offsets, checksum, MSS).

use super::*;

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
            pseudo_header(&[src, dst].concat(), 6, tcp.len())
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
            pseudo_header(&[src, dst].concat(), 6, tcp.len())
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
pub(super) fn l3_of(frame: &[u8]) -> (usize, u8) {
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
    let addrs = if v == 4 {
        &frame[l3 + 12..l3 + 20]
    } else {
        &frame[l3 + 8..l3 + 40]
    };
    let pseudo = pseudo_header(addrs, 6, seg.len());
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
