//! Thin entry points: each runs the clamp on its context and counts what
//! happened. The packet logic lives in the library.

use aya_ebpf::{
    Global,
    bindings::{TC_ACT_UNSPEC, xdp_action::XDP_PASS},
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use guard_common::{Hook, LinkKind, MSS_COUNTER_ENTRIES, MssConfig, MssOutcome};
use guard_ebpf::{
    mss::{self, DirectFrame, Frame, MssRewrite},
    parse::Cursor,
};

#[map(name = "MSS_CONFIG")]
static MSS_CONFIG: Array<MssConfig> = Array::with_max_entries(1, 0);

#[map(name = "MSS_COUNTERS")]
static MSS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MSS_COUNTER_ENTRIES, 0);

/// The interface's [`LinkKind`], set by the loader: a constant to the
/// verifier, which prunes the other parser.
#[unsafe(no_mangle)]
static LINK_KIND: Global<u8> = Global::new(LinkKind::Ethernet as u8);

/// Enough linear bytes for the deepest headers the clamp reads: Ethernet,
/// two VLAN tags, IPv4 with options, TCP with options.
const MAX_HEADER_BYTES: u32 = 14 + 8 + 60 + 60;

#[inline(always)]
fn count(hook: Hook, outcome: MssOutcome) {
    if let Some(c) = MSS_COUNTERS.get_ptr_mut(outcome.index(hook)) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
}

/// Runs the clamp on one frame and counts its one outcome.
#[inline(always)]
fn run<F: Frame>(frame: &mut F, hook: Hook) {
    let link = if LINK_KIND.load() == LinkKind::RawIp as u8 {
        LinkKind::RawIp
    } else {
        LinkKind::Ethernet
    };
    // Data segments end here: the configuration is read for SYNs only.
    let outcome = match mss::syn_segment(&frame.cursor(), link) {
        Ok(seg) => match MSS_CONFIG.get(0) {
            Some(cfg) => mss::clamp_syn(frame, &seg, cfg),
            None => MssOutcome::Disabled,
        },
        Err(outcome) => outcome,
    };
    count(hook, outcome);
}

#[xdp]
pub fn guard_xdp(ctx: XdpContext) -> u32 {
    let len = ctx.data_end() - ctx.data();
    // SAFETY: the packet of this context.
    let c = unsafe { Cursor::new(ctx.data(), ctx.data_end(), len) };
    run(&mut DirectFrame(c), Hook::XdpIngress);
    XDP_PASS
}

/// At TC the skb's checksum state decides how the TCP checksum changes
/// (locally generated segments are CHECKSUM_PARTIAL): the kernel's l4
/// checksum helper knows it, hand arithmetic would not.
struct TcFrame<'a>(&'a TcContext);

impl Frame for TcFrame<'_> {
    #[inline(always)]
    fn cursor(&self) -> Cursor {
        // SAFETY: the packet of this context.
        unsafe { Cursor::new(self.0.data(), self.0.data_end(), self.0.len() as usize) }
    }

    #[inline(always)]
    fn rewrite_mss(&mut self, rw: &MssRewrite) -> bool {
        // The helper takes the words as they lie in memory; a value at an odd
        // offset enters the sum byte-swapped.
        let (old, new) = if rw.odd {
            (rw.old.swap_bytes(), rw.new.swap_bytes())
        } else {
            (rw.old, rw.new)
        };
        const SIZE_2: u64 = 2;
        self.0
            .l4_csum_replace(rw.check_off, old.to_be() as u64, new.to_be() as u64, SIZE_2)
            .is_ok()
            && self.0.store(rw.mss_off, &rw.new.to_be(), 0).is_ok()
    }
}

#[inline(always)]
fn tc(ctx: TcContext, hook: Hook) -> i32 {
    // Frames built by packet generators carry only the Ethernet header in
    // the linear area: pull the headers in first.
    let want = core::cmp::min(ctx.len(), MAX_HEADER_BYTES);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        let _ = ctx.pull_data(want);
    }
    run(&mut TcFrame(&ctx), hook);
    // Continue with the next program or the default action: the clamp never
    // decides a packet's fate.
    TC_ACT_UNSPEC
}

#[classifier]
pub fn guard_tc_ingress(ctx: TcContext) -> i32 {
    tc(ctx, Hook::TcIngress)
}

#[classifier]
pub fn guard_tc_egress(ctx: TcContext) -> i32 {
    tc(ctx, Hook::TcEgress)
}

/// Baselines for `cargo xtask bench`: the cost of running any program.
#[xdp]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[classifier]
pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
