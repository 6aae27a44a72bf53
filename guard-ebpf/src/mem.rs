//! Zeroing without `memset`. LLVM's BPF backend turns every zeroing of a
//! run of bytes (a struct literal with zero fields, `Default`, a copy of a
//! zeroed temporary) into a call to the `memset` of compiler_builtins,
//! which is a loop: verifiers before 5.3 refuse any back-edge, so not one
//! program of the object would load on 4.19.

/// `slot`, zeroed in place with 8-byte volatile stores (which LLVM neither
/// merges nor turns into `memset`), as a `T`.
///
/// # Safety
/// Every bit pattern of zeros must be a valid `T` (plain integers).
#[inline(always)]
pub unsafe fn zeroed_in<T>(slot: &mut core::mem::MaybeUninit<T>) -> &mut T {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8) };
    let words = slot.as_mut_ptr().cast::<u64>();
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: inside the slot, 8-aligned (asserted above).
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: every byte is written; zeros are a valid T (the caller).
    unsafe { slot.assume_init_mut() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroes_every_byte() {
        let mut slot = core::mem::MaybeUninit::new([0xa5u64; 3]);
        // SAFETY: zeros are a valid [u64; 3].
        let z = unsafe { super::zeroed_in(&mut slot) };
        assert_eq!(*z, [0; 3]);
    }
}
