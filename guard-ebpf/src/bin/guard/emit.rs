//! The guard's events: one perf buffer, rate limited per CPU.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{PerCpuArray, PerfEventArray},
};
use guard_common::{EVENTS_PER_SEC_PER_CPU, Event, EventKind, Hook, LinkKind};
use guard_ebpf::parse::Cursor;

#[map(name = "EVENTS")]
static EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);

/// Per CPU: the start of the current one-second window, the events sent in
/// it, and those suppressed since the last one sent.
#[repr(C)]
struct Rate {
    start: u64,
    sent: u32,
    suppressed: u32,
}

#[map(name = "EVENT_RATE")]
static EVENT_RATE: PerCpuArray<Rate> = PerCpuArray::with_max_entries(1, 0);

/// Sends `ev` unless this CPU sent its share this second: a flood of
/// clamps or drops cannot swamp userspace. The clock is read for events
/// sent (at most the share per second) and once per 64 suppressed ones:
/// reading it for every packet of a flood cost more than the clamp itself
/// (bench rate: 65 ns per SYN in this VM).
#[inline(always)]
pub fn emit<C: EbpfContext>(ctx: &C, ev: &mut Event) {
    let Some(r) = EVENT_RATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let r = unsafe { &mut *r };
    if r.sent >= EVENTS_PER_SEC_PER_CPU {
        r.suppressed += 1;
        if r.suppressed & 63 != 0 {
            return;
        }
        // SAFETY: a helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        if now.wrapping_sub(r.start) < 1_000_000_000 {
            return;
        }
        r.sent = 0;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if r.sent == 0 || now.wrapping_sub(r.start) >= 1_000_000_000 {
        r.start = now;
        r.sent = 0;
    }
    r.sent += 1;
    ev.ts_ns = now;
    ev.suppressed = r.suppressed;
    r.suppressed = 0;
    EVENTS.output(ctx, ev, 0);
}

/// An event of `kind` described from the frame's outermost headers, in
/// `slot`.
#[inline(always)]
pub fn event<'a>(
    slot: &'a mut core::mem::MaybeUninit<Event>,
    kind: EventKind,
    hook: Hook,
    c: &Cursor,
    link: LinkKind,
) -> &'a mut Event {
    let ev = guard_ebpf::event::blank(slot, kind, hook);
    ev.value = c.frame_len() as u32;
    guard_ebpf::event::describe(c, link, ev);
    ev
}
