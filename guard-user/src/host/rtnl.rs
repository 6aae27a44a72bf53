//! The interfaces of the calling thread's network namespace, from an
//! rtnetlink dump (what `ip -d link` reads): name, kind, MTU and the lower
//! device a tunnel sends through. sysfs would show the namespace that
//! mounted it, not ours.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: vxlan, geneve, ipip, wireguard, veth, bridge...;
    /// empty for a physical NIC.
    pub kind: String,
    pub mtu: u32,
    /// The device the tunnel's packets leave through (IFLA_LINK, or the
    /// VXLAN/Geneve `dev` parameter), when it names one.
    pub lower: Option<u32>,
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
/// IFLA_VXLAN_LINK and, by coincidence of numbering, not Geneve's: Geneve
/// has no lower-device attribute.
const IFLA_VXLAN_LINK: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The (type, payload) attributes in `buf`.
pub fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

fn u32_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

fn str_of(p: &[u8]) -> String {
    let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

/// One RTM_NEWLINK message body (ifinfomsg and attributes).
pub fn parse_link(body: &[u8]) -> Option<Link> {
    let ifindex = i32::from_ne_bytes(body.get(4..8)?.try_into().ok()?) as u32;
    let mut link = Link {
        ifindex,
        ..Link::default()
    };
    for (ty, p) in attrs(body.get(IFINFOMSG_LEN..)?) {
        match ty {
            IFLA_IFNAME => link.name = str_of(p),
            IFLA_MTU => link.mtu = u32_of(p)?,
            IFLA_LINK => link.lower = u32_of(p).filter(|&l| l != 0 && l != ifindex),
            IFLA_LINKINFO => {
                for (ity, ip) in attrs(p) {
                    match ity {
                        IFLA_INFO_KIND => link.kind = str_of(ip),
                        IFLA_INFO_DATA if link.kind == "vxlan" => {
                            if let Some(l) = attrs(ip)
                                .into_iter()
                                .find(|(t, _)| *t == IFLA_VXLAN_LINK)
                                .and_then(|(_, v)| u32_of(v))
                                .filter(|&l| l != 0)
                            {
                                link.lower = Some(l);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// Every interface of this network namespace.
pub fn links() -> Result<Vec<Link>> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("opening an rtnetlink socket");
    }
    // SAFETY: a fresh, valid fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: valid fd and buffer; the kernel is the default destination.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error()).context("sending RTM_GETLINK");
    }
    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("reading the link dump");
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes(msgs[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([msgs[4], msgs[5]]);
            if len < NLMSG_HDRLEN || len > msgs.len() {
                bail!("malformed rtnetlink message");
            }
            match ty {
                NLMSG_DONE => return Ok(links),
                NLMSG_ERROR => {
                    let err = i32::from_ne_bytes(msgs[16..20].try_into().unwrap());
                    return Err(io::Error::from_raw_os_error(-err)).context("RTM_GETLINK");
                }
                RTM_NEWLINK => links.extend(parse_link(&msgs[NLMSG_HDRLEN..len])),
                _ => {}
            }
            msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn a_vxlan_link_message() {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&7i32.to_ne_bytes());
        body.extend(attr(IFLA_IFNAME, b"flannel.1\0"));
        body.extend(attr(IFLA_MTU, &1450u32.to_ne_bytes()));
        let data = attr(IFLA_VXLAN_LINK, &2u32.to_ne_bytes());
        let info = [
            attr(IFLA_INFO_KIND, b"vxlan\0"),
            attr(IFLA_INFO_DATA, &data),
        ]
        .concat();
        body.extend(attr(IFLA_LINKINFO, &info));
        let link = parse_link(&body).unwrap();
        assert_eq!(
            link,
            Link {
                ifindex: 7,
                name: "flannel.1".into(),
                kind: "vxlan".into(),
                mtu: 1450,
                lower: Some(2),
            }
        );
        // Truncated attributes end the walk, never a panic.
        assert!(parse_link(&body[..IFINFOMSG_LEN + 6]).is_some());
        assert!(parse_link(&body[..3]).is_none());
    }

    #[test]
    fn this_namespace_has_loopback() {
        let links = links().unwrap();
        let lo = links.iter().find(|l| l.name == "lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        assert!(lo.mtu >= 1500);
    }
}
