//! The eBPF objects, built by build.rs from guard-ebpf's bins and embedded
//! in the binary: each is loaded only by what runs it, with its load-time
//! constants written into its instructions first ([`with_constants`]).

use anyhow::{Result, bail};
use guard_common::{LOADTIME_MAGIC, LT_RECORD_FIELDS};

/// The guard: the clamp, the repair and the GSO guard (XDP and TC).
pub static GUARD: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard"));

/// The drop monitor: the `kfree_skb` tracepoint and its drop map.
pub static DROPS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drops"));

/// The lab's double SNAT (`pktguard lab csum`).
pub static LAB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab"));

/// The benchmarks' baselines: for the tests crate only (feature
/// `bench-object`), so that the release binary carries no bench programs.
#[cfg(feature = "bench-object")]
pub static BENCH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));

/// An object's bytes, 8-byte aligned as the ELF parser wants them.
pub struct Patched(Vec<u64>);

impl Patched {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u64 has no padding and any byte pattern; the length in
        // bytes is the vector's length times 8.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 8) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 8) }
    }

    /// Hides the object's BTF (`.BTF`, `.BTF.ext`) from the ELF parser: their
    /// section names become empty. For kernels that refuse it (4.19 takes
    /// no 1-byte enum, which every Rust object has).
    pub fn strip_btf(&mut self) -> Result<()> {
        let elf = self.bytes_mut();
        for (header, name) in section_names(elf)? {
            if name == b".BTF" || name == b".BTF.ext" {
                elf[header..header + 4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        Ok(())
    }
}

/// Loads `object` with `loader`; where the kernel refuses the object's BTF
/// and aya therefore refuses the object (one with BTF tracepoints), loads
/// it again without its BTF, and says so in the log. Programs that need
/// BTF then fail to load on their own, and their fallbacks run.
pub fn load(loader: &mut aya::EbpfLoader, mut object: Patched) -> Result<aya::Ebpf> {
    // aya asks for log level DEBUG | STATS (5). STATS arrived in 5.2;
    // before, any level above 1 logs every instruction, the log overflows,
    // and a refusal comes back with an empty log: ask for DEBUG alone.
    if crate::host::sys::kernel_version().is_ok_and(|v| v < (5, 2)) {
        loader.verifier_log_level(aya::VerifierLogLevel::DEBUG);
    }
    match loader.load(object.bytes()) {
        Err(aya::EbpfError::BtfError(e)) => {
            log::info!("the kernel refuses the object's BTF ({e}): loading it without");
            object.strip_btf()?;
            Ok(loader.load(object.bytes())?)
        }
        r => Ok(r?),
    }
}

/// The constants `(id, value)` of a `repr(C)` record of `u32` fields
/// (GsoLayout, DropLayout): word `i` is constant `base + i`.
pub fn record<T: aya::Pod>(base: u32, value: &T) -> Vec<(u32, u64)> {
    let size = std::mem::size_of::<T>();
    assert_eq!(size, LT_RECORD_FIELDS as usize * 4, "a record of eight u32");
    // SAFETY: T is Pod (plain integers, no padding): its bytes are initialized.
    let bytes = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size) };
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .zip(base..)
        .map(|(w, id)| (id, u32::from_ne_bytes(*w) as u64))
        .collect()
}

const SHF_EXECINSTR: u64 = 4;
/// `ld_imm64` (BPF_LD | BPF_IMM | BPF_DW): two instruction slots.
const BPF_LD_IMM64: u8 = 0x18;

/// `object` (an eBPF ELF) with every placeholder of a load-time constant
/// (guard_common::loadtime) in its code replaced by the value `constants`
/// gives it. A placeholder without a value is an error (the two sides
/// disagree on the ids); a value no placeholder takes is not (LLVM drops
/// the reads of fields a program does not use, `_pad` say).
pub fn with_constants(object: &[u8], constants: &[(u32, u64)]) -> Result<Patched> {
    let mut p = Patched(vec![0u64; object.len().div_ceil(8)]);
    let buf = &mut p.bytes_mut()[..object.len()];
    buf.copy_from_slice(object);
    for (at, id) in placeholders(buf)? {
        let Some(&(_, v)) = constants.iter().find(|(c, _)| *c == id) else {
            bail!("the object needs load-time constant {id}, which the loader does not set");
        };
        buf[at + 4..at + 8].copy_from_slice(&(v as u32).to_le_bytes());
        buf[at + 12..at + 16].copy_from_slice(&((v >> 32) as u32).to_le_bytes());
    }
    Ok(p)
}

