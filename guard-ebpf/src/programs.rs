//! Thin entry points: each runs the clamp and/or the checksum repair on its
//! context and counts the outcome. The packet logic lives in the library.

use aya_ebpf::{
    EbpfContext, Global,
    bindings::{
        BPF_F_RECOMPUTE_CSUM, BPF_NOEXIST, TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action::XDP_PASS,
    },
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read, bpf_probe_read_kernel,
        generated::{bpf_csum_diff, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    },
    macros::{btf_tracepoint, classifier, map, raw_tracepoint, xdp},
    maps::{Array, LpmTrie, PerCpuArray, PerCpuHashMap, PerfEventArray, lpm_trie::Key},
    programs::{BtfTracePointContext, RawTracePointContext, TcContext, XdpContext},
};
use guard_common::{
    CSUM_COUNTER_ENTRIES, CsumConfig, CsumOutcome, DROP_FIELD_NONE, DROPS_MAX_ENTRIES, DropKey,
    DropLayout, EVENTS_PER_SEC_PER_CPU, Event, EventKind, FEATURE_CSUM, FEATURE_MSS,
    GSO_COUNTER_ENTRIES, GsoAction, GsoConfig, GsoLayout, Hook, LinkKind, MSS_COUNTER_ENTRIES,
    MssConfig, MssOutcome,
};
use guard_ebpf::{
    gso,
    mss::{self, DirectFrame, Frame, MssRewrite},
    parse::{Cursor, IpVersion, opaque},
    repair::{self, Datagram, Peer},
};

#[map(name = "MSS_CONFIG")]
static MSS_CONFIG: Array<MssConfig> = Array::with_max_entries(1, 0);

#[map(name = "MSS_COUNTERS")]
static MSS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MSS_COUNTER_ENTRIES, 0);

/// The interface's [`LinkKind`], set by the loader: a constant to the
/// verifier, which prunes the other parser.
#[unsafe(no_mangle)]
static LINK_KIND: Global<u8> = Global::new(LinkKind::Ethernet as u8);

/// 1 where `__sk_buff.gso_size` exists (Linux 5.7+), set by the loader.
#[unsafe(no_mangle)]
static HAS_GSO_SIZE: Global<u8> = Global::new(0);

/// Which features this load runs ([`FEATURE_MSS`], [`FEATURE_CSUM`]), set
/// by the loader: the verifier drops the code of the others.
#[unsafe(no_mangle)]
static FEATURES: Global<u8> = Global::new(FEATURE_MSS);

#[map(name = "CSUM_CONFIG")]
static CSUM_CONFIG: Array<CsumConfig> = Array::with_max_entries(1, 0);

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

/// Datagrams are summed in chunks loaded into a per-CPU buffer: a
/// direct-access loop over 9000 bytes would exhaust the verifier.
const CHUNK: usize = 512;
/// 32 chunks: 16 KiB, past any underlay MTU; longer datagrams count as truncated.
const MAX_CHUNKS: usize = 32;

#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<[u8; CHUNK]> = PerCpuArray::with_max_entries(1, 0);

/// Enough linear bytes for the deepest headers read: Ethernet, two VLAN
/// tags, IPv6 (or IPv4 with options), UDP, VXLAN, inner Ethernet, inner
/// IPv4 with options, inner UDP header; this also covers the clamp's TCP
/// with options.
const MAX_HEADER_BYTES: u32 = 14 + 8 + 60 + 8 + 8 + 14 + 60 + 20;

#[inline(always)]
fn count(hook: Hook, outcome: MssOutcome) {
    if let Some(c) = MSS_COUNTERS.get_ptr_mut(outcome.index(hook)) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn count_csum(hook: Hook, outcome: CsumOutcome) {
    if let Some(c) = CSUM_COUNTERS.get_ptr_mut(outcome.index(hook)) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn link_kind() -> LinkKind {
    if LINK_KIND.load() == LinkKind::RawIp as u8 {
        LinkKind::RawIp
    } else {
        LinkKind::Ethernet
    }
}

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
fn emit<C: EbpfContext>(ctx: &C, ev: &mut Event) {
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

#[inline(always)]
fn event(kind: EventKind, hook: Hook, c: &Cursor) -> Event {
    let mut ev = Event {
        kind: kind as u8,
        hook: hook as u8,
        value: c.frame_len() as u32,
        ..Event::default()
    };
    guard_ebpf::event::describe(c, link_kind(), &mut ev);
    ev
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
                    let mut ev = Event {
                        kind: EventKind::Clamped as u8,
                        hook: hook as u8,
                        reason: outcome as u32,
                        ..Event::default()
                    };
                    guard_ebpf::event::describe_tcp(&c, &seg, &mut ev);
                    ev.value = match seg.ip {
                        IpVersion::V4 => cfg.mss_v4,
                        IpVersion::V6 => cfg.mss_v6,
                    } as u32;
                    emit(ctx, &mut ev);
                }
                outcome
            }
            None => MssOutcome::Disabled,
        },
        Err(outcome) => outcome,
    };
    count(hook, outcome);
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
    if outcome != CsumOutcome::NotVxlan {
        count_csum(hook, outcome);
        if outcome == CsumOutcome::OuterRepaired {
            let mut ev = event(EventKind::Repaired, hook, &d.cursor());
            ev.reason = outcome as u32;
            ev.value = d.frame_len() as u32;
            emit(ctx, &mut ev);
        }
    }
}

