//! Overlay checksum repair (incident 4): on the receiving node, verify the
//! outer UDP checksum of VXLAN frames; when it is wrong but the inner TCP/UDP
//! checksum proves the payload intact, only the outer header was mangled (by
//! a second SNAT on an old kernel): rewrite the outer checksum. When the inner
//! checksum is wrong too, the frame is really corrupt and is left alone.
//!
//! Sums here are one's-complement sums of 16-bit words as they lie in memory
//! (what `bpf_csum_diff` returns); a sum is valid when it folds to 0xffff,
//! whatever the byte order.

use guard_common::{LinkKind, MAX_VXLAN_PORTS, RepairConfig, RepairOutcome, RepairWrite};

use crate::{
    csum::fold64,
    parse::{
        self, Cursor, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, IPV4_MIN_HLEN, IPV6_HLEN,
        UDP_HLEN,
    },
};

const VXLAN_HLEN: usize = 8;
/// The VXLAN "I" flag: a valid VNI follows (RFC 7348).
const VXLAN_FLAG_I: u8 = 0x08;

/// What the repair needs from a program context.
pub trait Datagram {
    /// Directly readable headers (outer and inner).
    fn cursor(&self) -> Cursor;
    /// One's-complement sum (memory order, unfolded) of `len` bytes at `off`
    /// added to `seed`; None when they cannot be read.
    fn sum(&self, off: usize, len: usize, seed: u32) -> Option<u32>;
    /// Length of the whole frame, fragments included.
    fn frame_len(&self) -> usize;
    /// A GRO/GSO aggregate, whose checksums are in CHECKSUM_PARTIAL form.
    fn aggregate(&self) -> bool {
        false
    }
    /// Writes the outer UDP checksum field at `off` (memory order) keeping
    /// the context's checksum state consistent.
    fn store_check(&mut self, off: usize, check_mem: u16) -> bool;
}

