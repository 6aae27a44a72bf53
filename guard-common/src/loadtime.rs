//! Load-time constants: values the loader writes into the programs'
//! instructions before the kernel sees them (the interface's link kind,
//! the features of this load, kernel structure offsets).
//!
//! Each is a 64-bit immediate load (`ld_imm64`) of a placeholder,
//! [`LOADTIME_MAGIC`] in the high half and the constant's id in the low
//! half, that the loader rewrites to the value. The verifier then sees a
//! plain constant on every kernel, and prunes the branches it decides.
//! Global data (`.rodata` maps, `override_global`) does the same only since
//! Linux 5.2; the incident kernels (4.19) have none, and an object that
//! refers to it does not load there at all.

/// The high 32 bits of every placeholder: "pglt".
pub const LOADTIME_MAGIC: u64 = 0x7067_6c74;

/// The placeholder of constant `id`, as the instruction carries it.
pub const fn placeholder(id: u32) -> u64 {
    LOADTIME_MAGIC << 32 | id as u64
}

// The guard's object.

/// The interface's [`LinkKind`](crate::LinkKind).
pub const LT_LINK_KIND: u32 = 1;
/// The [`FEATURE_MSS`](crate::FEATURE_MSS) and
/// [`FEATURE_CSUM`](crate::FEATURE_CSUM) bits of this load.
pub const LT_FEATURES: u32 = 2;
/// 1 where `__sk_buff.gso_size` exists (Linux 5.7+).
pub const LT_HAS_GSO_SIZE: u32 = 3;
/// The first of [`GsoLayout`](crate::GsoLayout)'s eight `u32` fields, in
/// order (ids 16..24).
pub const LT_GSO_LAYOUT: u32 = 16;

// The drop monitor's object.

/// The first of [`DropLayout`](crate::DropLayout)'s eight `u32` fields, in
/// order (ids 32..40).
pub const LT_DROP_LAYOUT: u32 = 32;

// The lab's object.

/// 1: the lab's double SNAT writes a wrong outer checksum.
pub const LT_LAB_CORRUPT: u32 = 48;

/// How many `u32` fields a layout record has (both have eight).
pub const LT_RECORD_FIELDS: u32 = 8;
