//! The XDP and TC contexts as the features see them: [`Frame`] for the
//! clamp, [`Datagram`] for the repair, and the chunked checksum over a
//! frame's bytes (bpf target only; the host side is byte slices).

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, BPF_F_RECOMPUTE_CSUM},
    helpers::generated::{
        bpf_csum_diff, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};

use crate::{
    mss::{Frame, MssRewrite},
    parse::{Cursor, opaque},
    repair::Datagram,
};

/// Datagrams are summed in chunks loaded into a per-CPU buffer: a
/// direct-access loop over 9000 bytes would exhaust the verifier.
pub const CHUNK: usize = 512;
/// 18 chunks: 9 KiB, past a 9000-byte jumbo underlay MTU; longer datagrams
/// count as truncated. Every chunk is unrolled (no loops before 5.3) at
/// both sums of the repair, and 4.19 takes at most 4,096 instructions per
/// program: 32 chunks made guard_tc_ingress 4,621.
const MAX_CHUNKS: usize = 18;

/// The per-CPU buffer of one chunk, a map of the object that sums.
pub type Scratch = PerCpuArray<[u8; CHUNK]>;

/// Enough linear bytes for the deepest headers read: Ethernet, two VLAN
/// tags, IPv6 (or IPv4 with options), UDP, VXLAN, inner Ethernet, inner
/// IPv4 with options, inner UDP header; this also covers the clamp's TCP
/// with options.
pub const MAX_HEADER_BYTES: u32 = 14 + 8 + 60 + 8 + 8 + 14 + 60 + 20;

/// Frames built by packet generators carry only the Ethernet header in the
/// linear area: pulls the headers in first.
#[inline(always)]
pub fn pull_headers(ctx: &TcContext) {
    let want = core::cmp::min(ctx.len(), MAX_HEADER_BYTES);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        let _ = ctx.pull_data(want);
    }
}

/// The program's `__sk_buff` (aya-ebpf keeps its own pointer private).
#[inline(always)]
pub fn sk_buff(ctx: &TcContext) -> *const __sk_buff {
    ctx.as_ptr().cast()
}

/// The first buffer of an XDP frame, which holds the headers.
#[inline(always)]
pub fn xdp_cursor(ctx: &XdpContext) -> Cursor {
    let len = ctx.data_end() - ctx.data();
    // SAFETY: the packet of this context.
    unsafe { Cursor::new(ctx.data(), ctx.data_end(), len) }
}

/// The linear part of an skb, with the whole frame's length.
#[inline(always)]
pub fn tc_cursor(ctx: &TcContext) -> Cursor {
    // SAFETY: the packet of this context.
    unsafe { Cursor::new(ctx.data(), ctx.data_end(), ctx.len() as usize) }
}

/// Sums `len` bytes at `off` in chunks: `load` copies `n` bytes at `at`
/// into the buffer. The last chunk is padded with zeros to whole words
/// (`bpf_csum_diff` takes multiples of 4), which leaves the sum unchanged.
#[inline(always)]
fn chunked_sum(
    scratch: &Scratch,
    off: usize,
    len: usize,
    mut seed: u32,
    load: impl Fn(usize, *mut u8, usize) -> bool,
) -> Option<u32> {
    if len > CHUNK * MAX_CHUNKS {
        return None;
    }
    let buf = scratch.get_ptr_mut(0)? as *mut u8;
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

/// `n` as a length the load helpers take: 1..=CHUNK. `n < 1`, not
/// `n == 0`: verifiers before 6.2 learn no lower bound from an equality
/// test, and the helpers need n >= 1. (opaque keeps LLVM from turning it
/// back into `== 0`.)
#[inline(always)]
fn load_len(n: usize) -> Option<u32> {
    let n = opaque(n);
    if n < opaque(1) || n > CHUNK {
        return None;
    }
    Some(n as u32)
}

/// [`chunked_sum`] over an XDP frame, fragments included.
#[inline(always)]
pub fn xdp_sum(
    ctx: &XdpContext,
    scratch: &Scratch,
    off: usize,
    len: usize,
    seed: u32,
) -> Option<u32> {
    let ctx = ctx.ctx;
    chunked_sum(scratch, off, len, seed, |at, buf, n| {
        let Some(n) = load_len(n) else {
            return false;
        };
        // SAFETY: n <= CHUNK bytes into the per-CPU buffer.
        unsafe { bpf_xdp_load_bytes(ctx, at as u32, buf.cast(), n) == 0 }
    })
}

/// [`chunked_sum`] over an skb, linear or not.
#[inline(always)]
pub fn tc_sum(
    ctx: &TcContext,
    scratch: &Scratch,
    off: usize,
    len: usize,
    seed: u32,
) -> Option<u32> {
    chunked_sum(scratch, off, len, seed, |at, buf, n| {
        let Some(n) = load_len(n) else {
            return false;
        };
        // SAFETY: n <= CHUNK bytes into the per-CPU buffer.
        unsafe { bpf_skb_load_bytes(ctx.as_ptr(), at as u32, buf.cast(), n) == 0 }
    })
}

/// An XDP frame that may span fragments (Linux 5.18+).
pub struct XdpFrags<'a> {
    pub ctx: &'a XdpContext,
    pub scratch: &'a Scratch,
}

