//! Internet checksum arithmetic (RFC 1071, incremental update per RFC 1624).
//!
//! Values are 16-bit words as numbers, the way they read in network order.

/// Folds a 32-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Folds a 64-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub const fn fold64(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    fold(sum as u32)
}

/// The checksum field after a 16-bit word of the covered data changed from
/// `old` to `new` (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// A word that starts at an odd offset of the covered data straddles two
/// checksum words: pass it byte-swapped (see [`word_at`]).
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u32 + !old as u32 + new as u32)
}

/// How a 16-bit value contributes to the sum when it starts `offset` bytes
/// into the covered data: as it is at even offsets, byte-swapped at odd ones.
#[inline(always)]
pub const fn word_at(value: u16, offset: usize) -> u16 {
    if offset & 1 == 0 {
        value
    } else {
        value.swap_bytes()
    }
}

/// One's-complement sum of `data` as big-endian words, added to `sum`
/// (a trailing odd byte is padded with zero).
pub fn sum_words(data: &[u8], mut sum: u32) -> u32 {
    let (words, rest) = data.as_chunks::<2>();
    for w in words {
        sum = fold(sum + u16::from_be_bytes(*w) as u32) as u32;
    }
    if let [last] = rest {
        sum = fold(sum + ((*last as u32) << 8)) as u32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn checksum(data: &[u8]) -> u16 {
        !fold(sum_words(data, 0))
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum_words(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    proptest! {
        /// Replacing any 16-bit field, at any offset (odd ones included),
        /// incrementally gives exactly the checksum of a full recomputation.
        #[test]
        fn incremental_equals_full(
            mut data in proptest::collection::vec(any::<u8>(), 4..200),
            off_seed in any::<usize>(),
            new in any::<u16>(),
        ) {
            // A non-zero word keeps the sum away from the +0/-0 ambiguity,
            // as the pseudo-header does for TCP.
            data[0] |= 0x80;
            let off = 2 + off_seed % (data.len() - 3);
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[off], data[off + 1]]);
            data[off..off + 2].copy_from_slice(&new.to_be_bytes());
            let after = replace16(before, word_at(old, off), word_at(new, off));
            prop_assert_eq!(after, checksum(&data));
        }
    }
}