/// Every placeholder of a load-time constant in the object's code: the
/// offset of its `ld_imm64` in the object, and the constant's id.
fn placeholders(elf: &[u8]) -> Result<Vec<(usize, u32)>> {
    let mut found = Vec::new();
    for (start, len) in code_sections(elf)? {
        let mut at = start;
        while at + 16 <= start + len {
            let insn = &elf[at..at + 16];
            if insn[0] != BPF_LD_IMM64 {
                at += 8;
                continue;
            }
            let lo = u32::from_le_bytes(insn[4..8].try_into().unwrap());
            let hi = u32::from_le_bytes(insn[12..16].try_into().unwrap());
            // src_reg 0: a plain constant (not a map or BTF reference).
            if insn[1] >> 4 == 0 && hi as u64 == LOADTIME_MAGIC {
                found.push((at, lo));
            }
            at += 16;
        }
    }
    Ok(found)
}

/// The section headers of a little-endian ELF64: (header offset, flags,
/// data offset, data size) each.
fn section_headers(elf: &[u8]) -> Result<Vec<(usize, u64, usize, usize)>> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        bail!("not a little-endian ELF64 object");
    }
    let (Some(shoff), Some(shentsize), Some(shnum)) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c))
    else {
        bail!("a truncated ELF header");
    };
    let mut found = Vec::new();
    for i in 0..shnum as usize {
        let sh = shoff as usize + i * shentsize as usize;
        let (Some(flags), Some(offset), Some(size)) =
            (u64_at(sh + 8), u64_at(sh + 24), u64_at(sh + 32))
        else {
            bail!("a truncated section header table");
        };
        found.push((sh, flags, offset as usize, size as usize));
    }
    Ok(found)
}

/// (offset, size) of every executable section.
fn code_sections(elf: &[u8]) -> Result<Vec<(usize, usize)>> {
    let mut found = Vec::new();
    for (i, (_, flags, offset, size)) in section_headers(elf)?.into_iter().enumerate() {
        if flags & SHF_EXECINSTR != 0 {
            if offset.checked_add(size).is_none_or(|end| end > elf.len()) {
                bail!("section {i} lies outside the object");
            }
            found.push((offset, size));
        }
    }
    Ok(found)
}

