//! The bench object (test-only): baselines for `cargo xtask bench`, the
//! cost of running any program and of one bare checksum pass.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action::XDP_PASS},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use guard_ebpf::{
    ctx::{self, Scratch, XdpFrags},
    repair::Datagram,
};

#[map(name = "SCRATCH")]
static SCRATCH: Scratch = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[classifier]
pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[xdp(frags)]
pub fn bench_empty_xdp_frags(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// Baselines for `cargo xtask bench csum`: one bare chunked checksum pass
/// over the whole frame, nothing else.
#[xdp(frags)]
pub fn bench_csum_pass_xdp(ctx: XdpContext) -> u32 {
    let frame = XdpFrags {
        ctx: &ctx,
        scratch: &SCRATCH,
    };
    let _ = frame.sum(0, frame.frame_len(), 0);
    XDP_PASS
}

#[classifier]
pub fn bench_csum_pass_tc(ctx: TcContext) -> i32 {
    let _ = ctx::tc_sum(&ctx, &SCRATCH, 0, ctx.len() as usize, 0);
    TC_ACT_UNSPEC
}

guard_ebpf::object!();
