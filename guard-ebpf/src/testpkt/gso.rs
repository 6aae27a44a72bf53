//! The GSO guard's case table: packets with the skb GSO metadata the
//! kernel would give them, and the verdict and outcome each must get.

use super::*;

/// A row of the GSO guard's table.
#[derive(Clone, Debug)]
pub struct GsoCase {
    pub name: String,
    pub frame: Vec<u8>,
    pub gso_size: u32,
    pub gso_segs: u32,
    /// `skb_shinfo(skb)->gso_type` in [`GSO_LAYOUT`]'s bits (0: unknown).
    pub gso_type: u32,
    pub outcome: guard_common::GsoOutcome,
}

/// SKB_GSO_* as Linux 4.x to 6.x number them (the loader reads the running
/// kernel's values from its BTF).
pub const SKB_GSO_TCPV4: u32 = 1 << 0;
pub const SKB_GSO_DODGY: u32 = 1 << 1;
pub const SKB_GSO_TCPV6: u32 = 1 << 4;
pub const SKB_GSO_UDP_TUNNEL: u32 = 1 << 10;
pub const SKB_GSO_UDP_L4: u32 = 1 << 17;

/// The layout the GSO cases are written for.
pub const GSO_LAYOUT: guard_common::GsoLayout = guard_common::GsoLayout {
    skb_head: 0,
    skb_end: 0,
    shinfo_gso_type: 0,
    tcpv4: SKB_GSO_TCPV4,
    tcpv6: SKB_GSO_TCPV6,
    udp: 1 << 16 | SKB_GSO_UDP_L4,
    // GRE, GRE_CSUM, IPXIP4, IPXIP6, UDP_TUNNEL, UDP_TUNNEL_CSUM, ESP.
    tunnel: 0xfc0 | 1 << 15,
    _pad: 0,
};

/// The GSO guard's cases, for its default limits (88, 1024).
pub fn gso_cases() -> Vec<GsoCase> {
    use guard_common::GsoOutcome::*;
    let case = |name: &str, frame: Vec<u8>, gso_size, gso_segs, outcome| GsoCase {
        name: name.into(),
        frame,
        gso_size,
        gso_segs,
        gso_type: 0,
        outcome,
    };
    let typed = |name: &str, frame: Vec<u8>, gso_type, outcome| GsoCase {
        name: name.into(),
        frame,
        gso_size: 1448,
        gso_segs: 0,
        gso_type,
        outcome,
    };
    let (v4_dodgy, v6_dodgy) = (SKB_GSO_TCPV4 | SKB_GSO_DODGY, SKB_GSO_TCPV6 | SKB_GSO_DODGY);
    let data = |v6: bool, n: usize| {
        let mut s = Segment::syn(&[]).flags(ACK).payload(&vec![7; n]);
        s.v6 = v6;
        s.build()
    };
    let v4 = data(false, 3000);
    let tcp = tcp_offset(&v4);
    let mut ihl4 = v4.clone();
    ihl4[14] = 0x44;
    let mut doff4 = v4.clone();
    doff4[tcp + 12] = 4 << 4;
    let mut short_total = v4.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    let mut frag = v4.clone();
    frag[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    let mut icmp = v4.clone();
    icmp[23] = 1;
    let mut arp = v4.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let udp = udp_frame(&[3; 2000], false);
    // A BIG TCP aggregate: IPv4 total length 0, the frame says how long.
    let mut big = data(false, 95_000);
    big[16..18].copy_from_slice(&[0, 0]);
    vec![
        case("not GSO", v4.clone(), 0, 0, NotGso),
        case("TCP/IPv4, 3 segments", v4.clone(), 1448, 3, Ok),
        case("TCP/IPv4, gso_segs 0 (tap/virtio)", v4.clone(), 1448, 0, Ok),
        case("TCP/IPv6, 3 segments", data(true, 3000), 1448, 3, Ok),
        case("UDP, any gso_segs", udp.clone(), 1400, 7, Ok),
        case(
            "gso_size 1 (amplification)",
            v4.clone(),
            1,
            3000,
            SizeTooSmall,
        ),
        case("gso_size 87", v4.clone(), 87, 35, SizeTooSmall),
        case(
            "gso_segs 2 for 3 segments",
            v4.clone(),
            1448,
            2,
            SegsMismatch,
        ),
        case("BIG TCP, 95 kB at MSS 1448", big.clone(), 1448, 66, Ok),
        case(
            "BIG TCP, 95 kB at gso_size 88: 1080 segments",
            big,
            88,
            0,
            TooManySegments,
        ),
        case("ARP", arp, 1448, 0, NotIp),
        case("ICMP", icmp, 1448, 0, NotTcpUdp),
        case("IPv4 fragment", frag, 1448, 0, Fragment),
        case("IHL 4", ihl4, 1448, 0, BadHeaders),
        case("doff 4", doff4, 1448, 0, BadHeaders),
        case(
            "total length below the headers",
            short_total,
            1448,
            0,
            BadHeaders,
        ),
        case(
            "truncated TCP header",
            v4[..tcp + 10].to_vec(),
            1448,
            0,
            BadHeaders,
        ),
        typed("gso_type TCPV4 on TCP/IPv4", v4.clone(), v4_dodgy, Ok),
        typed("gso_type TCPV6 on TCP/IPv6", data(true, 3000), v6_dodgy, Ok),
        typed(
            "gso_type TCPV4 on IPv6",
            data(true, 3000),
            v4_dodgy,
            TypeVsIp,
        ),
        typed("gso_type TCPV6 on IPv4", v4.clone(), v6_dodgy, TypeVsIp),
        typed("gso_type TCPV4 on UDP", udp.clone(), v4_dodgy, TypeVsL4),
        typed("gso_type UDP_L4 on UDP", udp.clone(), SKB_GSO_UDP_L4, Ok),
        typed(
            "gso_type UDP_L4 on TCP",
            v4.clone(),
            SKB_GSO_UDP_L4,
            TypeVsL4,
        ),
        typed(
            "gso_type TCPV4 inside a UDP tunnel (inner type: not judged)",
            udp,
            SKB_GSO_TCPV4 | SKB_GSO_UDP_TUNNEL,
            Ok,
        ),
    ]
}
