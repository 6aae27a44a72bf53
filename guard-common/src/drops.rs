//! The drop monitor's map key and kernel layout.

pub const DROPS_MAX_ENTRIES: u32 = 16384;

/// One row of the drop monitor's map. Zero where unknown: reason on kernels
/// before 5.17, ifindex/netns for an skb without a device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// The kernel's return address in the function that freed the skb.
    pub location: u64,
    /// `enum skb_drop_reason`, as the running kernel numbers it.
    pub reason: u32,
    /// `skb->dev->ifindex`.
    pub ifindex: u32,
    /// The inode of the device's network namespace.
    pub netns: u32,
    /// `skb->protocol`, in host order (0x0800 IPv4).
    pub protocol: u16,
    pub _pad: u16,
}

pod!(DropKey, 24);

/// What the drop monitor needs to know of the running kernel, resolved in
/// userspace from the tracepoint's format file and the kernel's BTF (no
/// CO-RE in Rust eBPF).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropLayout {
    /// 1 where the tracepoint's third argument is the drop reason (5.17+).
    pub has_reason: u32,
    /// offsetof(sk_buff, protocol); 0: neither protocol nor device is read.
    pub skb_protocol: u32,
    /// offsetof(sk_buff, dev).
    pub skb_dev: u32,
    /// offsetof(net_device, ifindex).
    pub dev_ifindex: u32,
    /// offsetof(net_device, nd_net) (a `struct net *`).
    pub dev_net: u32,
    /// offsetof(net, ns.inum).
    pub net_inum: u32,
    /// Reasons that are not drops: SKB_NOT_DROPPED_YET and SKB_CONSUMED
    /// ([`DROP_FIELD_NONE`] where the kernel lacks them).
    pub not_dropped_yet: u32,
    pub consumed: u32,
}

pub const DROP_FIELD_NONE: u32 = u32::MAX;

pod!(DropLayout, 32);
