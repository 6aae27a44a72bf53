//! Every counter: each feature's outcomes (one per packet, indexed per
//! [`Hook`] in its per-CPU counter map), the clamp's reported counters, and
//! the maps' sizes.

use crate::Hook;

named_enum! {
    /// What the clamp did with one packet. The programs count exactly one
    /// outcome per packet (one per-CPU increment, the whole cost of counting);
    /// the counters operators read ([`MssCounter`]) are sums of outcomes.
    /// `name()` is the outcome's name in metrics (`reason` label).
    pub enum MssOutcome: u32, indexed by Hook {
        /// Not TCP, or TCP without SYN (or with RST): passed.
        NotSyn = 0 => "not_syn",
        /// A SYN whose MSS option was lowered to the clamp.
        Clamped = 1 => "clamped",
        /// A SYN whose MSS was already at or below the clamp.
        AlreadySmall = 2 => "already_small",
        /// A SYN without an MSS option (left unchanged).
        NoMssOption = 3 => "no_mss_option",
        /// A SYN of a family whose clamp is 0 (off).
        Disabled = 4 => "disabled",
        /// A SYN with malformed options: passed untouched.
        MalformedSyn = 5 => "malformed_syn",
        /// Truncated or inconsistent headers: passed untouched.
        Malformed = 6 => "malformed",
        /// A SYN behind IPv6 extension headers or in a fragment: passed untouched.
        SkippedSyn = 7 => "skipped_syn",
        /// More IPv6 extension headers than the parser walks, or ESP.
        Skipped = 8 => "skipped",
    }
}

impl MssOutcome {
    pub const fn is_syn(self) -> bool {
        matches!(
            self,
            MssOutcome::Clamped
                | MssOutcome::AlreadySmall
                | MssOutcome::NoMssOption
                | MssOutcome::Disabled
                | MssOutcome::MalformedSyn
                | MssOutcome::SkippedSyn
        )
    }

    /// The reported counter this outcome adds to, besides `seen` (and `syn`).
    pub const fn counter(self) -> Option<MssCounter> {
        match self {
            MssOutcome::NotSyn | MssOutcome::Disabled => None,
            MssOutcome::Clamped => Some(MssCounter::Clamped),
            MssOutcome::AlreadySmall => Some(MssCounter::AlreadySmall),
            MssOutcome::NoMssOption => Some(MssCounter::NoMssOption),
            MssOutcome::MalformedSyn | MssOutcome::Malformed => Some(MssCounter::Malformed),
            MssOutcome::SkippedSyn | MssOutcome::Skipped => Some(MssCounter::Skipped),
        }
    }
}

named_enum! {
    /// The counters of the MSS clamp as operators read them, per [`Hook`].
    pub enum MssCounter: u32 {
        /// Every packet the program ran on.
        Seen = 0 => "seen",
        /// TCP segments with SYN set and RST clear (SYN and SYN-ACK).
        Syn = 1 => "syn",
        /// SYNs whose MSS option was lowered to the clamp.
        Clamped = 2 => "clamped",
        /// SYNs whose MSS was already at or below the clamp.
        AlreadySmall = 3 => "already_small",
        /// SYNs without an MSS option (left unchanged).
        NoMssOption = 4 => "no_mss_option",
        /// Truncated or inconsistent headers or options: passed untouched.
        Malformed = 5 => "malformed",
        /// SYNs behind IPv6 extension headers or in fragments, and extension
        /// header chains too deep to walk: passed untouched.
        Skipped = 6 => "skipped",
    }
}

impl MssCounter {
    /// The reported counters, from the outcome counts of one hook.
    pub fn from_outcomes(outcomes: &[u64; MssOutcome::COUNT]) -> [u64; MssCounter::COUNT] {
        let mut c = [0u64; MssCounter::COUNT];
        for o in MssOutcome::ALL {
            let n = outcomes[o as usize];
            c[MssCounter::Seen as usize] += n;
            if o.is_syn() {
                c[MssCounter::Syn as usize] += n;
            }
            if let Some(counter) = o.counter() {
                c[counter as usize] += n;
            }
        }
        c
    }
}

/// Number of entries of the counter map.
pub const MSS_COUNTER_ENTRIES: u32 = (Hook::COUNT * MssOutcome::COUNT) as u32;

