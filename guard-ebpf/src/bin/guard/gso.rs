//! The malformed-GSO guard's TC ingress entry points, maps and layout.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_probe_read_kernel,
    macros::{classifier, map},
    maps::{Array, PerCpuArray},
    programs::TcContext,
};
use guard_common::{
    EventKind, GSO_COUNTER_ENTRIES, GsoAction, GsoConfig, GsoLayout, Hook, LT_GSO_LAYOUT,
};
use guard_ebpf::{
    ctx::{self, sk_buff, tc_cursor},
    gso,
};

use crate::{emit, link_kind};

#[map(name = "GSO_CONFIG")]
static GSO_CONFIG: Array<GsoConfig> = Array::with_max_entries(1, 0);

#[map(name = "GSO_COUNTERS")]
static GSO_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GSO_COUNTER_ENTRIES, 0);

/// Where gso_type lives and what its bits are, from the kernel's BTF
/// (written by the loader; all 0 when unknown).
#[inline(always)]
fn gso_layout() -> GsoLayout {
    guard_ebpf::loadtime_record!(LT_GSO_LAYOUT)
}

/// The malformed-GSO guard, at TC ingress: GSO metadata exists on skbs only.
/// Reads `__sk_buff.gso_size`, which exists since Linux 5.7 (the loader
/// refuses older kernels for this program). A non-GSO packet costs one
/// context load.
#[classifier]
pub fn guard_tc_gso(ctx: TcContext) -> i32 {
    tc_gso::<false>(&ctx)
}

/// [`guard_tc_gso`] that also checks `skb_shinfo(skb)->gso_type` against
/// the headers (TCPv4 GSO on an IPv6 or a UDP packet). The context of a TC
/// program is the kernel's `struct sk_buff`: gso_type is read with
/// `bpf_probe_read_kernel` (root only; every kernel where it is allowed at
/// TC) at offsets from the kernel's BTF. The loader falls back to
/// [`guard_tc_gso`] where the verifier refuses it.
#[classifier]
pub fn guard_tc_gso_typed(ctx: TcContext) -> i32 {
    tc_gso::<true>(&ctx)
}

/// `skb_shinfo(skb)->gso_type`: shinfo sits at `skb->head + skb->end`.
#[inline(always)]
fn gso_type(ctx: &TcContext, layout: &GsoLayout) -> u32 {
    let skb = sk_buff(ctx).cast::<u8>();
    // SAFETY: bpf_probe_read_kernel checks every address it reads.
    unsafe {
        let Ok(head) =
            bpf_probe_read_kernel(skb.wrapping_add(layout.skb_head as usize).cast::<u64>())
        else {
            return 0;
        };
        let Ok(end) =
            bpf_probe_read_kernel(skb.wrapping_add(layout.skb_end as usize).cast::<u32>())
        else {
            return 0;
        };
        let at = head + end as u64 + layout.shinfo_gso_type as u64;
        bpf_probe_read_kernel(at as *const u32).unwrap_or(0)
    }
}

#[inline(always)]
fn tc_gso<const TYPED: bool>(ctx: &TcContext) -> i32 {
    // SAFETY: the context of this program.
    let (gso_size, gso_segs) = unsafe { ((*sk_buff(ctx)).gso_size, (*sk_buff(ctx)).gso_segs) };
    if gso_size == 0 {
        return TC_ACT_UNSPEC;
    }
    let layout = if TYPED {
        gso_layout()
    } else {
        GsoLayout::default()
    };
    let meta = gso::Meta {
        gso_size,
        gso_segs,
        gso_type: if TYPED { gso_type(ctx, &layout) } else { 0 },
    };
    ctx::pull_headers(ctx);
    let Some(cfg) = GSO_CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let outcome = gso::check(&tc_cursor(ctx), link_kind(), meta, &layout, cfg);
    ctx::bump(&GSO_COUNTERS, outcome.index(Hook::TcIngress));
    if !outcome.is_malformed() {
        return TC_ACT_UNSPEC;
    }
    let drop = cfg.action == GsoAction::Drop as u8;
    let kind = if drop {
        EventKind::GsoDropped
    } else {
        EventKind::GsoFlagged
    };
    let mut slot = core::mem::MaybeUninit::uninit();
    let ev = emit::event(
        &mut slot,
        kind,
        Hook::TcIngress,
        &tc_cursor(ctx),
        link_kind(),
    );
    ev.reason = outcome as u32;
    ev.value = ctx.len();
    emit::emit(ctx, ev);
    if drop { TC_ACT_SHOT } else { TC_ACT_UNSPEC }
}
