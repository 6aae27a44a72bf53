//! One cursor over a frame and one bounds-checked way to read it.
//!
//! On the bpf target `start`/`end` are the packet pointers of the context,
//! so every read below is a check the verifier can follow; on the host they
//! are the bounds of a byte slice.

// Every protocol constant of the guard, here and nowhere else.

// Ethernet II: the header, and the EtherTypes the guard follows.
pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

// VLAN tags: 802.1Q (C-tag) and 802.1ad (S-tag, QinQ), 4 bytes each.
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const VLAN_HLEN: usize = 4;
/// QinQ is the deepest stacking seen on real links; more tags are left alone.
pub const VLAN_MAX_DEPTH: usize = 2;

// IP: IPv4 without options (RFC 791: IHL 5), IPv6's fixed header (RFC 8200).
pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;

// Transport: TCP without options (RFC 9293: data offset 5) and UDP (RFC 768).
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

/// Hides a value from the optimizer (libbpf's `barrier_var`). Without it
/// LLVM derives one packet pointer from another (`p - 1` after checking
/// `p + 1`) or folds `p + 1 > end` into `p >= end`; the verifier grants no
/// range from either.
#[inline(always)]
#[cfg_attr(not(target_arch = "bpf"), allow(unused_mut))]
pub fn opaque(mut x: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    // SAFETY: an empty asm block; it only pins `x` to a register.
    unsafe {
        core::arch::asm!("{0} = {0}", inout(reg) x, options(nomem, nostack, preserves_flags));
    }
    x
}

/// The largest offset [`Cursor::bytes`] reads at (16 KiB: past a 9000-byte
/// jumbo frame). Below the verifier's MAX_PACKET_OFF (0xffff) by more than
/// any read, which it needs to grant a range to `p + off + N`.
pub const MAX_OFFSET: usize = 0x3fff;

#[derive(Clone, Copy)]
pub struct Cursor {
    start: usize,
    end: usize,
    /// Length of the whole frame. At TC it can exceed `end - start`: only
    /// the linear part of an skb is directly readable.
    frame_len: usize,
}

impl Cursor {
    /// # Safety
    /// `start..end` must be readable and writable memory for the lifetime of
    /// the cursor (the packet of a bpf context, or a host byte slice).
    #[inline(always)]
    pub unsafe fn new(start: usize, end: usize, frame_len: usize) -> Self {
        Cursor {
            start,
            end,
            frame_len,
        }
    }

    #[inline(always)]
    pub fn from_slice(buf: &mut [u8]) -> Self {
        let start = buf.as_mut_ptr() as usize;
        Cursor {
            start,
            end: start + buf.len(),
            frame_len: buf.len(),
        }
    }

    /// The one accessor: a pointer to `N` bytes at `off`, if they are inside
    /// the frame.
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, off: usize) -> Option<*mut [u8; N]> {
        if off > MAX_OFFSET {
            return None;
        }
        // Masked (LLVM cannot drop the mask of an opaque value): verifiers
        // before 5.16 forget the bounds of a scalar spilled to the stack,
        // and refuse "math between pkt pointer and register with unbounded
        // min value" when LLVM reloads an offset. A constant stays one.
        let p = self.start + (opaque(off) & MAX_OFFSET);
        if p + N > self.end {
            return None;
        }
        Some(p as *mut [u8; N])
    }

    #[inline(always)]
    pub fn be16_at(&self, off: usize) -> Option<u16> {
        // SAFETY: bounds checked by `bytes`.
        self.bytes::<2>(off)
            .map(|p| u16::from_be_bytes(unsafe { *p }))
    }

    #[inline(always)]
    pub fn set_be16(&self, off: usize, v: u16) -> Option<()> {
        // SAFETY: bounds checked by `bytes`; the memory is writable (`new`).
        self.bytes::<2>(off)
            .map(|p| unsafe { *p = v.to_be_bytes() })
    }

    /// Length of the whole frame, linear or not.
    #[inline(always)]
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }
}

/// Why a frame was not parsed down to a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTcp {
    /// Not IP, IP carrying something other than TCP, or a later fragment:
    /// none of our business.
    Other,
    /// Truncated or inconsistent headers.
    Malformed,
    /// IPv6 extension headers deeper than [`IPV6_EXT_MAX`], or ESP: what
    /// they carry cannot be told.
    Skipped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// Offsets of a TCP segment inside the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub ip: IpVersion,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP header.
    pub tcp: usize,
    /// TCP header length, options included (doff * 4, validated).
    pub tcp_hlen: usize,
    /// TCP flags byte.
    pub flags: u8,
    /// Behind IPv6 extension headers, or the first fragment of an IPv4 or
    /// IPv6 datagram: read, but never rewritten.
    pub untouchable: bool,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Offset of the IP header after Ethernet and up to [`VLAN_MAX_DEPTH`]
/// inline VLAN tags, with its EtherType.
#[inline(always)]
pub fn ethernet(c: &Cursor) -> Result<(usize, u16), NotTcp> {
    let mut proto = c.be16_at(12).ok_or(NotTcp::Malformed)?;
    let mut off = ETH_HLEN;
    for _ in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        proto = c.be16_at(off + 2).ok_or(NotTcp::Malformed)?;
        off += VLAN_HLEN;
    }
    Ok((off, proto))
}

