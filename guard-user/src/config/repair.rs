//! `--csum-repair` configuration: VXLAN ports, peer ranges, repair mode.

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use guard_common::{MAX_VXLAN_PORTS, RepairConfig, RepairWrite};

/// flannel's VXLAN port (the Linux default) and the IANA one.
pub const DEFAULT_VXLAN_PORTS: [u16; 2] = [8472, 4789];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RepairMode {
    /// Write the correct checksum.
    Recompute,
    /// Write 0, "no checksum" (IPv4 outer headers; IPv6 ones are recomputed).
    Zero,
}

/// A peer range: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().with_context(|| {
            format!("{s:?} is not an address or CIDR (e.g. 10.0.0.0/8, fd00::/8)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => bail!("{s:?}: the prefix length must be 0..{max}"),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

/// What the repair is told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairSpec {
    pub ports: Vec<u16>,
    pub peers: Vec<Cidr>,
    pub mode: RepairMode,
}

impl RepairSpec {
    pub fn new(ports: &[u16], peers: &[Cidr], mode: RepairMode) -> Result<RepairSpec> {
        let mut ports: Vec<u16> = if ports.is_empty() {
            DEFAULT_VXLAN_PORTS.to_vec()
        } else {
            ports.to_vec()
        };
        ports.sort_unstable();
        ports.dedup();
        if ports.contains(&0) {
            bail!("--vxlan-port 0 is not a port");
        }
        if ports.len() > MAX_VXLAN_PORTS {
            bail!(
                "at most {MAX_VXLAN_PORTS} --vxlan-port values, got {}",
                ports.len()
            );
        }
        Ok(RepairSpec {
            ports,
            peers: peers.to_vec(),
            mode,
        })
    }

    /// The map record. With no range of a family, any peer of it matches.
    pub fn config(&self) -> RepairConfig {
        let mut ports = [0u16; MAX_VXLAN_PORTS];
        ports[..self.ports.len()].copy_from_slice(&self.ports);
        let any = |v4: bool| !self.peers.iter().any(|c| c.addr.is_ipv4() == v4);
        RepairConfig {
            ports,
            mode: match self.mode {
                RepairMode::Recompute => RepairWrite::Recompute as u8,
                RepairMode::Zero => RepairWrite::Zero as u8,
            },
            any_peer_v4: any(true) as u8,
            any_peer_v6: any(false) as u8,
            _pad: [0; 5],
        }
    }
}

impl std::fmt::Display for RepairSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|c| format!("{}/{}", c.addr, c.prefix))
            .collect();
        write!(
            f,
            "VXLAN checksum repair on UDP ports {} from {}, mode {:?}",
            ports.join(","),
            if peers.is_empty() {
                "any peer".to_string()
            } else {
                peers.join(", ")
            },
            self.mode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((c.addr.to_string(), c.prefix), ("10.0.0.0".into(), 8));
        let c: Cidr = "fd00::1".parse().unwrap();
        assert_eq!(c.prefix, 128);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("eth0".parse::<Cidr>().is_err());
    }

    #[test]
    fn ports_and_peers() {
        let s = RepairSpec::new(&[], &[], RepairMode::Recompute).unwrap();
        let c = s.config();
        assert_eq!(c.ports, [4789, 8472, 0, 0]);
        assert_eq!((c.any_peer_v4, c.any_peer_v6), (1, 1));
        let s = RepairSpec::new(
            &[4789, 4789],
            &["10.0.0.0/8".parse().unwrap()],
            RepairMode::Zero,
        )
        .unwrap();
        let c = s.config();
        assert_eq!(c.ports, [4789, 0, 0, 0]);
        assert_eq!(
            (c.any_peer_v4, c.any_peer_v6, c.mode),
            (0, 1, RepairWrite::Zero as u8)
        );
        assert!(RepairSpec::new(&[1, 2, 3, 4, 5], &[], RepairMode::Zero).is_err());
        assert!(RepairSpec::new(&[0], &[], RepairMode::Zero).is_err());
    }
}
