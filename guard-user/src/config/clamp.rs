//! From the MTU of the narrowest link to the MSS clamps (pure logic).

use anyhow::{Result, bail};

/// IPv4 (20) + TCP (20) headers without options.
pub const V4_HEADERS: u32 = 40;
/// IPv6 (40) + TCP (20) headers without options.
pub const V6_HEADERS: u32 = 60;
/// The smallest MTU every IPv4 host must handle (RFC 791 reassembly size).
pub const MIN_MTU_V4: u32 = 576;
/// The smallest MTU of any IPv6 link (RFC 8200).
pub const MIN_MTU_V6: u32 = 1280;
pub const MAX_MTU: u32 = 65535;

/// Encapsulations whose overhead `--underlay-mtu` subtracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encap {
    /// VXLAN over IPv4: IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
    Vxlan,
    /// VXLAN over IPv6: IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14.
    Vxlan6,
    /// IP in IPv4 (Calico's tunl0): IPv4 20.
    Ipip,
    /// IP in IPv6: IPv6 40.
    Ip6tnl,
    /// Geneve over IPv4 without options: IPv4 20 + UDP 8 + Geneve 8 + Ethernet 14.
    Geneve,
    /// WireGuard: 80, as wg-quick assumes (IPv6 underlay 40 + UDP 8 + 32).
    Wireguard,
}

impl Encap {
    pub const fn overhead(self) -> u32 {
        match self {
            Encap::Vxlan | Encap::Geneve => 50,
            Encap::Vxlan6 => 70,
            Encap::Ipip => 20,
            Encap::Ip6tnl => 40,
            Encap::Wireguard => 80,
        }
    }
}

/// The clamps derived from a path MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clamp {
    pub mtu: u32,
    pub mss_v4: u16,
    /// 0 when the MTU is below IPv6's minimum: no IPv6 packet crosses such a
    /// link, so there is nothing to clamp.
    pub mss_v6: u16,
}

impl Clamp {
    pub fn from_mtu(mtu: u32) -> Result<Clamp> {
        if !(MIN_MTU_V4..=MAX_MTU).contains(&mtu) {
            bail!(
                "MTU {mtu} is out of range: give the MTU of the narrowest link, {MIN_MTU_V4}..{MAX_MTU} ({MIN_MTU_V6}.. for IPv6)"
            );
        }
        let mss_v6 = if mtu >= MIN_MTU_V6 {
            mtu - V6_HEADERS
        } else {
            0
        };
        Ok(Clamp {
            mtu,
            mss_v4: (mtu - V4_HEADERS) as u16,
            mss_v6: mss_v6 as u16,
        })
    }

    pub fn from_underlay(underlay_mtu: u32, encap: Encap) -> Result<Clamp> {
        let Some(mtu) = underlay_mtu.checked_sub(encap.overhead()) else {
            bail!("underlay MTU {underlay_mtu} is smaller than the {encap:?} overhead");
        };
        Clamp::from_mtu(mtu).map_err(|e| {
            anyhow::anyhow!(
                "underlay MTU {underlay_mtu} minus {} bytes of {encap:?} overhead: {e}",
                encap.overhead()
            )
        })
    }
}

impl std::fmt::Display for Clamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "path MTU {}: IPv4 MSS <= {}, ", self.mtu, self.mss_v4)?;
        if self.mss_v6 == 0 {
            write!(f, "IPv6 not clamped (MTU below {MIN_MTU_V6})")
        } else {
            write!(f, "IPv6 MSS <= {}", self.mss_v6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_3_tunnel() {
        let c = Clamp::from_mtu(1440).unwrap();
        assert_eq!((c.mss_v4, c.mss_v6), (1400, 1380));
    }

    #[test]
    fn bounds() {
        assert!(Clamp::from_mtu(575).is_err());
        assert!(Clamp::from_mtu(65536).is_err());
        assert_eq!(Clamp::from_mtu(576).unwrap().mss_v6, 0);
        assert_eq!(Clamp::from_mtu(1280).unwrap().mss_v6, 1220);
        assert_eq!(Clamp::from_mtu(65535).unwrap().mss_v4, 65495);
        let msg = Clamp::from_mtu(100).unwrap_err().to_string();
        assert!(msg.contains("100") && msg.contains("576"), "{msg}");
    }

    #[test]
    fn underlay_minus_overhead() {
        assert_eq!(Clamp::from_underlay(1500, Encap::Vxlan).unwrap().mtu, 1450);
        assert_eq!(Clamp::from_underlay(1500, Encap::Vxlan6).unwrap().mtu, 1430);
        assert_eq!(Clamp::from_underlay(1460, Encap::Ipip).unwrap().mtu, 1440);
        assert_eq!(
            Clamp::from_underlay(9000, Encap::Wireguard).unwrap().mtu,
            8920
        );
        assert!(Clamp::from_underlay(40, Encap::Vxlan).is_err());
        assert!(Clamp::from_underlay(600, Encap::Vxlan).is_err());
    }
}