named_enum! {
    /// What the overlay checksum repair did with one packet (one per packet).
    /// `name()` is the reported counter's (`vxlan_seen` is the sum of all
    /// but `NotVxlan`).
    pub enum RepairOutcome: u32, indexed by Hook {
        /// Not UDP to a VXLAN port from a peer range: none of its business,
        /// and not counted (the programs skip the increment).
        NotVxlan = 0 => "not_vxlan",
        /// The outer UDP checksum verifies.
        OuterOk = 1 => "outer_ok",
        /// The outer UDP checksum is 0 ("none"): left alone.
        OuterZero = 2 => "outer_zero",
        /// The outer checksum was wrong, the inner one proved the payload
        /// intact: the outer checksum was rewritten.
        OuterRepaired = 3 => "outer_repaired",
        /// Outer and inner checksums both wrong: real corruption, untouched.
        InnerBad = 4 => "unrepairable_inner_bad",
        /// Outer checksum wrong, but nothing inside can prove the payload
        /// intact (inner not TCP/UDP, inner UDP without checksum, a fragment,
        /// a GSO aggregate): untouched.
        NotInScope = 5 => "not_in_scope",
        /// Headers cut short, or a datagram longer than the repair sums.
        Truncated = 6 => "truncated",
    }
}

/// Number of entries of the repair's counter map.
pub const CSUM_COUNTER_ENTRIES: u32 = (Hook::COUNT * RepairOutcome::COUNT) as u32;

named_enum! {
    /// What the GSO guard found in one packet (counted once per GSO packet).
    /// `name()` is the reason's name in `pktguard stats` (`gso_ok` for a
    /// good packet).
    pub enum GsoOutcome: u32, indexed by Hook {
        /// Not a GSO packet (gso_size 0): not counted.
        NotGso = 0 => "not_gso",
        /// A GSO packet whose metadata is consistent.
        Ok = 1 => "gso_ok",
        /// L3 (after VLAN tags) is neither IPv4 nor IPv6.
        NotIp = 2 => "not_ip",
        /// L4 is neither TCP nor UDP.
        NotTcpUdp = 3 => "not_tcp_udp",
        /// An IPv4 fragment.
        Fragment = 4 => "ipv4_fragment",
        /// ihl < 5, doff < 5, headers past the packet, total length below the headers.
        BadHeaders = 5 => "bad_headers",
        /// gso_size below the minimum (amplification: gso_size 1 makes thousands of segments).
        SizeTooSmall = 6 => "gso_size_too_small",
        /// ceil(payload / gso_size) above the maximum.
        TooManySegments = 7 => "too_many_segments",
        /// gso_segs set and different from ceil(payload / gso_size).
        SegsMismatch = 8 => "gso_segs_mismatch",
        /// gso_type names the other IP version (TCPv4 GSO on an IPv6 packet).
        TypeVsIp = 9 => "gso_type_vs_ip",
        /// gso_type names another L4 protocol (TCP GSO on a UDP packet).
        TypeVsL4 = 10 => "gso_type_vs_l4",
    }
}

impl GsoOutcome {
    /// A malformed packet: dropped or flagged, by `--gso-guard`.
    pub const fn is_malformed(self) -> bool {
        !matches!(self, GsoOutcome::NotGso | GsoOutcome::Ok)
    }
}

pub const GSO_COUNTER_ENTRIES: u32 = (Hook::COUNT * GsoOutcome::COUNT) as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_indexes_are_dense_and_unique() {
        let mut seen = [false; MSS_COUNTER_ENTRIES as usize];
        for hook in Hook::ALL {
            for o in MssOutcome::ALL {
                let i = o.index(hook) as usize;
                assert!(!seen[i], "index {i} used twice");
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        for (i, o) in MssOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn reported_counters_are_sums_of_outcomes() {
        let mut outcomes = [0u64; MssOutcome::COUNT];
        for (i, o) in MssOutcome::ALL.iter().enumerate() {
            outcomes[*o as usize] = 1 << i;
        }
        let c = MssCounter::from_outcomes(&outcomes);
        assert_eq!(c[MssCounter::Seen as usize], (1 << MssOutcome::COUNT) - 1);
        assert_eq!(c[MssCounter::Syn as usize], 2 + 4 + 8 + 16 + 32 + 128);
        assert_eq!(c[MssCounter::Clamped as usize], 2);
        assert_eq!(c[MssCounter::Malformed as usize], 32 + 64);
        assert_eq!(c[MssCounter::Skipped as usize], 128 + 256);
    }
}
