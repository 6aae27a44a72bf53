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

/// A record of `u32` fields read from consecutive load-time constants
/// from `$base`: field `$field` is word `$i` of the record as the loader
/// writes it (its `repr(C)` order).
#[macro_export]
macro_rules! loadtime_record {
    ($t:ident, $base:expr, { $($field:ident = $i:literal),* $(,)? }) => {
        $t { $($field: $crate::loadtime::get::<{ $base + $i }>() as u32),* }
    };
}