impl Datagram for XdpFrags<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        // SAFETY: a helper on this context.
        unsafe { bpf_xdp_get_buff_len(self.ctx.ctx) as usize }
    }

    #[inline(always)]
    fn cursor(&self) -> Cursor {
        xdp_cursor(self.ctx)
    }

    #[inline(always)]
    fn sum(&self, off: usize, len: usize, seed: u32) -> Option<u32> {
        xdp_sum(self.ctx, self.scratch, off, len, seed)
    }

    #[inline(always)]
    fn store_check(&mut self, off: usize, check_mem: u16) -> bool {
        // The UDP header is in the first buffer (checked by the parser).
        self.cursor()
            .set_be16(off, u16::from_be_bytes(check_mem.to_ne_bytes()))
            .is_some()
    }
}

/// At TC the skb's checksum state decides how the TCP checksum changes
/// (locally generated segments are CHECKSUM_PARTIAL): the kernel's l4
/// checksum helper knows it, hand arithmetic would not.
pub struct TcFrame<'a>(pub &'a TcContext);

impl Frame for TcFrame<'_> {
    #[inline(always)]
    fn cursor(&self) -> Cursor {
        tc_cursor(self.0)
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

/// An skb for the repair.
pub struct TcDatagram<'a> {
    pub ctx: &'a TcContext,
    pub scratch: &'a Scratch,
    /// Whether `__sk_buff.gso_size` exists (Linux 5.7+): a load-time
    /// constant; the field is read only when a checksum is wrong.
    pub has_gso_size: bool,
}

impl Datagram for TcDatagram<'_> {
    #[inline(always)]
    fn cursor(&self) -> Cursor {
        tc_cursor(self.ctx)
    }

    #[inline(always)]
    fn aggregate(&self) -> bool {
        // SAFETY: the context of this program; the field exists (loader).
        self.has_gso_size && unsafe { (*sk_buff(self.ctx)).gso_size } != 0
    }

    #[inline(always)]
    fn sum(&self, off: usize, len: usize, seed: u32) -> Option<u32> {
        tc_sum(self.ctx, self.scratch, off, len, seed)
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.ctx.len() as usize
    }

    #[inline(always)]
    fn store_check(&mut self, off: usize, check_mem: u16) -> bool {
        // BPF_F_RECOMPUTE_CSUM keeps a CHECKSUM_COMPLETE skb's sum right.
        self.ctx
            .store(off, &check_mem, BPF_F_RECOMPUTE_CSUM as u64)
            .is_ok()
    }
}

/// Adds one to a per-CPU counter: the whole cost of counting an outcome.
#[inline(always)]
pub fn bump(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(c) = counters.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
}

/// What every object needs besides its programs: the license the kernel
/// asks of GPL-only helpers, and a panic handler (panics must be
/// unreachable: the verifier refuses its endless loop).
#[macro_export]
macro_rules! object {
    () => {
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