/// Sums `len` bytes at `off` in chunks: `load` copies `n` bytes at `at`
/// into the buffer. The last chunk is padded with zeros to whole words
/// (`bpf_csum_diff` takes multiples of 4), which leaves the sum unchanged.
#[inline(always)]
fn chunked_sum(
    off: usize,
    len: usize,
    mut seed: u32,
    load: impl Fn(usize, *mut u8, usize) -> bool,
) -> Option<u32> {
    if len > CHUNK * MAX_CHUNKS {
        return None;
    }
    let buf = SCRATCH.get_ptr_mut(0)? as *mut u8;
    let mut done = 0usize;
    for _ in 0..MAX_CHUNKS {
        if done + CHUNK > len {
            break;
        }
        if !load(off + done, buf, CHUNK) {
            return None;
        }
        // SAFETY: the per-CPU buffer holds CHUNK bytes.
        seed = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), CHUNK as u32, seed) }
            as u32;
        done += CHUNK;
    }
    let tail = (len - done) & (CHUNK - 1);
    if tail == 0 {
        return Some(seed);
    }
    // Zero the last word first, then load over it: the bytes past the tail
    // stay zero and add nothing to the sum.
    // SAFETY: (tail & !3) + 4 <= CHUNK.
    unsafe { (buf.add(tail & (CHUNK - 4)) as *mut u32).write_unaligned(0) };
    if !load(off + done, buf, tail) {
        return None;
    }
    let words = opaque((tail + 3) & !3);
    if words > CHUNK {
        return None;
    }
    // SAFETY: words <= CHUNK bytes of the per-CPU buffer.
    Some(unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), words as u32, seed) } as u32)
}

/// XDP on one buffer: the clamp only (any kernel since 5.4).
#[xdp]
pub fn guard_xdp(ctx: XdpContext) -> u32 {
    let len = ctx.data_end() - ctx.data();
    // SAFETY: the packet of this context.
    let c = unsafe { Cursor::new(ctx.data(), ctx.data_end(), len) };
    clamp(&mut DirectFrame(c), Hook::XdpIngress, &ctx);
    XDP_PASS
}

/// An XDP frame that may span fragments (Linux 5.18+).
struct XdpFrags<'a>(&'a XdpContext);

impl Datagram for XdpFrags<'_> {
    /// The first buffer, which holds the headers.
    #[inline(always)]
    fn cursor(&self) -> Cursor {
        let len = self.0.data_end() - self.0.data();
        // SAFETY: the packet of this context.
        unsafe { Cursor::new(self.0.data(), self.0.data_end(), len) }
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        // SAFETY: a helper on this context.
        unsafe { bpf_xdp_get_buff_len(self.0.ctx) as usize }
    }

    #[inline(always)]
    fn sum(&self, off: usize, len: usize, seed: u32) -> Option<u32> {
        let ctx = self.0.ctx;
        chunked_sum(off, len, seed, |at, buf, n| {
            // `n < 1`, not `n == 0`: verifiers before 6.2 learn no lower
            // bound from an equality test, and the helper needs n >= 1.
            // (opaque keeps LLVM from turning it back into `== 0`.)
            let n = opaque(n);
            if n < opaque(1) || n > CHUNK {
                return false;
            }
            // SAFETY: n <= CHUNK bytes into the per-CPU buffer.
            unsafe { bpf_xdp_load_bytes(ctx, at as u32, buf.cast(), n as u32) == 0 }
        })
    }

    #[inline(always)]
    fn store_check(&mut self, off: usize, check_mem: u16) -> bool {
        let c = self.cursor();
        // The UDP header is in the first buffer (checked by the parser).
        c.set_be16(off, u16::from_be_bytes(check_mem.to_ne_bytes()))
            .is_some()
    }
}