/// Extension headers walked before giving up: real traffic carries one or
/// two (hop-by-hop for MLD, a fragment header); more is counted as skipped.
pub const IPV6_EXT_MAX: usize = 4;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_ESP: u8 = 50;
const IPV6_AH: u8 = 51;
const IPV6_DSTOPTS: u8 = 60;

/// Walks IPv6 extension headers from `off` (whose type is `next`) to the
/// upper-layer header: its offset, its type, and whether a fragment header
/// or any extension header was crossed.
#[inline(always)]
pub fn ipv6_upper(c: &Cursor, mut off: usize, mut next: u8) -> Result<(usize, u8, bool), NotTcp> {
    let mut crossed = false;
    for _ in 0..IPV6_EXT_MAX {
        let len = match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let w = c.be16_at(off).ok_or(NotTcp::Malformed)?;
                ((w & 0xff) as usize + 1) * 8
            }
            IPV6_AH => {
                let w = c.be16_at(off).ok_or(NotTcp::Malformed)?;
                ((w & 0xff) as usize + 2) * 4
            }
            IPV6_FRAGMENT => {
                // A later fragment carries no upper-layer header.
                let frag = c.be16_at(off + 2).ok_or(NotTcp::Malformed)?;
                if frag & 0xfff8 != 0 {
                    return Err(NotTcp::Other);
                }
                8
            }
            IPV6_ESP => return Err(NotTcp::Skipped),
            _ => return Ok((off, next, crossed)),
        };
        next = (c.be16_at(off).ok_or(NotTcp::Malformed)? >> 8) as u8;
        off += len;
        crossed = true;
    }
    match next {
        IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_AH | IPV6_FRAGMENT | IPV6_ESP => {
            Err(NotTcp::Skipped)
        }
        _ => Ok((off, next, crossed)),
    }
}

/// Parses from the IP header at `l3` (of the given EtherType) to TCP.
#[inline(always)]
pub fn ip_to_tcp(c: &Cursor, l3: usize, ethertype: u16) -> Result<TcpSegment, NotTcp> {
    let (ip, tcp, l3_end, untouchable) = match ethertype {
        ETH_P_IP => {
            let b = c.bytes::<IPV4_MIN_HLEN>(l3).ok_or(NotTcp::Malformed)?;
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            if h[0] >> 4 != 4 {
                return Err(NotTcp::Malformed);
            }
            if h[9] != IPPROTO_TCP {
                return Err(NotTcp::Other);
            }
            let ihl = (h[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            if ihl < IPV4_MIN_HLEN || total < ihl || l3 + total > c.frame_len() {
                return Err(NotTcp::Malformed);
            }
            let frag = u16::from_be_bytes([h[6], h[7]]);
            // A later fragment carries no TCP header.
            if frag & 0x1fff != 0 {
                return Err(NotTcp::Other);
            }
            let more_fragments = frag & 0x2000 != 0;
            (IpVersion::V4, l3 + ihl, l3 + total, more_fragments)
        }
        ETH_P_IPV6 => {
            let b = c.bytes::<IPV6_HLEN>(l3).ok_or(NotTcp::Malformed)?;
            // SAFETY: bounds checked by `bytes`.
            let h = unsafe { &*b };
            if h[0] >> 4 != 6 {
                return Err(NotTcp::Malformed);
            }
            let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
            let end = l3 + IPV6_HLEN + payload;
            if end > c.frame_len() {
                return Err(NotTcp::Malformed);
            }
            let (upper, next, crossed) = if h[6] == IPPROTO_TCP {
                (l3 + IPV6_HLEN, IPPROTO_TCP, false)
            } else {
                ipv6_upper(c, l3 + IPV6_HLEN, h[6])?
            };
            if next != IPPROTO_TCP {
                return Err(NotTcp::Other);
            }
            (IpVersion::V6, upper, end, crossed)
        }
        _ => return Err(NotTcp::Other),
    };
    let b = c.bytes::<TCP_MIN_HLEN>(tcp).ok_or(NotTcp::Malformed)?;
    // SAFETY: bounds checked by `bytes`.
    let h = unsafe { &*b };
    let tcp_hlen = (h[12] >> 4) as usize * 4;
    if tcp_hlen < TCP_MIN_HLEN || tcp + tcp_hlen > l3_end {
        return Err(NotTcp::Malformed);
    }
    Ok(TcpSegment {
        ip,
        l3,
        tcp,
        tcp_hlen,
        flags: h[13],
        untouchable,
    })
}

/// Parses a frame of an interface of the given kind down to TCP.
#[inline(always)]
pub fn to_tcp(c: &Cursor, raw_ip: bool) -> Result<TcpSegment, NotTcp> {
    if raw_ip {
        let v = c.be16_at(0).ok_or(NotTcp::Malformed)? >> 12;
        let ethertype = match v {
            4 => ETH_P_IP,
            6 => ETH_P_IPV6,
            _ => return Err(NotTcp::Other),
        };
        ip_to_tcp(c, 0, ethertype)
    } else {
        let (l3, ethertype) = ethernet(c)?;
        ip_to_tcp(c, l3, ethertype)
    }
}
