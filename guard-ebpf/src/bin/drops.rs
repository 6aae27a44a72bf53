//! The drop monitor's object: the `kfree_skb` tracepoint (BTF and raw) and
//! its per-CPU drop map, apart from the guard so that a guarded interface
//! never allocates the map's 16,384 preallocated entries.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read,
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use guard_common::{DROPS_MAX_ENTRIES, DropKey, DropLayout, LT_DROP_LAYOUT};

#[map(name = "DROPS")]
static DROPS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(DROPS_MAX_ENTRIES, 0);

#[map(name = "DROPS_LOST")]
static DROPS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// What the monitor needs to know of the kernel, written by the loader from
/// the tracepoint's format and the kernel's BTF.
#[inline(always)]
fn drop_layout() -> DropLayout {
    guard_ebpf::loadtime_record!(LT_DROP_LAYOUT)
}

/// A kernel value at `base + off`, 0 where it cannot be read.
/// `bpf_probe_read` (not `_kernel`): it exists on every kernel pktguard
/// supports, and x86-64 and arm64 have separate user and kernel spaces.
#[inline(always)]
fn kread<T: Default>(base: u64, off: u32) -> T {
    // SAFETY: the helper checks the address and fails cleanly.
    unsafe { bpf_probe_read((base + off as u64) as *const T).unwrap_or_default() }
}

/// The `kfree_skb` tracepoint (arguments: skb, location, and since 5.17
/// the drop reason) as a BTF tracepoint (5.5+, kernels with BTF): the
/// kernel builds no trace record for it, and the skb's fields are read with
/// plain loads the verifier checks against the kernel's types (faults read
/// as 0). Counts every drop in a per-CPU map keyed by where (the freeing
/// function), why, what (protocol) and on which device; frees that are not
/// drops are skipped.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_monitor_btf(ctx: BtfTracePointContext) -> i32 {
    count_drop::<true>(ctx.arg(0), ctx.arg(1), || ctx.arg(2))
}

/// [`drop_monitor_btf`] as a raw tracepoint (4.17+, no BTF needed): fields
/// are read with `bpf_probe_read`, which costs more per drop.
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn drop_monitor(ctx: RawTracePointContext) -> i32 {
    count_drop::<false>(ctx.arg(0), ctx.arg(1), || ctx.arg(2))
}

/// A kernel value at `base + off`: a plain load (BTF-typed pointers; the
/// verifier checks the offset against the type) or `bpf_probe_read`.
#[inline(always)]
fn field<const BTF: bool, T: Default + Copy>(base: u64, off: u32) -> T {
    if BTF {
        // SAFETY: `base` is a BTF-typed kernel pointer and `off` a member
        // offset from the same BTF; the verifier turns the load into one
        // that reads 0 on a fault.
        unsafe { core::ptr::read_volatile((base + off as u64) as *const T) }
    } else {
        kread(base, off)
    }
}

/// `reason_arg` reads the third argument only where the tracepoint has
/// one: reading past its arguments would make the attach fail before 5.17.
#[inline(always)]
fn count_drop<const BTF: bool>(skb: u64, location: u64, reason_arg: impl FnOnce() -> u64) -> i32 {
    let l = drop_layout();
    let reason = if l.has_reason != 0 {
        reason_arg() as u32
    } else {
        0
    };
    if reason == l.not_dropped_yet || reason == l.consumed {
        return 0;
    }
    let mut slot = core::mem::MaybeUninit::uninit();
    // SAFETY: DropKey holds only integers. Not a struct literal: its zero
    // fields would be a memset call (guard_ebpf::mem).
    let key: &mut DropKey = unsafe { guard_ebpf::mem::zeroed_in(&mut slot) };
    key.location = location;
    key.reason = reason;
    if l.skb_protocol != 0 && skb != 0 {
        key.protocol = u16::from_be(field::<BTF, u16>(skb, l.skb_protocol));
        let dev: u64 = field::<BTF, u64>(skb, l.skb_dev);
        if dev != 0 {
            key.ifindex = field::<BTF, u32>(dev, l.dev_ifindex);
            let net: u64 = field::<BTF, u64>(dev, l.dev_net);
            if net != 0 {
                key.netns = field::<BTF, u32>(net, l.net_inum);
            }
        }
    }
    if let Some(n) = DROPS.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU value.
        unsafe { *n += 1 };
    } else if DROPS
        // On the stack: a `&1` would be a .rodata constant, global data
        // that kernels before 5.2 lack.
        .insert(
            key,
            &(guard_ebpf::parse::opaque(1) as u64),
            BPF_NOEXIST as u64,
        )
        .is_err()
        && let Some(n) = DROPS_LOST.get_ptr_mut(0)
    {
        // Full (or another CPU inserted the key first: rare, counted too).
        // SAFETY: as above.
        unsafe { *n += 1 };
    }
    0
}

guard_ebpf::object!();
