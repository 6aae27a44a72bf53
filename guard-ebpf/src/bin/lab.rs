//! The lab's object (test-only, never attached by `run`): what the pre-5.7
//! NAT code did to flannel's VXLAN frames on a second SNAT. An outer UDP
//! checksum of 0 becomes 0xffff and the source port changes, with no fix-up.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use guard_common::LT_LAB_CORRUPT;
use guard_ebpf::{
    ctx::{self, MAX_HEADER_BYTES},
    parse::{self, ETH_P_IP, ETH_P_IPV6},
};

#[map(name = "LAB_SNAT_COUNTERS")]
static LAB_SNAT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[classifier]
pub fn lab_double_snat(ctx: TcContext) -> i32 {
    let _ = ctx.pull_data(core::cmp::min(ctx.len(), MAX_HEADER_BYTES));
    let c = ctx::tc_cursor(&ctx);
    let Ok((ip, ethertype)) = parse::ethernet(&c) else {
        return TC_ACT_UNSPEC;
    };
    let udp = match (ethertype, c.be16_at(ip)) {
        (ETH_P_IP, Some(w)) if c.be16_at(ip + 8).map(|w| w & 0xff) == Some(17) => {
            ip + ((w >> 8) as usize & 0x0f) * 4
        }
        (ETH_P_IPV6, Some(_)) if c.be16_at(ip + 6).map(|w| w >> 8) == Some(17) => ip + 40,
        _ => return TC_ACT_UNSPEC,
    };
    if !matches!(c.be16_at(udp + 2), Some(4789 | 8472)) || c.be16_at(udp + 6) != Some(0) {
        return TC_ACT_UNSPEC;
    }
    let sport = 61000u16.to_be();
    let check = 0xffffu16;
    // Also flip the last byte of the datagram (real corruption)?
    if guard_ebpf::loadtime::get::<LT_LAB_CORRUPT>() != 0 {
        let last = ctx.len() as usize - 1;
        if let Ok(b) = ctx.load::<u8>(last) {
            let _ = ctx.store(last, &(b ^ 0x01), 0);
        }
    }
    if ctx.store(udp, &sport, 0).is_ok() && ctx.store(udp + 6, &check, 0).is_ok() {
        ctx::bump(&LAB_SNAT_COUNTERS, 0);
    }
    TC_ACT_UNSPEC
}

guard_ebpf::object!();
