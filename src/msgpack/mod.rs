//! msgpack primitives: the one place that knows how msgpack bytes are laid out.
//!
//! Owns the marker table ([`head`]: how long a value's header is, how many body bytes and child
//! values follow), reading values from a complete buffer ([`Cursor`], [`skip_value`]), finding
//! where a value ends in a stream that grows between calls ([`ValueScanner`]), and writing
//! headers and small values in their standard encodings ([`write_str`] and friends).
//!
//! It must not know what the values mean (entries, Forward frames, handshakes live in
//! [`crate::event`] and [`crate::forward`]), must not decode records into trees, and never
//! allocates from a length read off the wire.

mod cursor;
mod marker;
mod scan;
#[cfg(test)]
mod tests;
mod write;

pub use cursor::{Cursor, RawKind};
pub use marker::{head, is_array, is_map, is_raw};
pub use scan::{skip_value, skip_value_counting, ScanError, ValueScanner};
pub use write::{
    write_array_header, write_bin, write_bool, write_map_header, write_str, write_str32_header,
    write_str_bytes, write_u32,
};

/// Why a complete buffer does not hold the msgpack that was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// The buffer ends inside the value whose header (or length field) is at this byte.
    #[error("truncated msgpack at byte {0}")]
    Truncated(usize),
    /// 0xc1, the one byte msgpack never uses.
    #[error("invalid msgpack marker 0x{marker:02x} at byte {offset}")]
    BadMarker { marker: u8, offset: usize },
}

/// Read `n` (1..=8) big-endian bytes at `at`; `None` when the buffer is shorter.
#[inline]
pub fn read_be(buf: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = buf.get(at..at.checked_add(n)?)?;
    Some(s.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}