/// An address whose peer range is asked about: 4 or 16 bytes.
pub enum Peer<'a> {
    V4(&'a [u8; 4]),
    V6(&'a [u8; 16]),
}

#[inline(always)]
fn mem16(hi: u8, lo: u8) -> u32 {
    u16::from_ne_bytes([hi, lo]) as u32
}

/// Sum of a pseudo-header (RFC 768 / RFC 8200 8.1) in memory order.
#[inline(always)]
fn pseudo_sum(c: &Cursor, ip: usize, v6: bool, proto: u8, len: usize) -> Option<u32> {
    let mut s = 0u32;
    if v6 {
        // SAFETY: bounds checked by `bytes`.
        let a = unsafe { &*c.bytes::<32>(ip + 8)? };
        for i in 0..16 {
            s += mem16(a[2 * i], a[2 * i + 1]);
        }
    } else {
        // SAFETY: bounds checked by `bytes`.
        let a = unsafe { &*c.bytes::<8>(ip + 12)? };
        for i in 0..4 {
            s += mem16(a[2 * i], a[2 * i + 1]);
        }
    }
    // IPv4: zero, protocol, length. IPv6: a 32-bit length (< 64 KiB here),
    // three zero bytes, next header: the same words.
    let [hi, lo] = (len as u16).to_be_bytes();
    Some(s + mem16(0, proto) + mem16(hi, lo))
}

/// The outer IP header: offset, version, source address offset, and where
/// the UDP header starts; None when the frame is not UDP we look at.
struct Outer {
    ip: usize,
    v6: bool,
    udp: usize,
    /// The first fragment of a fragmented datagram: not summable alone.
    first_fragment: bool,
}

enum Step<T> {
    Go(T),
    Done(RepairOutcome),
}

#[inline(always)]
fn outer(c: &Cursor, link: LinkKind) -> Step<Outer> {
    use RepairOutcome::*;
    let (ip, ethertype) = if link == LinkKind::RawIp {
        let Some(w) = c.be16_at(0) else {
            return Step::Done(NotVxlan);
        };
        match w >> 12 {
            4 => (0, ETH_P_IP),
            6 => (0, ETH_P_IPV6),
            _ => return Step::Done(NotVxlan),
        }
    } else {
        match parse::ethernet(c) {
            Ok(x) => x,
            Err(_) => return Step::Done(NotVxlan),
        }
    };
    match ethertype {
        ETH_P_IP => {
            let Some(b) = c.bytes::<IPV4_MIN_HLEN>(ip) else {
                return Step::Done(NotVxlan);
            };
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            if h[9] != IPPROTO_UDP || h[0] >> 4 != 4 {
                return Step::Done(NotVxlan);
            }
            let ihl = (h[0] & 0x0f) as usize * 4;
            if ihl < IPV4_MIN_HLEN {
                return Step::Done(NotVxlan);
            }
            // Fragments cannot be summed: later ones are not ours to judge.
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if frag & 0x1fff != 0 {
                return Step::Done(NotVxlan);
            }
            Step::Go(Outer {
                ip,
                v6: false,
                udp: ip + ihl,
                first_fragment: frag & 0x2000 != 0,
            })
        }
        ETH_P_IPV6 => {
            let Some(b) = c.bytes::<IPV6_HLEN>(ip) else {
                return Step::Done(NotVxlan);
            };
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            if h[6] != IPPROTO_UDP || h[0] >> 4 != 6 {
                return Step::Done(NotVxlan);
            }
            Step::Go(Outer {
                ip,
                v6: true,
                udp: ip + IPV6_HLEN,
                first_fragment: false,
            })
        }
        _ => Step::Done(NotVxlan),
    }
}

#[inline(always)]
fn port_matches(cfg: &RepairConfig, port: u16) -> bool {
    let mut i = 0;
    while i < MAX_VXLAN_PORTS {
        if cfg.ports[i] != 0 && cfg.ports[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// The inner L4 segment of a VXLAN payload.
struct Inner {
    ip: usize,
    v6: bool,
    l4: usize,
    l4_len: usize,
    proto: u8,
}

/// Finds the inner TCP/UDP segment of the VXLAN payload at `inner` (inner
/// Ethernet) of a datagram ending at `end`: only one that fills the datagram
/// exactly, with a checksum that can prove anything, qualifies.
#[inline(always)]
fn inner_segment(c: &Cursor, inner: usize, end: usize) -> Result<Inner, RepairOutcome> {
    use RepairOutcome::*;
    let ethertype = c.be16_at(inner + 12).ok_or(Truncated)?;
    let ip = inner + ETH_HLEN;
    let seg = match ethertype {
        ETH_P_IP => {
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*c.bytes::<IPV4_MIN_HLEN>(ip).ok_or(Truncated)? };
            let ihl = (h[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if h[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || total < ihl || frag & 0x3fff != 0 {
                return Err(NotInScope);
            }
            if ip + total != end {
                return Err(NotInScope);
            }
            Inner {
                ip,
                v6: false,
                l4: ip + ihl,
                l4_len: total - ihl,
                proto: h[9],
            }
        }
        ETH_P_IPV6 => {
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*c.bytes::<IPV6_HLEN>(ip).ok_or(Truncated)? };
            let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
            if h[0] >> 4 != 6 || ip + IPV6_HLEN + payload != end {
                return Err(NotInScope);
            }
            Inner {
                ip,
                v6: true,
                l4: ip + IPV6_HLEN,
                l4_len: payload,
                proto: h[6],
            }
        }
        _ => return Err(NotInScope),
    };
    match seg.proto {
        parse::IPPROTO_TCP if seg.l4_len >= parse::TCP_MIN_HLEN => Ok(seg),
        // An inner UDP checksum of 0 proves nothing.
        IPPROTO_UDP if seg.l4_len >= UDP_HLEN => match c.be16_at(seg.l4 + 6).ok_or(Truncated)? {
            0 => Err(NotInScope),
            _ => Ok(seg),
        },
        _ => Err(NotInScope),
    }
}

/// Verifies, and where it is safe repairs, the outer UDP checksum of a
/// VXLAN frame. `config` is asked for UDP only (other traffic never pays
/// for the lookup); `peer_ok` tells whether an outer source is in the peer
/// ranges.
#[inline(always)]
pub fn repair<'a, D: Datagram>(
    d: &mut D,
    link: LinkKind,
    config: impl FnOnce() -> Option<&'a RepairConfig>,
    peer_ok: impl FnOnce(Peer<'_>) -> bool,
) -> RepairOutcome {
    use RepairOutcome::*;
    let c = d.cursor();
    let o = match outer(&c, link) {
        Step::Go(o) => o,
        Step::Done(outcome) => return outcome,
    };
    // SAFETY: bounds checked by `bytes`.
    let Some(udp) = c.bytes::<UDP_HLEN>(o.udp).map(|p| unsafe { *p }) else {
        return NotVxlan;
    };
    let Some(cfg) = config() else {
        return NotVxlan;
    };
    if !port_matches(cfg, u16::from_be_bytes([udp[2], udp[3]])) {
        return NotVxlan;
    }
    let peer = if o.v6 {
        // SAFETY: the IPv6 header was bounds checked by `outer`.
        match c.bytes::<16>(o.ip + 8) {
            Some(p) => cfg.any_peer_v6 != 0 || peer_ok(Peer::V6(unsafe { &*p })),
            None => false,
        }
    } else {
        match c.bytes::<4>(o.ip + 12) {
            // SAFETY: bounds checked by `bytes`.
            Some(p) => cfg.any_peer_v4 != 0 || peer_ok(Peer::V4(unsafe { &*p })),
            None => false,
        }
    };
    if !peer {
        return NotVxlan;
    }
    let check_mem = u16::from_ne_bytes([udp[6], udp[7]]);
    if check_mem == 0 {
        return OuterZero;
    }
    if o.first_fragment {
        return NotInScope;
    }
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    let end = o.udp + udp_len;
    if udp_len < UDP_HLEN + VXLAN_HLEN + ETH_HLEN || end > d.frame_len() {
        return Truncated;
    }
    let (Some(body), Some(pseudo)) = (
        d.sum(o.udp, udp_len, 0),
        pseudo_sum(&c, o.ip, o.v6, IPPROTO_UDP, udp_len),
    ) else {
        return Truncated;
    };
    let sum = body as u64 + pseudo as u64;
    if fold64(sum) == 0xffff {
        return OuterOk;
    }
    // Wrong. Only a VXLAN frame whose inner checksum verifies is repaired:
    // a second pass, over the inner segment, on this rare path only. An
    // aggregate's checksums are not final: nothing to judge.
    if d.aggregate() {
        return NotInScope;
    }
    match c.bytes::<VXLAN_HLEN>(o.udp + UDP_HLEN) {
        // SAFETY: bounds checked by `bytes`.
        Some(v) if unsafe { (*v)[0] } & VXLAN_FLAG_I != 0 => {}
        Some(_) => return NotInScope,
        None => return Truncated,
    }
    let inner = match inner_segment(&c, o.udp + UDP_HLEN + VXLAN_HLEN, end) {
        Ok(i) => i,
        Err(outcome) => return outcome,
    };
    let (Some(inner_body), Some(inner_pseudo)) = (
        d.sum(inner.l4, inner.l4_len, 0),
        pseudo_sum(&c, inner.ip, inner.v6, inner.proto, inner.l4_len),
    ) else {
        return Truncated;
    };
    if fold64(inner_body as u64 + inner_pseudo as u64) != 0xffff {
        return InnerBad;
    }
    let new = if cfg.mode == RepairWrite::Zero as u8 && !o.v6 {
        0
    } else {
        // The sum without the field, complemented; UDP sends 0 as 0xffff.
        match !fold64(sum + (!check_mem) as u64) {
            0 => 0xffff,
            v => v,
        }
    };
    if d.store_check(o.udp + 6, new) {
        OuterRepaired
    } else {
        Truncated
    }
}

/// A host byte slice, for the unit tests and as the model of the programs.
#[cfg(any(test, feature = "std"))]
pub struct SliceDatagram(pub Cursor, pub *mut u8);

#[cfg(any(test, feature = "std"))]
impl SliceDatagram {
    pub fn new(buf: &mut [u8]) -> Self {
        SliceDatagram(Cursor::from_slice(buf), buf.as_mut_ptr())
    }
}

#[cfg(any(test, feature = "std"))]
impl Datagram for SliceDatagram {
    fn cursor(&self) -> Cursor {
        self.0
    }

    fn sum(&self, off: usize, len: usize, mut seed: u32) -> Option<u32> {
        if off + len > self.0.frame_len() {
            return None;
        }
        let mut i = 0;
        while i < len {
            // SAFETY: within the slice (checked above).
            let hi = unsafe { *self.1.add(off + i) };
            let lo = if i + 1 < len {
                unsafe { *self.1.add(off + i + 1) }
            } else {
                0
            };
            seed = crate::csum::fold(seed + mem16(hi, lo)) as u32;
            i += 2;
        }
        Some(seed)
    }

    fn frame_len(&self) -> usize {
        self.0.frame_len()
    }

    fn store_check(&mut self, off: usize, check_mem: u16) -> bool {
        let [a, b] = check_mem.to_ne_bytes();
        // SAFETY: the UDP header was bounds checked by `repair`.
        unsafe {
            *self.1.add(off) = a;
            *self.1.add(off + 1) = b;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{self, Vxlan};

    const CFG: RepairConfig = RepairConfig {
        ports: [4789, 8472, 0, 0],
        mode: RepairWrite::Recompute as u8,
        any_peer_v4: 1,
        any_peer_v6: 1,
        _pad: [0; 5],
    };

    fn run(f: &mut [u8], cfg: &RepairConfig) -> RepairOutcome {
        repair(
            &mut SliceDatagram::new(f),
            LinkKind::Ethernet,
            || Some(cfg),
            |_| false,
        )
    }

    #[test]
    fn case_table() {
        for case in testpkt::repair_cases() {
            let mut f = case.frame.clone();
            assert_eq!(run(&mut f, &CFG), case.outcome, "{}", case.name);
            assert_eq!(f, case.out, "{}: output frame", case.name);
            if case.outcome == RepairOutcome::OuterRepaired {
                assert!(testpkt::outer_checksum_ok(&f), "{}", case.name);
            }
        }
    }

    #[test]
    fn zero_mode_on_ipv4_recompute_on_ipv6() {
        let cfg = RepairConfig {
            mode: RepairWrite::Zero as u8,
            ..CFG
        };
        let tcp = testpkt::Segment::syn(&testpkt::mss(1460)).build();
        let mut v4 = Vxlan::new(tcp.clone());
        v4.zero_csum = true;
        let mut f = v4.build();
        testpkt::double_snat(&mut f);
        assert_eq!(run(&mut f, &cfg), RepairOutcome::OuterRepaired);
        let u = testpkt::outer_udp(&f);
        assert_eq!(f[u + 6..u + 8], [0, 0]);
        let mut v6 = Vxlan::new(tcp);
        v6.v6 = true;
        v6.zero_csum = true;
        let mut f = v6.build();
        testpkt::double_snat(&mut f);
        assert_eq!(run(&mut f, &cfg), RepairOutcome::OuterRepaired);
        assert!(testpkt::outer_checksum_ok(&f));
    }

    #[test]
    fn peers_outside_the_ranges_are_not_touched() {
        let cfg = RepairConfig {
            any_peer_v4: 0,
            ..CFG
        };
        let mut v = Vxlan::new(testpkt::Segment::syn(&[]).build());
        v.zero_csum = true;
        let mut f = v.build();
        testpkt::double_snat(&mut f);
        let before = f.clone();
        let out = repair(
            &mut SliceDatagram::new(&mut f),
            LinkKind::Ethernet,
            || Some(&cfg),
            |p| matches!(p, Peer::V4(a) if a[..3] == [10, 0, 0]),
        );
        assert_eq!(out, RepairOutcome::NotVxlan);
        assert_eq!(f, before);
        let out = repair(
            &mut SliceDatagram::new(&mut f),
            LinkKind::Ethernet,
            || Some(&cfg),
            |p| matches!(p, Peer::V4(a) if a[..3] == [192, 168, 99]),
        );
        assert_eq!(out, RepairOutcome::OuterRepaired);
    }
}
