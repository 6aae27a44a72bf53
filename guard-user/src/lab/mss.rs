//! Incident 3 rebuilt in namespaces: client (MTU 1500) -> node (forwarding)
//! -> tunnel link (MTU 1440) -> pod, with the node's ICMP "fragmentation
//! needed" / "packet too big" dropped as behind the cloud load balancer.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    cmd::stats,
    config::clamp::Clamp,
    guard::counters::IfaceStats,
    guard::{AttachMode, Direction, Features, Guard},
    lab::{
        accept_until, family,
        netns::{self, Netns, VethEnd},
        verdict,
    },
};

pub const TUNNEL_MTU: u32 = 1440;
pub const CLIENT_IF: &str = "c0";
/// The node's interface towards the client, and towards the pod (the tunnel).
pub const NODE_CLIENT_IF: &str = "n0";
pub const NODE_TUNNEL_IF: &str = "n1";
const POD_IF: &str = "p0";
/// The pod's addresses: its side of the tunnel link, and where transfers go.
const POD_V4: &str = "10.77.2.2";
const POD_V6: &str = "fd77:2::2";
const PORT: u16 = 9083;

pub struct TunnelLab {
    pub client: Netns,
    pub node: Netns,
    pub pod: Netns,
    /// With [`TunnelLab::ipip`]: the pod's node, at the far end of the
    /// tunnel.
    pub remote: Option<Netns>,
}

/// The IPIP device Calico uses (the fallback tunnel every namespace gets).
pub const IPIP_DEV: &str = "tunl0";

impl TunnelLab {
    pub fn new() -> Result<TunnelLab> {
        let tag = netns::unique_tag();
        let lab = TunnelLab {
            client: Netns::new(&format!("pg-{tag}-client"))?,
            node: Netns::new(&format!("pg-{tag}-node"))?,
            pod: Netns::new(&format!("pg-{tag}-pod"))?,
            remote: None,
        };
        netns::veth(
            &VethEnd::new(
                &lab.client,
                CLIENT_IF,
                &["10.77.1.2/24", "fd77:1::2/64"],
                1500,
            ),
            &VethEnd::new(
                &lab.node,
                NODE_CLIENT_IF,
                &["10.77.1.1/24", "fd77:1::1/64"],
                1500,
            ),
        )?;
        // The pod's side keeps MTU 1500, so the pod advertises MSS 1460 as a
        // pod behind a tunnel does; only the node's side is narrow.
        netns::veth(
            &VethEnd::new(
                &lab.node,
                NODE_TUNNEL_IF,
                &["10.77.2.1/24", "fd77:2::1/64"],
                TUNNEL_MTU,
            ),
            &VethEnd::new(
                &lab.pod,
                POD_IF,
                &[&format!("{POD_V4}/24"), &format!("{POD_V6}/64")],
                1500,
            ),
        )?;
        lab.client
            .ip(&["route", "add", "default", "via", "10.77.1.1"])?;
        lab.client
            .ip(&["-6", "route", "add", "default", "via", "fd77:1::1"])?;
        lab.pod
            .ip(&["route", "add", "default", "via", "10.77.2.1"])?;
        lab.pod
            .ip(&["-6", "route", "add", "default", "via", "fd77:2::1"])?;
        lab.node.sysctl("net.ipv4.ip_forward", "1")?;
        lab.node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        // The PMTU black hole: the node's "too big" errors never arrive.
        lab.node.exec(&[
            "nft",
            "add table inet pmtu_blackhole; \
             add chain inet pmtu_blackhole out { type filter hook output priority 0; }; \
             add rule inet pmtu_blackhole out icmp type destination-unreachable icmp code frag-needed drop; \
             add rule inet pmtu_blackhole out icmpv6 type packet-too-big drop",
        ])?;
        Ok(lab)
    }