/// (header offset, name) of every section, its name read from the section
/// name table (e_shstrndx).
fn section_names(elf: &[u8]) -> Result<Vec<(usize, Vec<u8>)>> {
    let headers = section_headers(elf)?;
    let shstrndx = elf
        .get(0x3e..0x40)
        .map_or(usize::MAX, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let Some(&(_, _, table, table_size)) = headers.get(shstrndx) else {
        bail!("no section name table");
    };
    let Some(names) = elf.get(table..table.saturating_add(table_size)) else {
        bail!("the section name table lies outside the object");
    };
    Ok(headers
        .iter()
        .map(|&(sh, _, _, _)| {
            let at = elf.get(sh..sh + 4).map_or(usize::MAX, |b| {
                u32::from_le_bytes(b.try_into().unwrap()) as usize
            });
            let name = names.get(at..).unwrap_or_default();
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            (sh, name[..end].to_vec())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use guard_common::{GsoLayout, LT_GSO_LAYOUT, LT_LAB_CORRUPT, placeholder};

    /// The placeholders of `object`'s code: (id, how many).
    fn ids(object: &[u8]) -> Vec<(u32, usize)> {
        let mut found: Vec<(u32, usize)> = Vec::new();
        for (_, id) in placeholders(object).unwrap() {
            match found.iter_mut().find(|(i, _)| *i == id) {
                Some(f) => f.1 += 1,
                None => found.push((id, 1)),
            }
        }
        found
    }

    #[test]
    fn the_lab_object_takes_its_constant_and_keeps_no_placeholder() {
        assert_eq!(ids(LAB), [(LT_LAB_CORRUPT, 1)]);
        let p = with_constants(LAB, &[(LT_LAB_CORRUPT, 0x1_0000_0007)]).unwrap();
        assert!(ids(p.bytes()).is_empty());
        // Only the immediate changed: the rest of the object is the same.
        let diff = LAB.iter().zip(p.bytes()).filter(|(a, b)| a != b).count();
        assert!((1..=8).contains(&diff), "{diff} bytes changed");
        let code = p.bytes();
        let want_lo = 7u32.to_le_bytes();
        assert!(code.windows(4).any(|w| w == want_lo));
    }

    #[test]
    fn every_placeholder_must_have_a_value() {
        let e = with_constants(LAB, &[]).err().unwrap().to_string();
        assert!(e.contains(&LT_LAB_CORRUPT.to_string()), "{e}");
        assert!(with_constants(LAB, &[(LT_LAB_CORRUPT, 1), (999, 1)]).is_ok());
        assert!(with_constants(b"not an ELF", &[]).is_err());
    }

    #[test]
    fn the_guard_object_has_every_guard_constant() {
        let ids: Vec<u32> = ids(GUARD).iter().map(|(id, _)| *id).collect();
        for id in [1, 2, 3] {
            assert!(ids.contains(&id), "{id} missing: {ids:?}");
        }
        // The typed GSO program reads the whole layout but _pad.
        for id in LT_GSO_LAYOUT..LT_GSO_LAYOUT + 7 {
            assert!(ids.contains(&id), "{id} missing: {ids:?}");
        }
    }

    #[test]
    fn strip_btf_hides_exactly_the_btf_sections() {
        let names = |o: &[u8]| -> Vec<Vec<u8>> {
            section_names(o)
                .unwrap()
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        let mut p = with_constants(LAB, &[(LT_LAB_CORRUPT, 0)]).unwrap();
        let before = names(p.bytes());
        assert!(before.iter().any(|n| n == b".BTF") && before.iter().any(|n| n == b".BTF.ext"));
        p.strip_btf().unwrap();
        let after = names(p.bytes());
        assert_eq!(after.len(), before.len());
        for (a, b) in before.iter().zip(&after) {
            if a == b".BTF" || a == b".BTF.ext" {
                assert!(b.is_empty());
            } else {
                assert_eq!(a, b);
            }
        }
        // aya still parses it, with its program and map, without BTF.
        let obj = aya_obj::Object::parse(p.bytes()).unwrap();
        assert!(obj.btf.is_none());
        assert!(!obj.programs.is_empty() && !obj.maps.is_empty());
        assert!(aya_obj::Object::parse(LAB).unwrap().btf.is_some());
    }

    /// The symbols that code relocations of `elf` name (calls and map
    /// references), from its SHT_REL sections and symbol table.
    fn called_symbols(elf: &[u8]) -> Vec<String> {
        let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
        let headers = section_headers(elf).unwrap();
        let kind = |sh: usize| u32_at(sh + 4);
        let (symtab, _, syms, _) = *headers.iter().find(|h| kind(h.0) == 2).unwrap();
        let strtab = headers[u32_at(symtab + 40) as usize].2;
        let mut names = Vec::new();
        for &(sh, _, off, size) in headers.iter().filter(|h| kind(h.0) == 9) {
            let target = headers[u32_at(sh + 44) as usize];
            if target.1 & SHF_EXECINSTR == 0 {
                continue;
            }
            for r in (off..off + size).step_by(16) {
                let sym = syms + (u64_at(r + 8) >> 32) * 24;
                let name = &elf[strtab + u32_at(sym) as usize..];
                let end = name.iter().position(|&b| b == 0).unwrap();
                names.push(String::from_utf8_lossy(&name[..end]).into_owned());
            }
        }
        names
    }

    /// LLVM lowers zeroing and copies of byte runs to calls of these, which
    /// are loops: no verifier before 5.3 takes them (guard_ebpf::mem).
    #[test]
    fn no_object_calls_a_mem_builtin() {
        for (name, object, map) in [
            ("guard", GUARD, "MSS_COUNTERS"),
            ("drops", DROPS, "DROPS"),
            ("lab", LAB, "LAB_SNAT_COUNTERS"),
        ] {
            let calls = called_symbols(object);
            // The relocations are read: each object's code names its map.
            assert!(calls.iter().any(|c| c == map), "{name}: {calls:?}");
            for builtin in ["memset", "memcpy", "memmove", "memcmp", "bcmp"] {
                assert!(
                    !calls.iter().any(|c| c == builtin),
                    "{name} calls {builtin}"
                );
            }
        }
    }

    /// Kernels before 5.2 take at most 4,096 instructions per program
    /// (BPF_MAXINSNS; E2BIG with an empty verifier log): every program
    /// that runs there must fit, with its loops unrolled.
    #[test]
    fn programs_for_kernels_before_5_2_fit_in_4096_instructions() {
        use guard_common::{
            PROG_DROP_MONITOR, PROG_LAB_DOUBLE_SNAT, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
        };
        for (object, name) in [
            (GUARD, PROG_XDP),
            (GUARD, PROG_TC_INGRESS),
            (GUARD, PROG_TC_EGRESS),
            (DROPS, PROG_DROP_MONITOR),
            (LAB, PROG_LAB_DOUBLE_SNAT),
        ] {
            let obj = aya_obj::Object::parse(object).unwrap();
            let f = obj.functions.values().find(|f| f.name == name).expect(name);
            let n = f.instructions.len();
            println!("{name}: {n} instructions");
            assert!(n <= 4096, "{name}: {n} instructions");
        }
    }

    #[test]
    fn a_record_is_its_words_in_order() {
        let l = GsoLayout {
            skb_head: 1,
            skb_end: 2,
            shinfo_gso_type: 3,
            tcpv4: 4,
            tcpv6: 5,
            udp: 6,
            tunnel: 7,
            _pad: 8,
        };
        let r = record(LT_GSO_LAYOUT, &l);
        assert_eq!(r.len(), 8);
        for (i, (id, v)) in r.iter().enumerate() {
            assert_eq!((*id, *v), (LT_GSO_LAYOUT + i as u32, i as u64 + 1));
        }
        assert_eq!(placeholder(5), 0x7067_6c74_0000_0005);
    }
}
