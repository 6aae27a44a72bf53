//! What an event says about its packet: family, protocol, addresses and
//! ports, read from the frame only when an event is sent (a clamp, a
//! repair, a malformed GSO packet), never on the common path.

use guard_common::{Event, EventKind, Hook, LinkKind};

use crate::parse::{
    self, Cursor, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, IPV6_HLEN,
    IpVersion, TcpSegment,
};

/// An all-zero event of `kind` from `hook`, written in place into `slot`
/// (not `Event::default()`: see [`mem`](crate::mem)).
#[inline(always)]
pub fn blank(slot: &mut core::mem::MaybeUninit<Event>, kind: EventKind, hook: Hook) -> &mut Event {
    // SAFETY: Event holds only integers.
    let ev = unsafe { crate::mem::zeroed_in(slot) };
    ev.kind = kind as u8;
    ev.hook = hook as u8;
    ev
}

/// Fills `ev` from a TCP segment the clamp has parsed already: fixed
/// offsets from its IP and TCP headers, no second walk of the frame.
#[inline(always)]
pub fn describe_tcp(c: &Cursor, seg: &TcpSegment, ev: &mut Event) {
    ev.proto = IPPROTO_TCP;
    match seg.ip {
        IpVersion::V4 => {
            ev.family = 4;
            if let Some(b) = c.bytes::<8>(seg.l3 + 12) {
                // SAFETY: bounds checked by `bytes`.
                let a = unsafe { &*b };
                ev.saddr[..4].copy_from_slice(&a[..4]);
                ev.daddr[..4].copy_from_slice(&a[4..]);
            }
        }
        IpVersion::V6 => {
            ev.family = 6;
            if let Some(b) = c.bytes::<32>(seg.l3 + 8) {
                // SAFETY: bounds checked by `bytes`.
                let a = unsafe { &*b };
                ev.saddr.copy_from_slice(&a[..16]);
                ev.daddr.copy_from_slice(&a[16..]);
            }
        }
    }
    if let Some(b) = c.bytes::<4>(seg.tcp) {
        // SAFETY: bounds checked by `bytes`.
        let p = unsafe { &*b };
        ev.sport = u16::from_be_bytes([p[0], p[1]]);
        ev.dport = u16::from_be_bytes([p[2], p[3]]);
    }
}

/// Fills `ev`'s family, protocol, addresses and ports from the outermost
/// IP header of the frame; leaves them 0 where the frame does not say.
#[inline(always)]
pub fn describe(c: &Cursor, link: LinkKind, ev: &mut Event) {
    let (l3, ethertype) = if link == LinkKind::RawIp {
        match c.be16_at(0).map(|w| w >> 12) {
            Some(4) => (0, ETH_P_IP),
            Some(6) => (0, ETH_P_IPV6),
            _ => return,
        }
    } else {
        match parse::ethernet(c) {
            Ok(x) => x,
            Err(_) => return,
        }
    };
    let l4 = match ethertype {
        ETH_P_IP => {
            let Some(b) = c.bytes::<IPV4_MIN_HLEN>(l3) else {
                return;
            };
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            ev.family = 4;
            ev.proto = h[9];
            ev.saddr[..4].copy_from_slice(&h[12..16]);
            ev.daddr[..4].copy_from_slice(&h[16..20]);
            // Later fragments carry no ports, and an IHL under 5 (20
            // bytes) does not say where they are.
            let ihl = (h[0] & 0x0f) as usize;
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 || ihl * 4 < IPV4_MIN_HLEN {
                return;
            }
            l3 + ihl * 4
        }
        ETH_P_IPV6 => {
            let Some(b) = c.bytes::<IPV6_HLEN>(l3) else {
                return;
            };
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            ev.family = 6;
            ev.proto = h[6];
            ev.saddr.copy_from_slice(&h[8..24]);
            ev.daddr.copy_from_slice(&h[24..40]);
            l3 + IPV6_HLEN
        }
        _ => return,
    };
    if ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP {
        ev.sport = c.be16_at(l4).unwrap_or(0);
        ev.dport = c.be16_at(l4 + 2).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{Segment, udp_frame};

    #[test]
    fn tcp_and_udp_frames_are_described() {
        let mut f = Segment::syn(&[]).build();
        let mut ev = Event::default();
        describe(&Cursor::from_slice(&mut f), LinkKind::Ethernet, &mut ev);
        assert_eq!(
            (ev.family, ev.proto, ev.sport, ev.dport),
            (4, 6, 40000, 8080)
        );
        assert_eq!(&ev.saddr[..4], &[10, 77, 1, 2]);
        assert_eq!(&ev.daddr[..4], &[10, 77, 2, 2]);
        let mut seg = Segment::syn(&[]);
        seg.v6 = true;
        let mut f = seg.build();
        let mut ev = Event::default();
        describe(&Cursor::from_slice(&mut f), LinkKind::Ethernet, &mut ev);
        assert_eq!((ev.family, ev.proto, ev.dport), (6, 6, 8080));
        let mut f = udp_frame(&[1; 10], false);
        let mut ev = Event::default();
        describe(&Cursor::from_slice(&mut f), LinkKind::Ethernet, &mut ev);
        assert_eq!((ev.family, ev.proto), (4, 17));
        let mut f = Segment::syn(&[]).build();
        let c = Cursor::from_slice(&mut f);
        let seg = crate::parse::to_tcp(&c, false).unwrap();
        let mut by_seg = Event::default();
        describe_tcp(&c, &seg, &mut by_seg);
        let mut by_walk = Event::default();
        describe(&c, LinkKind::Ethernet, &mut by_walk);
        assert_eq!(by_seg, by_walk);
        let mut f = vec![0u8; 10];
        let mut ev = Event::default();
        describe(&Cursor::from_slice(&mut f), LinkKind::Ethernet, &mut ev);
        assert_eq!(ev, Event::default());
    }

    /// An IPv4 header length under 20 bytes: the addresses are the
    /// header's, but no ports are read from where the header claims to end.
    #[test]
    fn an_ihl_under_5_gives_no_ports() {
        for ihl in 0..5u8 {
            let mut f = Segment::syn(&[]).build();
            f[14] = 0x40 | ihl;
            let mut ev = Event::default();
            describe(&Cursor::from_slice(&mut f), LinkKind::Ethernet, &mut ev);
            assert_eq!((ev.family, ev.proto), (4, 6), "ihl {ihl}");
            assert_eq!(&ev.saddr[..4], &[10, 77, 1, 2], "ihl {ihl}");
            assert_eq!((ev.sport, ev.dport), (0, 0), "ihl {ihl}");
        }
    }
}
