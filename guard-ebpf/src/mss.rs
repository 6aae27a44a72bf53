//! The MSS clamp: lower the MSS option of SYN and SYN-ACK segments to what
//! the narrowest link can carry. Never raises it, never drops a packet.

use guard_common::{LinkKind, MssConfig, MssCounter};

use crate::{
    csum,
    parse::{self, Cursor, IpVersion, NotTcp, TCP_RST, TCP_SYN},
    tcpopt::{self, MssOption},
};

/// Offset of the checksum inside the TCP header.
const TCP_CHECK_OFF: usize = 16;

/// One MSS rewrite, in frame offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MssRewrite {
    pub mss_off: usize,
    pub check_off: usize,
    pub old: u16,
    pub new: u16,
    /// The MSS value starts at an odd offset of the TCP header (after a NOP).
    pub odd: bool,
}

/// What the clamp needs from a program context: the bytes, and a way to
/// change the MSS that keeps the TCP checksum right for that context.
pub trait Frame {
    fn cursor(&self) -> Cursor;
    /// Returns false when the context refused the write.
    fn rewrite_mss(&mut self, rw: &MssRewrite) -> bool;
}

/// A frame whose bytes are written in place and whose TCP checksum is final
/// (XDP, and host byte slices): RFC 1624 update by hand.
pub struct DirectFrame(pub Cursor);

impl Frame for DirectFrame {
    #[inline(always)]
    fn cursor(&self) -> Cursor {
        self.0
    }

    #[inline(always)]
    fn rewrite_mss(&mut self, rw: &MssRewrite) -> bool {
        let c = &self.0;
        let Some(check) = c.be16_at(rw.check_off) else {
            return false;
        };
        let parity = rw.odd as usize;
        let check = csum::replace16(
            check,
            csum::word_at(rw.old, parity),
            csum::word_at(rw.new, parity),
        );
        c.set_be16(rw.mss_off, rw.new).is_some() && c.set_be16(rw.check_off, check).is_some()
    }
}

/// What the clamp did with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a TCP segment (or not IP at all).
    NotTcp,
    /// TCP, but not a SYN (or a SYN with RST).
    NotSyn,
    Clamped,
    AlreadySmall,
    NoMssOption,
    /// The clamp for this IP version is 0 (off).
    Disabled,
    Malformed,
    Skipped,
}

impl Verdict {
    /// The counter that names this verdict, besides `seen` and `syn`.
    pub const fn counter(self) -> Option<MssCounter> {
        match self {
            Verdict::Clamped => Some(MssCounter::Clamped),
            Verdict::AlreadySmall => Some(MssCounter::AlreadySmall),
            Verdict::NoMssOption => Some(MssCounter::NoMssOption),
            Verdict::Malformed => Some(MssCounter::Malformed),
            Verdict::Skipped => Some(MssCounter::Skipped),
            Verdict::NotTcp | Verdict::NotSyn | Verdict::Disabled => None,
        }
    }
}

