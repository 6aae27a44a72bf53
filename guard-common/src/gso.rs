//! The malformed-GSO guard's configuration and kernel layout.

/// TCP_MIN_MSS: no TCP stack segments below it.
pub const GSO_MIN_SIZE_DEFAULT: u32 = 88;
/// A 64 KiB aggregate at the minimum gso_size needs 745 segments; BIG TCP
/// aggregates (up to 512 KiB) at a 1448-byte MSS about 360.
pub const GSO_MAX_SEGS_DEFAULT: u32 = 1024;

named_enum! {
    /// What the GSO guard does with a malformed packet (`--gso-guard`).
    pub enum GsoAction: u8 {
        /// Count it and let it go on.
        Flag = 0 => "flag",
        /// Count it and drop it (TC_ACT_SHOT).
        Drop = 1 => "drop",
    }
}

/// The GSO guard's configuration: entry 0 of [`GSO_CONFIG_MAP`](crate::GSO_CONFIG_MAP).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsoConfig {
    pub min_size: u32,
    pub max_segs: u32,
    /// A [`GsoAction`] value.
    pub action: u8,
    pub _pad: [u8; 7],
}

pod!(GsoConfig, 16);

/// Where gso_type lives in the running kernel and what its bits are, read
/// from the kernel's BTF by the loader (Rust eBPF has no CO-RE) and given
/// to [`PROG_TC_GSO_TYPED`](crate::PROG_TC_GSO_TYPED) as load-time constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GsoLayout {
    /// offsetof(struct sk_buff, head): a pointer.
    pub skb_head: u32,
    /// offsetof(struct sk_buff, end): an offset from head (64-bit kernels).
    pub skb_end: u32,
    /// offsetof(struct skb_shared_info, gso_type).
    pub shinfo_gso_type: u32,
    /// SKB_GSO_TCPV4.
    pub tcpv4: u32,
    /// SKB_GSO_TCPV6.
    pub tcpv6: u32,
    /// SKB_GSO_UDP | SKB_GSO_UDP_L4.
    pub udp: u32,
    /// Encapsulation bits (GRE, IPXIP, UDP_TUNNEL, ESP...): gso_type then
    /// describes the inner packet, which is not checked.
    pub tunnel: u32,
    pub _pad: u32,
}

pod!(GsoLayout, 32);
