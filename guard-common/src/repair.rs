//! The overlay checksum repair's configuration.

named_enum! {
    /// How a repaired outer checksum is written.
    pub enum RepairWrite: u8 {
        /// The correct checksum, computed over the datagram.
        Recompute = 0 => "recompute",
        /// 0, "no checksum" (IPv4 outer only; IPv6 outers are recomputed).
        Zero = 1 => "zero",
    }
}

/// Most VXLAN ports one guard matches.
pub const MAX_VXLAN_PORTS: usize = 4;

/// The repair configuration: entry 0 of [`CSUM_CONFIG_MAP`](crate::CSUM_CONFIG_MAP).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairConfig {
    /// UDP destination ports, host order; 0 = unused slot.
    pub ports: [u16; MAX_VXLAN_PORTS],
    /// A [`RepairWrite`] value.
    pub mode: u8,
    /// 1: any IPv4 (IPv6) peer; 0: only peers in the PEERS_V4 (V6) trie.
    pub any_peer_v4: u8,
    pub any_peer_v6: u8,
    pub _pad: [u8; 5],
}

pod!(RepairConfig, 16);
