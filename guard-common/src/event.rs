//! The event record sent for the rare interesting packet, and its kinds.

/// One record per interesting packet (clamped, repaired, malformed GSO),
/// sent through a perf event array, rate-limited per CPU in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns).
    pub ts_ns: u64,
    /// An [`EventKind`].
    pub kind: u8,
    /// A [`Hook`].
    pub hook: u8,
    /// 4 or 6 (0: not IP).
    pub family: u8,
    /// IPPROTO_TCP / IPPROTO_UDP.
    pub proto: u8,
    /// The outcome (GsoOutcome for GSO events, RepairOutcome, MssOutcome).
    pub reason: u32,
    /// IPv4 addresses in the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// The new MSS for a clamp; the frame length otherwise.
    pub value: u32,
    /// Events this CPU suppressed (rate limit) since its previous one.
    pub suppressed: u32,
    pub _pad: u32,
}

pod!(Event, 64);

/// What an [`Event`] reports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Clamped = 1,
    Repaired = 2,
    GsoDropped = 3,
    GsoFlagged = 4,
}

impl EventKind {
    pub const fn from_u8(v: u8) -> Option<EventKind> {
        match v {
            1 => Some(EventKind::Clamped),
            2 => Some(EventKind::Repaired),
            3 => Some(EventKind::GsoDropped),
            4 => Some(EventKind::GsoFlagged),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Clamped => "clamped",
            EventKind::Repaired => "repaired",
            EventKind::GsoDropped => "gso_dropped",
            EventKind::GsoFlagged => "gso_flagged",
        }
    }
}

/// Events each CPU may send per second; the rest are counted in the next
/// event's `suppressed`.
pub const EVENTS_PER_SEC_PER_CPU: u32 = 100;
