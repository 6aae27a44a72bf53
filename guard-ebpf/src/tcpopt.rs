//! The TCP option walk: where the MSS option of a SYN sits.

use crate::parse::{Cursor, TCP_MIN_HLEN};

/// At most 40 bytes of options (doff 15).
pub const MAX_OPTION_BYTES: usize = 40;
/// Options walked (each NOP counts) before giving up. Real SYNs carry at
/// most about eight (Linux: MSS, SACK-permitted, timestamps, NOP, window
/// scale); the verifier's work grows about twofold with every four more
/// steps (16: under 65 k instructions, 40: over 500 k), so a SYN whose list
/// is longer, 40 NOPs say, is passed untouched and counted as skipped.
pub const MAX_OPTION_STEPS: usize = 16;

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MSS: u8 = 2;
const TCPOLEN_MSS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssOption {
    /// The MSS value sits at this offset of the frame.
    At(usize),
    /// The options end (or EOL comes) without an MSS option.
    Absent,
    /// An option length of 0 or 1, past the header, or a wrong MSS length.
    Malformed,
    /// More than [`MAX_OPTION_STEPS`] options before the MSS or the end.
    TooLong,
}

/// Walks the options of the TCP header at `tcp` (`tcp_hlen` validated by the
/// parser) to the first MSS option.
#[inline(always)]
pub fn find_mss(c: &Cursor, tcp: usize, tcp_hlen: usize) -> MssOption {
    let opt_len = tcp_hlen - TCP_MIN_HLEN;
    let opts = tcp + TCP_MIN_HLEN;
    let mut i = 0usize;
    for _ in 0..MAX_OPTION_STEPS {
        // The constant bound keeps `i` provably small for the verifier.
        if i >= opt_len || i >= MAX_OPTION_BYTES {
            return MssOption::Absent;
        }
        // Kind and length are read as one word. An option that starts on
        // the header's last byte has no length byte: read the word before.
        if i + 1 >= opt_len {
            return match c.be16_at(opts + i - 1).map(|w| w as u8) {
                Some(TCPOPT_EOL | TCPOPT_NOP) => MssOption::Absent,
                _ => MssOption::Malformed,
            };
        }
        let Some(word) = c.be16_at(opts + i) else {
            return MssOption::Malformed;
        };
        let (kind, len) = ((word >> 8) as u8, (word & 0xff) as usize);
        match kind {
            TCPOPT_EOL => return MssOption::Absent,
            TCPOPT_NOP => i += 1,
            _ => {
                if len < 2 || i + len > opt_len {
                    return MssOption::Malformed;
                }
                if kind == TCPOPT_MSS {
                    if len != TCPOLEN_MSS {
                        return MssOption::Malformed;
                    }
                    return MssOption::At(opts + i + 2);
                }
                i += len;
            }
        }
    }
    if i >= opt_len {
        MssOption::Absent
    } else {
        MssOption::TooLong
    }
}
