//! Offload features through the ethtool ioctl (what `ethtool -k/-K` does),
//! by the kernel's own feature names: no parsing of ethtool's output, and
//! the calling thread's network namespace.

use std::io;

use anyhow::{Context as _, Result, bail};

use super::sys::{ifreq, ioctl};

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// One offload feature of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The kernel's name: `rx-lro` (ethtool's large-receive-offload),
    /// `rx-gro-hw`, `tx-checksum-ip-generic`...
    pub name: String,
    pub active: bool,
    /// Whether `ethtool -K` can change it (not "[fixed]").
    pub changeable: bool,
}

fn ethtool(iface: &str, buf: &mut [u32]) -> io::Result<()> {
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    ioctl(&mut req, libc::SIOCETHTOOL)
}

fn feature_names(iface: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info { cmd, reserved, u64 sset_mask, u32 data[1] }
    let mut info = [ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0, 0];
    ethtool(iface, &mut info)?;
    let count = info[4] as usize;
    // struct ethtool_gstrings { cmd, string_set, len, u8 data[len * 32] }
    let mut buf = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    buf[0] = ETHTOOL_GSTRINGS;
    buf[1] = ETH_SS_FEATURES;
    buf[2] = count as u32;
    ethtool(iface, &mut buf)?;
    let bytes: Vec<u8> = buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(bytes
        .chunks(ETH_GSTRING_LEN)
        .map(|c| {
            let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect())
}

/// Every feature of `iface`, as `ethtool -k` lists them.
pub fn features(iface: &str) -> Result<Vec<Feature>> {
    let names =
        feature_names(iface).with_context(|| format!("listing the offload features of {iface}"))?;
    let blocks = names.len().div_ceil(32);
    // struct ethtool_gfeatures { cmd, size, { available, requested, active, never_changed }[size] }
    let mut buf = vec![0u32; 2 + 4 * blocks];
    buf[0] = ETHTOOL_GFEATURES;
    buf[1] = blocks as u32;
    ethtool(iface, &mut buf).with_context(|| format!("reading the features of {iface}"))?;
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let b = &buf[2 + 4 * (i / 32)..];
            let bit = 1u32 << (i % 32);
            Feature {
                name,
                active: b[2] & bit != 0,
                changeable: b[0] & bit != 0 && b[3] & bit == 0,
            }
        })
        .collect())
}

/// Turns feature `name` of `iface` on or off (`ethtool -K`), and checks
/// that the device took it.
pub fn set_feature(iface: &str, name: &str, on: bool) -> Result<()> {
    let names =
        feature_names(iface).with_context(|| format!("listing the offload features of {iface}"))?;
    let Some(i) = names.iter().position(|n| n == name) else {
        bail!("{iface} has no offload feature {name}");
    };
    let blocks = names.len().div_ceil(32);
    // struct ethtool_sfeatures { cmd, size, { valid, requested }[size] }
    let mut buf = vec![0u32; 2 + 2 * blocks];
    buf[0] = ETHTOOL_SFEATURES;
    buf[1] = blocks as u32;
    let bit = 1u32 << (i % 32);
    buf[2 + 2 * (i / 32)] = bit;
    if on {
        buf[3 + 2 * (i / 32)] = bit;
    }
    ethtool(iface, &mut buf).with_context(|| format!("ethtool -K {iface} {name}"))?;
    let now = features(iface)?;
    if now.iter().any(|f| f.name == name && f.active != on) {
        bail!(
            "{iface} kept {name} {}: the driver refused the change",
            if on { "off" } else { "on" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback has features on every kernel; some are fixed.
    #[test]
    fn loopback_features() {
        let f = features("lo").unwrap();
        assert!(f.len() > 20, "{f:?}");
        let lro = f.iter().find(|f| f.name == "rx-lro").unwrap();
        assert!(!lro.active && !lro.changeable, "{lro:?}");
        assert!(features("nosuch0").is_err());
        assert!(set_feature("lo", "no-such-feature", false).is_err());
    }
}
