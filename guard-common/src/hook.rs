//! Where a program runs, how the interface's frames begin, and which
//! features a load runs.

named_enum! {
    /// Where a program runs. The counter map holds one block of counters per hook.
    pub enum Hook: u32 {
        XdpIngress = 0 => "xdp-ingress",
        TcIngress = 1 => "tc-ingress",
        TcEgress = 2 => "tc-egress",
    }
}

named_enum! {
    /// How the frames of an interface begin: a load-time constant of the
    /// programs ([`LT_LINK_KIND`](crate::LT_LINK_KIND)), fixed
    /// per interface.
    pub enum LinkKind: u8 {
        /// An Ethernet header, possibly VLAN tags, then IP.
        Ethernet = 0 => "ethernet",
        /// The IP header directly (tun, wireguard, ipip devices).
        RawIp = 1 => "raw-ip",
    }
}

/// Features compiled in at load time ([`LT_FEATURES`](crate::LT_FEATURES)): the verifier
/// removes the code of a feature that is off.
pub const FEATURE_MSS: u8 = 1;
pub const FEATURE_CSUM: u8 = 2;
