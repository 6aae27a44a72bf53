//! The BTF parser against blobs built by hand: the types of a small kernel.

use super::*;

/// Builds a BTF blob by hand: the types of a small kernel.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }
    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }
    fn push(&mut self, words: &[u32]) -> u32 {
        for w in words {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }
    fn int(&mut self, name: &str, size: u32) -> u32 {
        let n = self.s(name);
        self.push(&[n, KIND_INT << 24, size, size * 8])
    }
    fn ptr(&mut self, to: u32) -> u32 {
        self.push(&[0, KIND_PTR << 24, to])
    }
    fn typedef(&mut self, name: &str, to: u32) -> u32 {
        let n = self.s(name);
        self.push(&[n, KIND_TYPEDEF << 24, to])
    }
    fn composite(&mut self, kind: u32, name: &str, size: u32, m: &[(&str, u32, u32)]) -> u32 {
        let n = self.s(name);
        let mut words = vec![n, kind << 24 | m.len() as u32, size];
        for &(name, ty, bits) in m {
            let mn = self.s(name);
            words.extend_from_slice(&[mn, ty, bits]);
        }
        self.push(&words)
    }
    fn enumeration(&mut self, name: &str, e: &[(&str, i32)]) -> u32 {
        let n = self.s(name);
        let mut words = vec![n, KIND_ENUM << 24 | 1 << 31 | e.len() as u32, 4];
        for &(name, v) in e {
            let en = self.s(name);
            words.extend_from_slice(&[en, v as u32]);
        }
        self.push(&words)
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&self.types);
        b.extend_from_slice(&self.strings);
        b
    }
}

fn small_kernel() -> Vec<u8> {
    let mut b = Builder::new();
    let u32_t = b.int("unsigned int", 4);
    let u8_t = b.int("unsigned char", 1);
    let data_t = b.typedef("sk_buff_data_t", u32_t);
    let dev = b.composite(KIND_STRUCT, "net_device", 64, &[("ifindex", u32_t, 32 * 8)]);
    let dev_p = b.ptr(dev);
    let head_p = b.ptr(u8_t);
    // struct sk_buff { union { struct { next; prev; union { dev; dev_scratch } } ... }; ...}
    let inner_u = b.composite(
        KIND_UNION,
        "",
        8,
        &[("dev", dev_p, 0), ("dev_scratch", u32_t, 0)],
    );
    let inner_s = b.composite(
        KIND_STRUCT,
        "",
        24,
        &[
            ("next", head_p, 0),
            ("prev", head_p, 64),
            ("", inner_u, 128),
        ],
    );
    let outer_u = b.composite(KIND_UNION, "", 24, &[("", inner_s, 0)]);
    b.composite(
        KIND_STRUCT,
        "sk_buff",
        232,
        &[
            ("", outer_u, 0),
            ("end", data_t, 196 * 8),
            ("head", head_p, 200 * 8),
        ],
    );
    b.enumeration(
        "skb_drop_reason",
        &[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
        ],
    );
    b.enumeration("", &[("SKB_GSO_TCPV4", 1), ("SKB_GSO_DODGY", 2)]);
    b.bytes()
}

#[test]
fn members_through_anonymous_unions_and_typedefs() {
    let btf = Btf::parse(&small_kernel()).unwrap();
    assert_eq!(
        btf.member("sk_buff", "dev").unwrap(),
        Member {
            offset: 16,
            size: 8
        }
    );
    assert_eq!(
        btf.member("sk_buff", "end").unwrap(),
        Member {
            offset: 196,
            size: 4
        }
    );
    assert_eq!(btf.member("sk_buff", "head").unwrap().offset, 200);
    assert_eq!(
        btf.member("net_device", "ifindex").unwrap(),
        Member {
            offset: 32,
            size: 4
        }
    );
    assert!(btf.member("sk_buff", "nosuch").is_err());
    assert!(btf.member("nosuch", "dev").is_err());
}

#[test]
fn enumerators_named_and_anonymous() {
    let btf = Btf::parse(&small_kernel()).unwrap();
    assert_eq!(btf.enumerator("SKB_GSO_DODGY"), Some(2));
    assert_eq!(btf.enumerator("SKB_DROP_REASON_NO_SOCKET"), Some(3));
    assert_eq!(btf.enumerator("NOPE"), None);
    let reasons = btf.enum_values("skb_drop_reason").unwrap();
    assert_eq!(reasons.len(), 3);
    assert_eq!(reasons[2], ("SKB_DROP_REASON_NO_SOCKET".to_string(), 3));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(Btf::parse(&[]).is_err());
    assert!(Btf::parse(&[0u8; 64]).is_err());
    let mut b = small_kernel();
    b.truncate(b.len() - 40);
    let _ = Btf::parse(&b); // truncated strings: error or partial, never a panic
    let mut b = small_kernel();
    b[12] = 0xff; // type_len beyond the blob
    assert!(Btf::parse(&b).is_err());
}

/// The running kernel's BTF (pktguard needs one: every supported
/// kernel has CONFIG_DEBUG_INFO_BTF).
#[test]
fn the_running_kernel() {
    let btf = Btf::from_kernel().unwrap();
    let head = btf.member("sk_buff", "head").unwrap();
    assert_eq!(head.size, 8);
    assert!(btf.member("sk_buff", "end").unwrap().offset > 0);
    assert!(btf.member("skb_shared_info", "gso_type").unwrap().offset > 0);
    assert_eq!(btf.enumerator("SKB_GSO_TCPV4"), Some(1));
}