    /// Incident 3 as in the seed: client -> node -> IPIP (`tunl0`, MTU
    /// 1440, over a 1500 underlay) -> the pod's node -> pod (MTU 1500), the
    /// node's ICMP "fragmentation needed" dropped. IPv4 only, as IPIP is.
    /// The node's NODE_TUNNEL_IF is the underlay here.
    pub fn ipip() -> Result<TunnelLab> {
        let tag = netns::unique_tag();
        let lab = TunnelLab {
            client: Netns::new(&format!("pg-{tag}-client"))?,
            node: Netns::new(&format!("pg-{tag}-node"))?,
            pod: Netns::new(&format!("pg-{tag}-pod"))?,
            remote: Some(Netns::new(&format!("pg-{tag}-remote"))?),
        };
        let remote = lab.remote.as_ref().expect("set above");
        netns::veth(
            &VethEnd::new(&lab.client, CLIENT_IF, &["10.77.1.2/24"], 1500),
            &VethEnd::new(&lab.node, NODE_CLIENT_IF, &["10.77.1.1/24"], 1500),
        )?;
        netns::veth(
            &VethEnd::new(&lab.node, NODE_TUNNEL_IF, &["192.168.78.1/24"], 1500),
            &VethEnd::new(remote, "u0", &["192.168.78.2/24"], 1500),
        )?;
        netns::veth(
            &VethEnd::new(remote, "h0", &["10.77.2.1/24"], 1500),
            &VethEnd::new(&lab.pod, POD_IF, &[&format!("{POD_V4}/24")], 1500),
        )?;
        lab.client
            .ip(&["route", "add", "default", "via", "10.77.1.1"])?;
        lab.pod
            .ip(&["route", "add", "default", "via", "10.77.2.1"])?;
        // Calico's routes: the other node's pod block via its address, onlink
        // through tunl0.
        for (ns, me, peer, block) in [
            (&lab.node, "10.77.9.1", "192.168.78.2", "10.77.2.0/24"),
            (remote, "10.77.9.2", "192.168.78.1", "10.77.1.0/24"),
        ] {
            if ns.ip(&["link", "show", IPIP_DEV]).is_err() {
                ns.ip(&["link", "add", "name", IPIP_DEV, "type", "ipip"])
                    .context("an IPIP tunnel (this kernel has no IPIP driver?)")?;
            }
            ns.ip(&[
                "link",
                "set",
                IPIP_DEV,
                "mtu",
                &TUNNEL_MTU.to_string(),
                "up",
            ])?;
            ns.ip(&["addr", "add", &format!("{me}/32"), "dev", IPIP_DEV])?;
            ns.ip(&[
                "route", "add", block, "via", peer, "dev", IPIP_DEV, "onlink",
            ])?;
            ns.sysctl("net.ipv4.ip_forward", "1")?;
        }
        lab.node.exec(&[
            "nft",
            "add table inet pmtu_blackhole; \
             add chain inet pmtu_blackhole out { type filter hook output priority 0; }; \
             add rule inet pmtu_blackhole out icmp type destination-unreachable icmp code frag-needed drop",
        ])?;
        Ok(lab)
    }

    pub fn pod_addr(v6: bool) -> IpAddr {
        if v6 { POD_V6 } else { POD_V4 }
            .parse()
            .expect("valid literal")
    }

    /// Sends `bytes` from the client to a server in the pod and waits at most
    /// `wait` for them to arrive.
    pub fn transfer(&self, v6: bool, bytes: usize, wait: Duration) -> Result<Transfer> {
        let addr = SocketAddr::new(Self::pod_addr(v6), PORT);
        let listener = self.pod.run(|| {
            TcpListener::bind(addr).with_context(|| format!("listening on {addr} in the pod"))
        })?;
        listener.set_nonblocking(true)?;
        let start = Instant::now();
        let deadline = start + wait;
        let client = self.client.run(|| {
            TcpStream::connect_timeout(&addr, wait).with_context(|| format!("connecting to {addr}"))
        })?;
        let server = std::thread::spawn(move || serve(listener, deadline));
        client.set_write_timeout(Some(wait))?;
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut sent = 0;
        let mut writer = &client;
        while sent < bytes && Instant::now() < deadline {
            let n = chunk.len().min(bytes - sent);
            match writer.write(&chunk[..n]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e).context("sending from the client"),
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Write);
        let (received, server_mss) = server.join().unwrap_or_else(|_| bail!("server panicked"))?;
        Ok(Transfer {
            bytes,
            received,
            elapsed: start.elapsed(),
            server_mss,
            client_mss: tcp_maxseg(&client)?,
        })
    }
}