/// Clamps the MSS option of `frame` to `cfg`. The flag tells whether the
/// segment was a SYN (SYN set, RST clear).
#[inline(always)]
pub fn clamp<F: Frame>(frame: &mut F, cfg: &MssConfig) -> (Verdict, bool) {
    let c = frame.cursor();
    let seg = match parse::to_tcp(&c, cfg.link_kind == LinkKind::RawIp as u8) {
        Ok(seg) => seg,
        Err(NotTcp::Other) => return (Verdict::NotTcp, false),
        Err(NotTcp::Malformed) => return (Verdict::Malformed, false),
        Err(NotTcp::Skipped) => return (Verdict::Skipped, false),
    };
    if seg.flags & (TCP_SYN | TCP_RST) != TCP_SYN {
        return (Verdict::NotSyn, false);
    }
    let limit = match seg.ip {
        IpVersion::V4 => cfg.mss_v4,
        IpVersion::V6 => cfg.mss_v6,
    };
    let mss_off = match tcpopt::find_mss(&c, seg.tcp, seg.tcp_hlen) {
        MssOption::At(off) => off,
        MssOption::Absent => return (Verdict::NoMssOption, true),
        MssOption::Malformed => return (Verdict::Malformed, true),
    };
    if limit == 0 {
        return (Verdict::Disabled, true);
    }
    let Some(old) = c.be16_at(mss_off) else {
        return (Verdict::Malformed, true);
    };
    if old <= limit {
        return (Verdict::AlreadySmall, true);
    }
    let rw = MssRewrite {
        mss_off,
        check_off: seg.tcp + TCP_CHECK_OFF,
        old,
        new: limit,
        odd: (mss_off - seg.tcp) & 1 == 1,
    };
    if frame.rewrite_mss(&rw) {
        (Verdict::Clamped, true)
    } else {
        (Verdict::Malformed, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{self, ACK, SYN, Segment};
    use proptest::prelude::*;

    const CFG: MssConfig = MssConfig::new(1400, 1380, LinkKind::Ethernet);

    fn run(frame: &mut [u8]) -> (Verdict, bool) {
        clamp(&mut DirectFrame(Cursor::from_slice(frame)), &CFG)
    }

    #[test]
    fn clamps_syn_and_synack_v4_v6() {
        for seg in [
            Segment::syn(&testpkt::mss(1460)),
            Segment::syn(&testpkt::mss(1460)).flags(SYN | ACK),
            Segment::syn(&testpkt::mss(1460)).v6(),
        ] {
            let mut f = seg.build();
            assert_eq!(run(&mut f), (Verdict::Clamped, true));
            let want = if seg.v6 { 1380 } else { 1400 };
            assert_eq!(testpkt::mss_of(&f), Some(want));
            assert!(testpkt::tcp_checksum_ok(&f));
        }
    }

    /// Every row of the shared table (also run through the compiled
    /// programs by the tests crate) gives its counter and output frame.
    #[test]
    fn case_table() {
        for case in testpkt::mss_cases(CFG.mss_v4, CFG.mss_v6) {
            let mut f = case.frame.clone();
            let (verdict, syn) = run(&mut f);
            assert_eq!(
                (verdict.counter(), syn),
                (case.counter, case.syn),
                "{}",
                case.name
            );
            assert_eq!(f, case.out, "{}: output frame", case.name);
            if case.counter == Some(MssCounter::Clamped) {
                assert!(testpkt::tcp_checksum_ok(&f), "{}", case.name);
            }
        }
    }

    #[test]
    fn raw_ip_devices() {
        let mut seg = Segment::syn(&testpkt::mss(1460));
        seg.raw_ip = true;
        let mut f = seg.build();
        let cfg = MssConfig::new(1400, 1380, LinkKind::RawIp);
        let v = clamp(&mut DirectFrame(Cursor::from_slice(&mut f)), &cfg);
        assert_eq!(v, (Verdict::Clamped, true));
        assert!(testpkt::tcp_checksum_ok(&f));
    }

    proptest! {
        /// Wherever the MSS option sits (any NOP padding before it, odd and
        /// even offsets), the clamp never raises it, lowers it exactly to the
        /// clamp, and leaves a checksum equal to a full recomputation.
        #[test]
        fn clamp_any_offset(
            nops in 0usize..=36,
            value in any::<u16>(),
            v6 in any::<bool>(),
            synack in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut o = vec![1u8; nops];
            o.extend_from_slice(&testpkt::mss(value));
            while o.len() % 4 != 0 {
                o.push(1);
            }
            let mut seg = Segment::syn(&o).payload(&payload);
            if v6 { seg = seg.v6(); }
            if synack { seg = seg.flags(SYN | ACK); }
            let mut f = seg.build();
            let limit = if v6 { CFG.mss_v6 } else { CFG.mss_v4 };
            let (verdict, syn) = run(&mut f);
            prop_assert!(syn);
            prop_assert_eq!(testpkt::mss_of(&f), Some(value.min(limit)));
            prop_assert!(testpkt::tcp_checksum_ok(&f));
            let want = if value > limit { Verdict::Clamped } else { Verdict::AlreadySmall };
            prop_assert_eq!(verdict, want);
        }
    }
}