/// XDP across fragments (jumbo frames): the clamp and the checksum repair.
#[xdp(frags)]
pub fn guard_xdp_frags(ctx: XdpContext) -> u32 {
    let features = FEATURES.load();
    if features & FEATURE_CSUM != 0 {
        repair(&mut XdpFrags(&ctx), Hook::XdpIngress, &ctx);
    }
    if features & FEATURE_MSS != 0 {
        let len = ctx.data_end() - ctx.data();
        // SAFETY: the packet of this context (first buffer).
        let c = unsafe { Cursor::new(ctx.data(), ctx.data_end(), len) };
        clamp(&mut DirectFrame(c), Hook::XdpIngress, &ctx);
    }
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

impl Datagram for TcFrame<'_> {
    #[inline(always)]
    fn cursor(&self) -> Cursor {
        Frame::cursor(self)
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.0.len() as usize
    }

    #[inline(always)]
    fn aggregate(&self) -> bool {
        // SAFETY: the context of this program; the field exists (loader).
        HAS_GSO_SIZE.load() != 0 && unsafe { (*sk_buff(self.0)).gso_size } != 0
    }

    #[inline(always)]
    fn sum(&self, off: usize, len: usize, seed: u32) -> Option<u32> {
        let ctx = self.0;
        chunked_sum(off, len, seed, |at, buf, n| {
            // `n < 1`, not `n == 0`: verifiers before 6.2 learn no lower
            // bound from an equality test, and the helper needs n >= 1.
            // (opaque keeps LLVM from turning it back into `== 0`.)
            let n = opaque(n);
            if n < opaque(1) || n > CHUNK {
                return false;
            }
            // SAFETY: n <= CHUNK bytes into the per-CPU buffer.
            unsafe {
                aya_ebpf::helpers::generated::bpf_skb_load_bytes(
                    ctx.as_ptr(),
                    at as u32,
                    buf.cast(),
                    n as u32,
                ) == 0
            }
        })
    }

    #[inline(always)]
    fn store_check(&mut self, off: usize, check_mem: u16) -> bool {
        // BPF_F_RECOMPUTE_CSUM keeps a CHECKSUM_COMPLETE skb's sum right.
        self.0
            .store(off, &check_mem, BPF_F_RECOMPUTE_CSUM as u64)
            .is_ok()
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
    let features = FEATURES.load();
    if hook == Hook::TcIngress && features & FEATURE_CSUM != 0 {
        repair(&mut TcFrame(&ctx), hook, &ctx);
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

#[map(name = "GSO_CONFIG")]
static GSO_CONFIG: Array<GsoConfig> = Array::with_max_entries(1, 0);

#[map(name = "GSO_COUNTERS")]
static GSO_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GSO_COUNTER_ENTRIES, 0);

/// Where gso_type lives and what its bits are, from the kernel's BTF (set
/// by the loader; all 0 when unknown).
#[unsafe(no_mangle)]
static GSO_LAYOUT: Global<GsoLayout> = Global::new(GsoLayout {
    skb_head: 0,
    skb_end: 0,
    shinfo_gso_type: 0,
    tcpv4: 0,
    tcpv6: 0,
    udp: 0,
    tunnel: 0,
    _pad: 0,
});

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

/// The program's `__sk_buff` (aya-ebpf keeps its own pointer private).
#[inline(always)]
fn sk_buff(ctx: &TcContext) -> *const aya_ebpf::bindings::__sk_buff {
    ctx.as_ptr().cast()
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
        GSO_LAYOUT.load()
    } else {
        GsoLayout::default()
    };
    let meta = gso::Meta {
        gso_size,
        gso_segs,
        gso_type: if TYPED { gso_type(ctx, &layout) } else { 0 },
    };
    let want = core::cmp::min(ctx.len(), MAX_HEADER_BYTES);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        let _ = ctx.pull_data(want);
    }
    let Some(cfg) = GSO_CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let outcome = gso::check(
        &Frame::cursor(&TcFrame(ctx)),
        link_kind(),
        meta,
        &layout,
        cfg,
    );
    if let Some(c) = GSO_COUNTERS.get_ptr_mut(outcome.index(Hook::TcIngress)) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
    if !outcome.is_malformed() {
        return TC_ACT_UNSPEC;
    }
    let drop = cfg.action == GsoAction::Drop as u8;
    let kind = if drop {
        EventKind::GsoDropped
    } else {
        EventKind::GsoFlagged
    };
    let mut ev = event(kind, Hook::TcIngress, &Frame::cursor(&TcFrame(ctx)));
    ev.reason = outcome as u32;
    ev.value = ctx.len();
    emit(ctx, &mut ev);
    if drop { TC_ACT_SHOT } else { TC_ACT_UNSPEC }
}

