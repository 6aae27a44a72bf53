//! Incident 1 in namespaces: GSO packets with offload metadata written by a
//! tap (IFF_VNET_HDR, as virtio/LRO hands them to the stack) enter a
//! forwarding node and are segmented on the way to a sink. A valid aggregate
//! becomes its segments; a malformed one (gso_size 1) becomes thousands, or
//! dies in the stack. The guard drops and counts the malformed ones first.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::fd::AsRawFd as _,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use guard_common::{GSO_MAX_SEGS_DEFAULT, GSO_MIN_SIZE_DEFAULT, GsoAction, GsoConfig, GsoOutcome};
use guard_ebpf::{
    csum::{fold, sum_words},
    parse::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    guard::{AttachMode, Direction, Features, Guard},
    lab::{
        netns::{self, Netns, VethEnd},
        verdict,
    },
};

/// The tap on the node: where the aggregates arrive, where the guard runs.
pub const TAP_IF: &str = "gt0";
const NODE_OUT: &str = "n1";
const SINK_IF: &str = "s0";
pub const SINK_V4: [u8; 4] = [10, 66, 2, 2];
const SRC_V4: [u8; 4] = [10, 66, 1, 2];
const SRC_V6: [u8; 16] = [0xfd, 0x66, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const SINK_V6: [u8; 16] = [0xfd, 0x66, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// Jumbo on the way to the sink: 1448-byte segments fit IPv6 as well.
const SINK_MTU: u32 = 9000;

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

pub struct GsoLab {
    pub node: Netns,
    pub sink: Netns,
    tap: File,
    tap_mac: [u8; 6],
}

impl GsoLab {
    pub fn new() -> Result<GsoLab> {
        let tag = netns::unique_tag();
        let node = Netns::new(&format!("pg-{tag}-gnode"))?;
        let sink = Netns::new(&format!("pg-{tag}-gsink"))?;
        // Only the injected packets may reach the sink: no IPv6 autoconf
        // or DAD chatter (addresses are added without DAD, routes by hand).
        for ns in [&node, &sink] {
            ns.sysctl("net.ipv6.conf.default.accept_ra", "0")?;
            ns.sysctl("net.ipv6.conf.default.addr_gen_mode", "1")?;
        }
        let tap = node.run(|| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .context("opening /dev/net/tun")?;
            // SAFETY: an all-zero ifreq is valid; the name fits.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(TAP_IF.bytes()) {
                *d = s as libc::c_char;
            }
            req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
            // SAFETY: TUNSETIFF with a valid ifreq on a tun fd.
            if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req) } != 0 {
                return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
            }
            Ok(f)
        })?;
        node.ip(&["link", "set", TAP_IF, "up"])?;
        node.ip(&["addr", "add", "10.66.1.1/24", "dev", TAP_IF])?;
        node.ip(&["-6", "addr", "add", "fd66:1::1/64", "dev", TAP_IF, "nodad"])?;
        netns::veth(
            &VethEnd::new(&node, NODE_OUT, &["10.66.2.1/24", "fd66:2::1/64"], SINK_MTU),
            &VethEnd::new(&sink, SINK_IF, &["10.66.2.2/24", "fd66:2::2/64"], SINK_MTU),
        )?;
        // Segment in software on the way out, so the sink counts segments.
        node.exec(&["ethtool", "-K", NODE_OUT, "tso", "off", "gso", "off"])?;
        node.sysctl("net.ipv4.ip_forward", "1")?;
        node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        node.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        node.sysctl(&format!("net.ipv4.conf.{TAP_IF}.rp_filter"), "0")?;
        sink.exec(&[
            "nft",
            // Rule counters, one rule per protocol: named counters need
            // nft_objref and `{ tcp, udp }` a set backend, which the 4.19
            // kernel of the matrix lacks.
            "add table inet gsolab; \
             add chain inet gsolab pre { type filter hook prerouting priority -300; }; \
             add rule inet gsolab pre tcp dport 8080 counter; \
             add rule inet gsolab pre udp dport 8080 counter",
        ])?;
        // No ARP during a measurement: the sink's address is known.
        let sink_mac = sink.mac_text(SINK_IF)?;
        for addr in ["10.66.2.2", "fd66:2::2"] {
            node.ip(&[
                "neigh",
                "add",
                addr,
                "lladdr",
                &sink_mac,
                "dev",
                NODE_OUT,
                "nud",
                "permanent",
            ])?;
        }
        let tap_mac = node.mac(TAP_IF)?;
        Ok(GsoLab {
            node,
            sink,
            tap,
            tap_mac,
        })
    }

    /// A TCP/IPv4 segment from a host behind the tap to the sink, `payload`
    /// bytes long, with its checksum in CHECKSUM_PARTIAL form.
    pub fn tcp4_frame(&self, payload: usize) -> Vec<u8> {
        self.frame(false, IPPROTO_TCP, payload)
    }

    /// The same over IPv6 (fd66:1::2 -> fd66:2::2).
    pub fn tcp6_frame(&self, payload: usize) -> Vec<u8> {
        self.frame(true, IPPROTO_TCP, payload)
    }

    /// A UDP/IPv4 datagram to the sink's port 8080.
    pub fn udp4_frame(&self, payload: usize) -> Vec<u8> {
        self.frame(false, IPPROTO_UDP, payload)
    }

    fn frame(&self, v6: bool, proto: u8, payload: usize) -> Vec<u8> {
        let (src, dst): (&[u8], &[u8]) = if v6 {
            (&SRC_V6, &SINK_V6)
        } else {
            (&SRC_V4, &SINK_V4)
        };
        let l4_len = if proto == IPPROTO_TCP { 20 } else { 8 } + payload;
        let mut f = self.tap_mac.to_vec();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0x66, 1]);
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(src);
            f.extend_from_slice(dst);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(src);
            f.extend_from_slice(dst);
            let check = !fold(sum_words(&f[14..34], 0));
            f[24..26].copy_from_slice(&check.to_be_bytes());
        }
        let l4 = f.len();
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&8080u16.to_be_bytes());
        let csum_at = if proto == IPPROTO_TCP {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
            l4 + 16
        } else {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            l4 + 6
        };
        // The pseudo-header sum, as a sender with checksum offload leaves it
        // (IPv4's and IPv6's pseudo-headers sum alike for lengths < 64 KiB).
        let pseudo = [src, dst, &[0, proto], &(l4_len as u16).to_be_bytes()].concat();
        f[csum_at..csum_at + 2].copy_from_slice(&fold(sum_words(&pseudo, 0)).to_be_bytes());
        f.extend((0..payload).map(|i| (i % 251) as u8));
        f
    }

    /// Writes `frame` into the tap with a virtio_net_hdr that says GSO
    /// `gso_type` of `gso_size`. Returns the kernel's refusal, if any.
    pub fn inject(&mut self, frame: &[u8], gso_type: u8, gso_size: u16) -> std::io::Result<()> {
        let l4 = if frame[12..14] == [0x86, 0xdd] {
            14 + 40u16
        } else {
            14 + 20u16
        };
        let mut hdr = vec![VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type];
        hdr.extend_from_slice(&(l4 + 20).to_le_bytes()); // hdr_len
        hdr.extend_from_slice(&gso_size.to_le_bytes());
        hdr.extend_from_slice(&l4.to_le_bytes()); // csum_start
        hdr.extend_from_slice(&16u16.to_le_bytes()); // csum_offset
        hdr.extend_from_slice(frame);
        self.tap.write_all(&hdr)
    }

    /// [`GsoLab::sink_rx`] once it has stopped moving (at most 3 s): the
    /// segments of one injected packet have all arrived.
    pub fn sink_rx_settled(&self) -> Result<(u64, u64)> {
        let mut last = self.sink_rx()?;
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.sink_rx()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// TCP and UDP packets and bytes to port 8080 the sink has received so far
    /// (the counters of the chain's two rules: only the injected traffic).
    pub fn sink_rx(&self) -> Result<(u64, u64)> {
        let out = self
            .sink
            .exec(&["nft", "list", "chain", "inet", "gsolab", "pre"])?;
        // `counter packets N bytes M`, once per rule.
        let sum = |key: &str| -> Result<u64> {
            let mut total = 0;
            let mut rules = 0;
            for (at, _) in out.match_indices(key) {
                let n: String = out[at + key.len()..]
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                total += n.parse::<u64>()?;
                rules += 1;
            }
            if rules != 2 {
                bail!("{rules} counters of {key} in {out}");
            }
            Ok(total)
        };
        Ok((sum("packets")?, sum("bytes")?))
    }
}

