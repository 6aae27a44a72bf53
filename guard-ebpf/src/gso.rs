//! The malformed-GSO guard (incident 1): a GSO packet (gso_size != 0) whose
//! metadata does not fit its headers dies silently deep in the stack when it
//! is forwarded (skb_warn_bad_offload), or is cut into thousands of segments.
//! Here it is found at TC ingress, counted under its reason, and dropped or
//! flagged.

use guard_common::{GsoConfig, GsoLayout, GsoOutcome, LinkKind};

use crate::parse::{
    self, Cursor, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, IPV6_HLEN,
    TCP_MIN_HLEN, UDP_HLEN,
};

/// A GSO packet's metadata, as the skb carries it.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub gso_size: u32,
    /// 0 is normal for packets from tap/virtio (DODGY): never flagged alone.
    pub gso_segs: u32,
    /// `skb_shinfo(skb)->gso_type`, 0 where unknown (not checked then).
    pub gso_type: u32,
}

/// Checks one packet's GSO metadata against its headers. `layout` gives the
/// running kernel's SKB_GSO_* bits (all 0: gso_type is not checked).
#[inline(always)]
pub fn check(
    c: &Cursor,
    link: LinkKind,
    meta: Meta,
    layout: &GsoLayout,
    cfg: &GsoConfig,
) -> GsoOutcome {
    use GsoOutcome::{
        BadHeaders, Fragment, NotGso, NotIp, NotTcpUdp, SegsMismatch, SizeTooSmall,
        TooManySegments, TypeVsIp, TypeVsL4,
    };
    let Meta {
        gso_size,
        gso_segs,
        gso_type,
    } = meta;
    if gso_size == 0 {
        return NotGso;
    }
    let (l3, ethertype) = if link == LinkKind::RawIp {
        match c.be16_at(0).map(|w| w >> 12) {
            Some(4) => (0, ETH_P_IP),
            Some(6) => (0, ETH_P_IPV6),
            _ => return NotIp,
        }
    } else {
        match parse::ethernet(c) {
            Ok(x) => x,
            Err(_) => return BadHeaders,
        }
    };
    let (l4, proto, end) = match ethertype {
        ETH_P_IP => {
            let Some(b) = c.bytes::<IPV4_MIN_HLEN>(l3) else {
                return BadHeaders;
            };
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            let ihl = (h[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            if h[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN {
                return BadHeaders;
            }
            // BIG TCP aggregates over 64 KiB carry a total length of 0.
            let end = if total == 0 {
                c.frame_len()
            } else {
                l3 + total
            };
            if (total != 0 && total < ihl) || end > c.frame_len() {
                return BadHeaders;
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Fragment;
            }
            (l3 + ihl, h[9], end)
        }
        ETH_P_IPV6 => {
            let Some(b) = c.bytes::<IPV6_HLEN>(l3) else {
                return BadHeaders;
            };
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
            // BIG TCP: a payload length of 0 (jumbo).
            let end = if payload == 0 {
                c.frame_len()
            } else {
                l3 + IPV6_HLEN + payload
            };
            if h[0] >> 4 != 6 || end > c.frame_len() {
                return BadHeaders;
            }
            match parse::ipv6_upper(c, l3 + IPV6_HLEN, h[6]) {
                Ok((off, next, _)) => (off, next, end),
                Err(parse::NotTcp::Malformed) => return BadHeaders,
                Err(_) => return NotTcpUdp,
            }
        }
        _ => return NotIp,
    };
    let l4_hlen = match proto {
        IPPROTO_TCP => {
            let Some(b) = c.bytes::<TCP_MIN_HLEN>(l4) else {
                return BadHeaders;
            };
            // SAFETY: bounds checked by `bytes`.
            let doff = (unsafe { (*b)[12] } >> 4) as usize * 4;
            if doff < TCP_MIN_HLEN {
                return BadHeaders;
            }
            doff
        }
        IPPROTO_UDP => UDP_HLEN,
        _ => return NotTcpUdp,
    };
    if l4 + l4_hlen > end {
        return BadHeaders;
    }
    // An encapsulated aggregate's type bits describe the inner packet,
    // which is not parsed here.
    if gso_type & layout.tunnel == 0 {
        if gso_type & (layout.tcpv4 | layout.tcpv6) != 0 {
            if proto != IPPROTO_TCP {
                return TypeVsL4;
            }
            let want = if ethertype == ETH_P_IP {
                layout.tcpv4
            } else {
                layout.tcpv6
            };
            if gso_type & want == 0 {
                return TypeVsIp;
            }
        } else if gso_type & layout.udp != 0 && proto != IPPROTO_UDP {
            return TypeVsL4;
        }
    }
    if gso_size < cfg.min_size {
        return SizeTooSmall;
    }
    let payload = (end - l4 - l4_hlen) as u64;
    let segs = payload.div_ceil(gso_size as u64);
    if segs > cfg.max_segs as u64 {
        return TooManySegments;
    }
    // For UDP the count cannot be checked: a UDP tunnel aggregate's
    // gso_size counts the inner payload, which this parser does not reach.
    if proto == IPPROTO_TCP && gso_segs != 0 && gso_segs as u64 != segs {
        return SegsMismatch;
    }
    GsoOutcome::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{self, ACK, Segment};
    use guard_common::{GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoAction};

    const CFG: GsoConfig = GsoConfig {
        min_size: GSO_MIN_SIZE_DEFAULT,
        max_segs: GSO_MAX_SEGS_DEFAULT,
        action: GsoAction::Drop as u8,
        _pad: [0; 7],
    };

    fn run(frame: &mut [u8], gso_size: u32, gso_segs: u32) -> GsoOutcome {
        run_typed(frame, gso_size, gso_segs, 0)
    }

    fn run_typed(frame: &mut [u8], gso_size: u32, gso_segs: u32, gso_type: u32) -> GsoOutcome {
        let meta = Meta {
            gso_size,
            gso_segs,
            gso_type,
        };
        check(
            &Cursor::from_slice(frame),
            LinkKind::Ethernet,
            meta,
            &testpkt::GSO_LAYOUT,
            &CFG,
        )
    }

    #[test]
    fn gso_cases() {
        for case in testpkt::gso_cases() {
            let mut f = case.frame.clone();
            assert_eq!(
                run_typed(&mut f, case.gso_size, case.gso_segs, case.gso_type),
                case.outcome,
                "{}",
                case.name
            );
        }
    }

    /// Without a known layout (all bits 0) no gso_type is ever judged.
    #[test]
    fn unknown_layout_never_judges_the_type() {
        for case in testpkt::gso_cases() {
            let mut f = case.frame.clone();
            let meta = Meta {
                gso_size: case.gso_size,
                gso_segs: case.gso_segs,
                gso_type: case.gso_type,
            };
            let got = check(
                &Cursor::from_slice(&mut f),
                LinkKind::Ethernet,
                meta,
                &GsoLayout::default(),
                &CFG,
            );
            assert!(
                !matches!(got, GsoOutcome::TypeVsIp | GsoOutcome::TypeVsL4),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn legitimate_64k_aggregates_pass() {
        for v6 in [false, true] {
            for mss in [536u32, 1448] {
                let payload = 65535 - 40 - 60;
                let mut seg = Segment::syn(&[]).flags(ACK).payload(&vec![1; payload]);
                seg.v6 = v6;
                let mut f = seg.build();
                let segs = (payload as u32).div_ceil(mss);
                assert_eq!(run(&mut f, mss, segs), GsoOutcome::Ok, "v6={v6} mss={mss}");
                assert_eq!(
                    run(&mut f, mss, 0),
                    GsoOutcome::Ok,
                    "DODGY, v6={v6} mss={mss}"
                );
            }
        }
    }
}
