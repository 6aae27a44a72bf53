//! The guard's object: the clamp's and the repair's XDP and TC entry points
//! with their maps and load-time constants (`gso.rs`: the GSO guard's,
//! `emit.rs`: the events). The packet logic lives in the library.
#![no_std]
#![no_main]

mod emit;
mod gso;

use aya_ebpf::{
    EbpfContext,
    bindings::{TC_ACT_UNSPEC, xdp_action::XDP_PASS},
    macros::{classifier, map, xdp},
    maps::{Array, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use guard_common::{
    CSUM_COUNTER_ENTRIES, EventKind, FEATURE_CSUM, FEATURE_MSS, Hook, LT_FEATURES, LT_HAS_GSO_SIZE,
    LT_LINK_KIND, LinkKind, MSS_COUNTER_ENTRIES, MssConfig, MssOutcome, RepairConfig,
    RepairOutcome,
};
use guard_ebpf::{
    ctx::{self, Scratch, TcDatagram, TcFrame, XdpFrags},
    mss::{self, DirectFrame, Frame},
    parse::IpVersion,
    repair::{self, Datagram, Peer},
};

#[map(name = "MSS_CONFIG")]
static MSS_CONFIG: Array<MssConfig> = Array::with_max_entries(1, 0);

#[map(name = "MSS_COUNTERS")]
static MSS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MSS_COUNTER_ENTRIES, 0);

#[map(name = "CSUM_CONFIG")]
static CSUM_CONFIG: Array<RepairConfig> = Array::with_max_entries(1, 0);

#[map(name = "CSUM_COUNTERS")]
static CSUM_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CSUM_COUNTER_ENTRIES, 0);

/// Peer ranges (`--peer-cidr`); LPM tries must not be preallocated.
const BPF_F_NO_PREALLOC: u32 = 1;
const MAX_PEER_RANGES: u32 = 256;

#[map(name = "PEERS_V4")]
static PEERS_V4: LpmTrie<[u8; 4], u8> =
    LpmTrie::with_max_entries(MAX_PEER_RANGES, BPF_F_NO_PREALLOC);

#[map(name = "PEERS_V6")]
static PEERS_V6: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(MAX_PEER_RANGES, BPF_F_NO_PREALLOC);

#[map(name = "SCRATCH")]
static SCRATCH: Scratch = PerCpuArray::with_max_entries(1, 0);

/// The interface's [`LinkKind`], written by the loader: a constant to the
/// verifier, which prunes the other parser.
#[inline(always)]
fn link_kind() -> LinkKind {
    if guard_ebpf::loadtime::get::<LT_LINK_KIND>() as u8 == LinkKind::RawIp as u8 {
        LinkKind::RawIp
    } else {
        LinkKind::Ethernet
    }
}

/// Which features this load runs ([`FEATURE_MSS`], [`FEATURE_CSUM`]),
/// written by the loader: the verifier drops the code of the others.
#[inline(always)]
fn features() -> u8 {
    guard_ebpf::loadtime::get::<LT_FEATURES>() as u8
}

/// Runs the clamp on one frame and counts its one outcome.
#[inline(always)]
fn clamp<F: Frame, C: EbpfContext>(frame: &mut F, hook: Hook, ctx: &C) {
    // Data segments end here: the configuration is read for SYNs only.
    let outcome = match mss::syn_segment(&frame.cursor(), link_kind()) {
        Ok(seg) => match MSS_CONFIG.get(0) {
            Some(cfg) => {
                let outcome = mss::clamp_syn(frame, &seg, cfg);
                if outcome == MssOutcome::Clamped {
                    let c = frame.cursor();
                    let mut slot = core::mem::MaybeUninit::uninit();
                    let ev = guard_ebpf::event::blank(&mut slot, EventKind::Clamped, hook);
                    ev.reason = outcome as u32;
                    guard_ebpf::event::describe_tcp(&c, &seg, ev);
                    ev.value = match seg.ip {
                        IpVersion::V4 => cfg.mss_v4,
                        IpVersion::V6 => cfg.mss_v6,
                    } as u32;
                    emit::emit(ctx, ev);
                }
                outcome
            }
            None => MssOutcome::Disabled,
        },
        Err(outcome) => outcome,
    };
    ctx::bump(&MSS_COUNTERS, outcome.index(hook));
}

fn peer_in_ranges(peer: Peer<'_>) -> bool {
    match peer {
        Peer::V4(a) => PEERS_V4.get(&Key::new(32, *a)).is_some(),
        Peer::V6(a) => PEERS_V6.get(&Key::new(128, *a)).is_some(),
    }
}

/// Runs the checksum repair on one frame and counts its one outcome.
#[inline(always)]
fn repair<D: Datagram, C: EbpfContext>(d: &mut D, hook: Hook, ctx: &C) {
    let outcome = repair::repair(d, link_kind(), || CSUM_CONFIG.get(0), peer_in_ranges);
    // Other traffic is not counted here: it costs nothing it need not.
    if outcome != RepairOutcome::NotVxlan {
        ctx::bump(&CSUM_COUNTERS, outcome.index(hook));
        if outcome == RepairOutcome::OuterRepaired {
            let mut slot = core::mem::MaybeUninit::uninit();
            let ev = emit::event(
                &mut slot,
                EventKind::Repaired,
                hook,
                &d.cursor(),
                link_kind(),
            );
            ev.reason = outcome as u32;
            ev.value = d.frame_len() as u32;
            emit::emit(ctx, ev);
        }
    }
}

/// XDP on one buffer: the clamp only (any kernel since 5.4).
#[xdp]
pub fn guard_xdp(ctx: XdpContext) -> u32 {
    clamp(
        &mut DirectFrame(ctx::xdp_cursor(&ctx)),
        Hook::XdpIngress,
        &ctx,
    );
    XDP_PASS
}

/// XDP across fragments (jumbo frames): the clamp and the checksum repair.
#[xdp(frags)]
pub fn guard_xdp_frags(ctx: XdpContext) -> u32 {
    let features = features();
    if features & FEATURE_CSUM != 0 {
        let mut d = XdpFrags {
            ctx: &ctx,
            scratch: &SCRATCH,
        };
        repair(&mut d, Hook::XdpIngress, &ctx);
    }
    if features & FEATURE_MSS != 0 {
        clamp(
            &mut DirectFrame(ctx::xdp_cursor(&ctx)),
            Hook::XdpIngress,
            &ctx,
        );
    }
    XDP_PASS
}

#[inline(always)]
fn tc(ctx: TcContext, hook: Hook) -> i32 {
    ctx::pull_headers(&ctx);
    let features = features();
    if hook == Hook::TcIngress && features & FEATURE_CSUM != 0 {
        let mut d = TcDatagram {
            ctx: &ctx,
            scratch: &SCRATCH,
            has_gso_size: guard_ebpf::loadtime::get::<LT_HAS_GSO_SIZE>() != 0,
        };
        repair(&mut d, hook, &ctx);
    }
    if features & FEATURE_MSS != 0 {
        clamp(&mut TcFrame(&ctx), hook, &ctx);
    }
    // Continue with the next program or the default action: the guard
    // never decides a packet's fate.
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

guard_ebpf::object!();
