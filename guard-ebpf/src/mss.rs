//! The MSS clamp: lower the MSS option of SYN and SYN-ACK segments to what
//! the narrowest link can carry. Never raises it, never drops a packet.

use guard_common::{LinkKind, MssConfig, MssOutcome};

use crate::{
    csum,
    parse::{self, Cursor, IpVersion, NotTcp, TCP_RST, TCP_SYN, TcpSegment},
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

/// The first half of the clamp: is this a SYN (SYN set, RST clear) the
/// clamp may look at? Everything else ends here with its verdict, before
/// any configuration is read.
#[inline(always)]
pub fn syn_segment(c: &Cursor, link: LinkKind) -> Result<TcpSegment, MssOutcome> {
    let seg = match parse::to_tcp(c, link == LinkKind::RawIp) {
        Ok(seg) => seg,
        Err(NotTcp::Other) => return Err(MssOutcome::NotSyn),
        Err(NotTcp::Malformed) => return Err(MssOutcome::Malformed),
        Err(NotTcp::Skipped) => return Err(MssOutcome::Skipped),
    };
    if seg.flags & (TCP_SYN | TCP_RST) != TCP_SYN {
        return Err(MssOutcome::NotSyn);
    }
    Ok(seg)
}

/// The second half: lowers the MSS option of the SYN `seg` to `cfg`.
#[inline(always)]
pub fn clamp_syn<F: Frame>(frame: &mut F, seg: &TcpSegment, cfg: &MssConfig) -> MssOutcome {
    if seg.untouchable {
        return MssOutcome::SkippedSyn;
    }
    let c = frame.cursor();
    let limit = match seg.ip {
        IpVersion::V4 => cfg.mss_v4,
        IpVersion::V6 => cfg.mss_v6,
    };
    let mss_off = match tcpopt::find_mss(&c, seg.tcp, seg.tcp_hlen) {
        MssOption::At(off) => off,
        MssOption::Absent => return MssOutcome::NoMssOption,
        MssOption::Malformed => return MssOutcome::MalformedSyn,
        MssOption::TooLong => return MssOutcome::SkippedSyn,
    };
    if limit == 0 {
        return MssOutcome::Disabled;
    }
    let Some(old) = c.be16_at(mss_off) else {
        return MssOutcome::MalformedSyn;
    };
    if old <= limit {
        return MssOutcome::AlreadySmall;
    }
    let rw = MssRewrite {
        mss_off,
        check_off: seg.tcp + TCP_CHECK_OFF,
        old,
        new: limit,
        odd: (mss_off - seg.tcp) & 1 == 1,
    };
    if frame.rewrite_mss(&rw) {
        MssOutcome::Clamped
    } else {
        MssOutcome::MalformedSyn
    }
}

/// Both halves.
#[inline(always)]
pub fn clamp<F: Frame>(frame: &mut F, link: LinkKind, cfg: &MssConfig) -> MssOutcome {
    match syn_segment(&frame.cursor(), link) {
        Ok(seg) => clamp_syn(frame, &seg, cfg),
        Err(outcome) => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcpopt;
    use crate::testpkt::{self, ACK, SYN, Segment};
    use proptest::prelude::*;

    const CFG: MssConfig = MssConfig::new(1400, 1380);

    fn run(frame: &mut [u8]) -> MssOutcome {
        clamp(
            &mut DirectFrame(Cursor::from_slice(frame)),
            LinkKind::Ethernet,
            &CFG,
        )
    }

    #[test]
    fn clamps_syn_and_synack_v4_v6() {
        for seg in [
            Segment::syn(&testpkt::mss(1460)),
            Segment::syn(&testpkt::mss(1460)).flags(SYN | ACK),
            Segment::syn(&testpkt::mss(1460)).v6(),
        ] {
            let mut f = seg.build();
            assert_eq!(run(&mut f), MssOutcome::Clamped);
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
            assert_eq!(run(&mut f), case.outcome, "{}", case.name);
            assert_eq!(f, case.out, "{}: output frame", case.name);
            if case.outcome == MssOutcome::Clamped {
                assert!(testpkt::tcp_checksum_ok(&f), "{}", case.name);
            }
        }
    }

    #[test]
    fn raw_ip_devices() {
        let mut seg = Segment::syn(&testpkt::mss(1460));
        seg.raw_ip = true;
        let mut f = seg.build();
        let v = clamp(
            &mut DirectFrame(Cursor::from_slice(&mut f)),
            LinkKind::RawIp,
            &CFG,
        );
        assert_eq!(v, MssOutcome::Clamped);
        assert!(testpkt::tcp_checksum_ok(&f));
    }

    /// Past MAX_OPTION_STEPS options the walk gives up: passed untouched,
    /// counted as skipped, wherever the MSS would have been.
    #[test]
    fn long_option_lists_are_skipped() {
        for nops in tcpopt::MAX_OPTION_STEPS..=36 {
            let mut o = vec![1u8; nops];
            o.extend_from_slice(&testpkt::mss(1460));
            while o.len() % 4 != 0 {
                o.push(1);
            }
            let mut f = Segment::syn(&o).build();
            let before = f.clone();
            assert_eq!(run(&mut f), MssOutcome::SkippedSyn, "{nops} NOPs");
            assert_eq!(f, before);
        }
    }

    proptest! {
        /// Wherever the MSS option sits (any NOP padding before it, odd and
        /// even offsets), the clamp never raises it, lowers it exactly to the
        /// clamp, and leaves a checksum equal to a full recomputation.
        #[test]
        fn clamp_any_offset(
            nops in 0usize..tcpopt::MAX_OPTION_STEPS,
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
            let outcome = run(&mut f);
            prop_assert_eq!(testpkt::mss_of(&f), Some(value.min(limit)));
            prop_assert!(testpkt::tcp_checksum_ok(&f));
            let want = if value > limit { MssOutcome::Clamped } else { MssOutcome::AlreadySmall };
            prop_assert_eq!(outcome, want);
        }
    }
}
