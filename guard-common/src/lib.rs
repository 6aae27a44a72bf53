//! The contract between the eBPF programs and the `pktguard` loader.
//!
//! Everything that crosses the kernel/user boundary is defined here once:
//! attach points (`hook.rs`), counter indexes (`counters.rs`), one file per
//! feature for its configuration and records, and (`names.rs`) the names of
//! maps, load-time constants, programs and pins.
//! Both sides index counters through these enums, so they cannot drift
//! apart. Every item is re-exported at the root.
#![no_std]

/// A fieldless enum with explicit values and a name per variant, with its
/// `COUNT`, `ALL` (in value order) and `name()`; `indexed by Hook` adds
/// `index(hook)`, the variant's slot in a counter map holding one block of
/// `COUNT` counters per hook.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $repr:ident $(, indexed by $hook:ident)? {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            pub const COUNT: usize = [$($value),*].len();
            pub const ALL: [$name; Self::COUNT] = [$($name::$variant),*];

            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            $(
                /// Index of this variant's counter in the counter map for `hook`.
                pub const fn index(self, hook: $hook) -> u32 {
                    hook as u32 * Self::COUNT as u32 + self as u32
                }
            )?
        }
    };
}

/// The size assertion of a record both sides read (its layout is the
/// contract: pinned maps outlive a binary) and, for the loader, its
/// `aya::Pod` impl.
macro_rules! pod {
    ($t:ty, $size:literal) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);

        #[cfg(feature = "user")]
        // SAFETY: repr(C), only integer fields, no implicit padding (size asserted above).
        unsafe impl aya::Pod for $t {}
    };
}

pub mod counters;
pub mod drops;
pub mod event;
pub mod gso;
pub mod hook;
pub mod loadtime;
pub mod mss;
pub mod names;
pub mod repair;

pub use counters::*;
pub use drops::*;
pub use event::*;
pub use gso::*;
pub use hook::*;
pub use loadtime::*;
pub use mss::*;
pub use names::*;
pub use repair::*;
