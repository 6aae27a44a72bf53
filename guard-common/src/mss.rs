//! The MSS clamp's configuration.

/// The clamp configuration: entry 0 of [`MSS_CONFIG_MAP`](crate::MSS_CONFIG_MAP).
/// Updating the map changes the clamp of a running program without
/// reloading it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MssConfig {
    /// Largest MSS allowed on IPv4 SYNs; 0 disables the clamp for IPv4.
    pub mss_v4: u16,
    /// Largest MSS allowed on IPv6 SYNs; 0 disables the clamp for IPv6.
    pub mss_v6: u16,
    pub _pad: u32,
}

pod!(MssConfig, 8);

impl MssConfig {
    pub const fn new(mss_v4: u16, mss_v6: u16) -> Self {
        MssConfig {
            mss_v4,
            mss_v6,
            _pad: 0,
        }
    }
}