fn serve(listener: TcpListener, deadline: Instant) -> Result<(usize, u32)> {
    let mut conn = accept_until(&listener, deadline)
        .context("accepting in the pod")?
        .ok_or_else(|| anyhow!("no connection reached the pod"))?;
    conn.set_nonblocking(false)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        conn.set_read_timeout(Some(left))?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e).context("receiving in the pod"),
        }
    }
    Ok((received, tcp_maxseg(&conn)?))
}

/// TCP_MAXSEG of a connected socket: the MSS it sends with, derived from
/// the MSS option its peer advertised.
pub fn tcp_maxseg(s: &TcpStream) -> Result<u32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd, out-pointer of the right size.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(TCP_MAXSEG)");
    }
    Ok(v as u32)
}

#[derive(Clone, Debug)]
pub struct Transfer {
    pub bytes: usize,
    pub received: usize,
    pub elapsed: Duration,
    /// The pod's (server's) sending MSS.
    pub server_mss: u32,
    /// The client's sending MSS.
    pub client_mss: u32,
}

impl Transfer {
    pub fn completed(&self) -> bool {
        self.received == self.bytes
    }
}

impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.completed() {
            write!(f, "completed: {} bytes in {:.2?}", self.bytes, self.elapsed)?;
        } else {
            write!(
                f,
                "STALLED: {} of {} bytes after {:.2?}",
                self.received, self.bytes, self.elapsed
            )?;
        }
        write!(
            f,
            " (MSS: client sends {}, pod sends {})",
            self.client_mss, self.server_mss
        )
    }
}

/// `pktguard lab mss`: incident 3 before and after the guard, with a verdict.
pub fn report(bytes: usize, stall: Duration) -> Result<()> {
    let clamp = Clamp::from_mtu(TUNNEL_MTU)?;
    println!(
        "lab mss: client (MTU 1500) -> node -> tunnel (MTU {}) -> pod; the node's ICMP \
         \"too big\" errors are dropped",
        TUNNEL_MTU
    );
    let lab = TunnelLab::new().context("building the lab namespaces")?;
    let mut ok = true;
    let mut before = Vec::new();
    for v6 in [false, true] {
        let t = lab.transfer(v6, bytes, stall)?;
        println!("  without the guard, {}: {t}", family(v6));
        ok &= !t.completed();
        before.push(t);
    }
    let features = Features {
        clamp: Some(clamp),
        repair: None,
        gso: None,
    };
    let guard = lab
        .node
        .run(|| Guard::start(NODE_CLIENT_IF, AttachMode::Auto, Direction::Both, &features))?;
    let hooks: Vec<_> = guard.attached.iter().map(|a| a.name()).collect();
    println!(
        "  guard on the node's {} ({}): {clamp}",
        NODE_CLIENT_IF,
        hooks.join(" + ")
    );
    for v6 in [false, true] {
        let t = lab.transfer(v6, bytes, Duration::from_secs(30))?;
        let limit = u32::from(if v6 { clamp.mss_v6 } else { clamp.mss_v4 });
        println!("  with the guard, {}: {t}", family(v6));
        ok &= t.completed() && t.server_mss <= limit && t.client_mss <= limit;
    }
    let counters = IfaceStats {
        iface: format!("node/{}", NODE_CLIENT_IF),
        attached: hooks.iter().map(|h| h.to_string()).collect(),
        mss_v4: clamp.mss_v4,
        mss_v6: clamp.mss_v6,
        hooks: guard.counters()?,
        csum: Vec::new(),
        gso: None,
    };
    print!("{}", stats::render_table(&[counters]));
    drop(guard);
    drop(lab);
    verdict(
        ok,
        "without the guard the transfers stall; with it they complete, every MSS within the clamp",
        "the transfers above",
    )
}