/// `pktguard lab gso`: incident 1 before and after the guard, with a verdict.
pub fn report() -> Result<()> {
    println!(
        "lab gso: GSO packets written into a tap (virtio_net_hdr, as LRO/virtio hand them over) \
         are forwarded by a node and segmented on the way to a sink"
    );
    let mut lab = GsoLab::new().context("building the lab namespaces")?;
    let valid = lab.tcp4_frame(64_000);
    let bad = lab.tcp4_frame(1000);
    let v6 = lab.tcp6_frame(4000);
    let udp = lab.udp4_frame(4000);
    let deliver = |lab: &mut GsoLab, frame: &[u8], gso_type: u8, size: u16| -> Result<u64> {
        let (p0, _) = lab.sink_rx()?;
        lab.inject(frame, gso_type, size)?;
        std::thread::sleep(Duration::from_millis(100));
        Ok(lab.sink_rx_settled()?.0 - p0)
    };
    let tcpv4 = VIRTIO_NET_HDR_GSO_TCPV4;
    let run_all = |lab: &mut GsoLab| -> Result<[u64; 4]> {
        Ok([
            deliver(lab, &valid, tcpv4, 1448)?,
            deliver(lab, &bad, tcpv4, 1)?,
            deliver(lab, &v6, tcpv4, 1448)?,
            deliver(lab, &udp, tcpv4, 1448)?,
        ])
    };
    let show = |when: &str, got: &[u64; 4]| {
        println!("  {when}: segments at the sink");
        let kinds = [
            "64 kB TCP/IPv4 aggregate, gso_size 1448",
            "1000 bytes at gso_size 1 (amplification)",
            "TCPv4 GSO on an IPv6 packet (4 kB)",
            "TCPv4 GSO on a UDP datagram (4 kB)",
        ];
        for (kind, n) in kinds.iter().zip(got) {
            println!("    {kind:<42} -> {n}");
        }
    };
    let without = run_all(&mut lab)?;
    show("without the guard", &without);
    let features = Features {
        clamp: None,
        repair: None,
        gso: Some(GsoConfig {
            min_size: GSO_MIN_SIZE_DEFAULT,
            max_segs: GSO_MAX_SEGS_DEFAULT,
            action: GsoAction::Drop as u8,
            _pad: [0; 7],
        }),
    };
    let guard = lab
        .node
        .run(|| Guard::start(TAP_IF, AttachMode::Tc, Direction::Ingress, &features))?;
    for note in &guard.notes {
        println!("  note: {note}");
    }
    let with = run_all(&mut lab)?;
    show("with --gso-guard drop", &with);
    let g = guard.gso_counters()?;
    let shown = [
        GsoOutcome::Ok,
        GsoOutcome::SizeTooSmall,
        GsoOutcome::TypeVsIp,
        GsoOutcome::TypeVsL4,
    ];
    let counts: Vec<_> = shown
        .iter()
        .map(|o| format!("{} {}", o.name(), g[*o as usize]))
        .collect();
    println!("  guard counters: {}", counts.join(", "));
    drop(guard);
    let typed = g[GsoOutcome::TypeVsIp as usize] == 1 && g[GsoOutcome::TypeVsL4 as usize] == 1;
    let ok = with[0] == without[0]
        && without[0] > 0
        && without[1] >= 900
        && with[1..] == [0, 0, 0]
        && g[GsoOutcome::SizeTooSmall as usize] == 1
        && typed;
    verdict(
        ok,
        "valid aggregates pass untouched; each malformed one is dropped and counted under its reason",
        "above",
    )
}
