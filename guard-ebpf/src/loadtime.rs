//! Reading a load-time constant (see `guard_common::loadtime`): one 64-bit
//! immediate load of its placeholder, which the loader rewrites to the
//! value before the kernel sees the program.

/// The value of load-time constant `ID`. The asm is opaque to LLVM, so the
/// placeholder survives to the object, one `ld_imm64` at every use.
#[inline(always)]
pub fn get<const ID: u32>() -> u64 {
    let v: u64;
    // SAFETY: an immediate load into a register, nothing else.
    unsafe {
        core::arch::asm!(
            "{0} = {1} ll",
            out(reg) v,
            const guard_common::placeholder(ID),
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    v
}

/// A layout record (GsoLayout, DropLayout: eight `u32` fields, `repr(C)`)
/// read from the eight load-time constants from `$base`, word `i` of the
/// record being constant `$base + i`, as the loader writes them.
#[macro_export]
macro_rules! loadtime_record {
    ($base:expr) => {
        $crate::loadtime::record([
            $crate::loadtime::get::<{ $base }>() as u32,
            $crate::loadtime::get::<{ $base + 1 }>() as u32,
            $crate::loadtime::get::<{ $base + 2 }>() as u32,
            $crate::loadtime::get::<{ $base + 3 }>() as u32,
            $crate::loadtime::get::<{ $base + 4 }>() as u32,
            $crate::loadtime::get::<{ $base + 5 }>() as u32,
            $crate::loadtime::get::<{ $base + 6 }>() as u32,
            $crate::loadtime::get::<{ $base + 7 }>() as u32,
        ])
    };
}

/// Eight words as a layout record `T`.
#[inline(always)]
pub fn record<T: Copy>(words: [u32; 8]) -> T {
    const { assert!(core::mem::size_of::<T>() == 32 && core::mem::align_of::<T>() <= 4) };
    // SAFETY: T is a repr(C) record of eight u32 (sizes asserted here and
    // in guard-common), valid for any bits.
    unsafe { core::mem::transmute_copy(&words) }
}