/// Test-only (never attached by `run`): what the pre-5.7 NAT code did to
/// flannel's VXLAN frames on a second SNAT. An outer UDP checksum of 0
/// becomes 0xffff and the source port changes, with no fix-up.
#[map(name = "LAB_SNAT_COUNTERS")]
static LAB_SNAT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Lab only: also flip the last byte of the datagram (real corruption).
#[unsafe(no_mangle)]
static LAB_CORRUPT: Global<u8> = Global::new(0);

#[classifier]
pub fn lab_double_snat(ctx: TcContext) -> i32 {
    let _ = ctx.pull_data(core::cmp::min(ctx.len(), MAX_HEADER_BYTES));
    // SAFETY: the packet of this context.
    let c = unsafe { Cursor::new(ctx.data(), ctx.data_end(), ctx.len() as usize) };
    let Ok((ip, ethertype)) = guard_ebpf::parse::ethernet(&c) else {
        return TC_ACT_UNSPEC;
    };
    let udp = match (ethertype, c.be16_at(ip)) {
        (guard_ebpf::parse::ETH_P_IP, Some(w))
            if c.be16_at(ip + 8).map(|w| w & 0xff) == Some(17) =>
        {
            ip + ((w >> 8) as usize & 0x0f) * 4
        }
        (guard_ebpf::parse::ETH_P_IPV6, Some(_))
            if c.be16_at(ip + 6).map(|w| w >> 8) == Some(17) =>
        {
            ip + 40
        }
        _ => return TC_ACT_UNSPEC,
    };
    if !matches!(c.be16_at(udp + 2), Some(4789 | 8472)) || c.be16_at(udp + 6) != Some(0) {
        return TC_ACT_UNSPEC;
    }
    let sport = 61000u16.to_be();
    let check = 0xffffu16;
    if LAB_CORRUPT.load() != 0 {
        let last = ctx.len() as usize - 1;
        if let Ok(b) = ctx.load::<u8>(last) {
            let _ = ctx.store(last, &(b ^ 0x01), 0);
        }
    }
    if ctx.store(udp, &sport, 0).is_ok() && ctx.store(udp + 6, &check, 0).is_ok() {
        if let Some(n) = LAB_SNAT_COUNTERS.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot, written only by this CPU.
            unsafe { *n += 1 };
        }
    }
    TC_ACT_UNSPEC
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

#[xdp(frags)]
pub fn bench_empty_xdp_frags(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// Baselines for `cargo xtask bench csum`: one bare chunked checksum pass
/// over the whole frame, nothing else.
#[xdp(frags)]
pub fn bench_csum_pass_xdp(ctx: XdpContext) -> u32 {
    let frame = XdpFrags(&ctx);
    let len = frame.frame_len();
    let _ = frame.sum(0, len, 0);
    XDP_PASS
}

#[classifier]
pub fn bench_csum_pass_tc(ctx: TcContext) -> i32 {
    let frame = TcFrame(&ctx);
    let _ = frame.sum(0, ctx.len() as usize, 0);
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

#[map(name = "DROPS")]
static DROPS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(DROPS_MAX_ENTRIES, 0);

#[map(name = "DROPS_LOST")]
static DROPS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// What the monitor needs to know of the kernel, set by the loader from the
/// tracepoint's format and the kernel's BTF.
#[unsafe(no_mangle)]
static DROP_LAYOUT: Global<DropLayout> = Global::new(DropLayout {
    has_reason: 0,
    skb_protocol: 0,
    skb_dev: 0,
    dev_ifindex: 0,
    dev_net: 0,
    net_inum: 0,
    not_dropped_yet: DROP_FIELD_NONE,
    consumed: DROP_FIELD_NONE,
});

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
    let l = DROP_LAYOUT.load();
    let reason = if l.has_reason != 0 {
        reason_arg() as u32
    } else {
        0
    };
    if reason == l.not_dropped_yet || reason == l.consumed {
        return 0;
    }
    let mut key = DropKey {
        location,
        reason,
        ifindex: 0,
        netns: 0,
        protocol: 0,
        _pad: 0,
    };
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
    if let Some(n) = DROPS.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot of a per-CPU value.
        unsafe { *n += 1 };
    } else if DROPS.insert(&key, &1, BPF_NOEXIST as u64).is_err()
        && let Some(n) = DROPS_LOST.get_ptr_mut(0)
    {
        // Full (or another CPU inserted the key first: rare, counted too).
        // SAFETY: as above.
        unsafe { *n += 1 };
    }
    0
}
