//! Just enough of the kernel's BTF (`/sys/kernel/btf/vmlinux`) to stand in
//! for CO-RE, which Rust eBPF lacks: struct member offsets (through
//! anonymous unions and structs) and enumerator values, read from the
//! running kernel so one binary works across kernel versions. Userspace
//! resolves them and hands them to the programs as load-time constants.

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail, ensure};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One type record: where it starts in the type section and its header.
#[derive(Clone, Copy)]
struct Type {
    at: usize,
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
}

/// A parsed BTF blob.
pub struct Btf {
    types_sec: Vec<u8>,
    strings: Vec<u8>,
    /// Index 0 is `void`; type ids start at 1.
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

/// Where a struct member lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Byte offset from the start of the struct.
    pub offset: u32,
    /// Size in bytes of the member's type.
    pub size: u32,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    let w = b
        .get(at..at + 4)
        .ok_or_else(|| anyhow!("BTF truncated at {at}"))?;
    Ok(u32::from_le_bytes(w.try_into().unwrap()))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_kernel() -> Result<Btf> {
        let data = std::fs::read(VMLINUX).with_context(|| {
            format!("reading {VMLINUX}: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)")
        })?;
        Btf::parse(&data).with_context(|| format!("parsing {VMLINUX}"))
    }

    /// Parses a little-endian BTF blob (the only kind an x86/arm64 kernel exposes).
    pub fn parse(data: &[u8]) -> Result<Btf> {
        ensure!(data.len() >= 24, "too short for a BTF header");
        ensure!(
            u16::from_le_bytes([data[0], data[1]]) == MAGIC,
            "not little-endian BTF (bad magic)"
        );
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| anyhow!("BTF section out of bounds"))
        };
        let types_sec = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut btf = Btf {
            types_sec,
            strings,
            types: vec![Type {
                at: 0,
                name_off: 0,
                kind: 0,
                vlen: 0,
                kind_flag: false,
                size_or_type: 0,
            }],
            by_name: HashMap::new(),
        };
        let mut at = 0;
        while at < btf.types_sec.len() {
            let info = u32_at(&btf.types_sec, at + 4)?;
            let t = Type {
                at,
                name_off: u32_at(&btf.types_sec, at)?,
                kind: (info >> 24) & 0x1f,
                vlen: (info & 0xffff) as usize,
                kind_flag: info >> 31 != 0,
                size_or_type: u32_at(&btf.types_sec, at + 8)?,
            };
            let extra = match t.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                k => bail!("unknown BTF kind {k} at type offset {at}"),
            };
            let id = btf.types.len() as u32;
            if t.name_off != 0 {
                let name = btf.str_at(t.name_off)?.to_string();
                btf.by_name.entry(name).or_default().push(id);
            }
            btf.types.push(t);
            at += 12 + extra;
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> Result<&str> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or_else(|| anyhow!("BTF string offset {off} out of bounds"))?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).context("BTF string not UTF-8")
    }

    fn ty(&self, id: u32) -> Result<Type> {
        self.types
            .get(id as usize)
            .copied()
            .ok_or_else(|| anyhow!("BTF type id {id} out of range"))
    }

    /// The named type of `kind`, the first one if several.
    fn named(&self, name: &str, kinds: &[u32]) -> Option<Type> {
        self.by_name
            .get(name)?
            .iter()
            .map(|&id| self.types[id as usize])
            .find(|t| kinds.contains(&t.kind))
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<Type> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(t),
            }
        }
        bail!("BTF type chain too long at {id}")
    }

    fn size_of(&self, id: u32) -> Result<u32> {
        let t = self.resolve(id)?;
        Ok(match t.kind {
            KIND_PTR => 8,
            KIND_ARRAY => {
                let elem = u32_at(&self.types_sec, t.at + 12)?;
                let n = u32_at(&self.types_sec, t.at + 20)?;
                n * self.size_of(elem)?
            }
            _ => t.size_or_type,
        })
    }

    /// (name, type id, bit offset) of each member of a struct or union.
    fn members(&self, t: Type) -> Result<Vec<(&str, u32, u32)>> {
        (0..t.vlen)
            .map(|i| {
                let at = t.at + 12 + 12 * i;
                let bits = u32_at(&self.types_sec, at + 8)?;
                let bit_off = if t.kind_flag { bits & 0xff_ffff } else { bits };
                Ok((
                    self.str_at(u32_at(&self.types_sec, at)?)?,
                    u32_at(&self.types_sec, at + 4)?,
                    bit_off,
                ))
            })
            .collect()
    }

    /// Finds `field` in `t` or in its anonymous unions and structs.
    fn find_member(&self, t: Type, field: &str, base_bits: u32) -> Result<Option<(u32, u32)>> {
        for (name, ty, bits) in self.members(t)? {
            if name == field {
                return Ok(Some((ty, base_bits + bits)));
            }
            if name.is_empty() {
                let inner = self.resolve(ty)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some(found) = self.find_member(inner, field, base_bits + bits)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The offset and size of `strukt.path` (`path` may name nested members
    /// with dots: `hdr.len`). Anonymous unions and structs are looked through.
    pub fn member(&self, strukt: &str, path: &str) -> Result<Member> {
        let mut t = self
            .named(strukt, &[KIND_STRUCT, KIND_UNION])
            .ok_or_else(|| anyhow!("struct {strukt} not in the kernel's BTF"))?;
        let mut bits = 0;
        let mut ty = 0;
        for (i, field) in path.split('.').enumerate() {
            if i > 0 {
                t = self.resolve(ty)?;
                ensure!(
                    matches!(t.kind, KIND_STRUCT | KIND_UNION),
                    "{strukt}.{path}: {field} is not inside a struct"
                );
            }
            let (found_ty, found_bits) = self
                .find_member(t, field, bits)?
                .ok_or_else(|| anyhow!("{strukt} has no member {path} in the kernel's BTF"))?;
            ty = found_ty;
            bits = found_bits;
        }
        ensure!(bits % 8 == 0, "{strukt}.{path} is a bitfield");
        Ok(Member {
            offset: bits / 8,
            size: self.size_of(ty)?,
        })
    }

    /// The value of enumerator `name`, in whichever enum declares it
    /// (anonymous enums included).
    pub fn enumerator(&self, name: &str) -> Option<i64> {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, KIND_ENUM | KIND_ENUM64))
            .find_map(|&t| {
                self.enum_entries(t)
                    .ok()?
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v)
            })
    }

    /// Every (name, value) of the named enum, in declaration order.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, i64)>> {
        let t = self.named(name, &[KIND_ENUM, KIND_ENUM64])?;
        let entries = self.enum_entries(t).ok()?;
        Some(
            entries
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        )
    }

    fn enum_entries(&self, t: Type) -> Result<Vec<(&str, i64)>> {
        let signed = t.kind_flag;
        (0..t.vlen)
            .map(|i| {
                if t.kind == KIND_ENUM {
                    let at = t.at + 12 + 8 * i;
                    let raw = u32_at(&self.types_sec, at + 4)?;
                    let v = if signed {
                        raw as i32 as i64
                    } else {
                        raw as i64
                    };
                    Ok((self.str_at(u32_at(&self.types_sec, at)?)?, v))
                } else {
                    let at = t.at + 12 + 12 * i;
                    let lo = u32_at(&self.types_sec, at + 4)? as u64;
                    let hi = u32_at(&self.types_sec, at + 8)? as u64;
                    Ok((
                        self.str_at(u32_at(&self.types_sec, at)?)?,
                        (hi << 32 | lo) as i64,
                    ))
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "btf_tests.rs"]
mod tests;
