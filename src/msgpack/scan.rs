//! Finding where a value ends without reading its content: [`skip_value`] over a complete
//! buffer, [`ValueScanner`] over a stream that grows between calls.
//!
//! Both walk headers iteratively (no recursion, so deep nesting cannot overflow the stack) and
//! jump over str/bin/ext bodies.

use super::marker::{head, HeadError};
use super::MsgpackError;

/// Skip one complete msgpack value starting at `pos`; returns the position after it.
///
/// Rejects a value that cannot fit in `buf` as soon as its headers say so (e.g. a map that
/// claims 2^32 pairs in a small buffer), before walking its children.
pub fn skip_value(buf: &[u8], pos: usize) -> Result<usize, MsgpackError> {
    skip_value_counting(buf, pos).map(|(end, _)| end)
}

/// [`skip_value`], also counting the non-empty maps and arrays it walked: no value inside is
/// nested deeper than that count, so callers can bound nesting depth without a second pass.
pub fn skip_value_counting(buf: &[u8], mut pos: usize) -> Result<(usize, u64), MsgpackError> {
    let mut containers: u64 = 0;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let rest = buf.get(pos..).filter(|r| !r.is_empty());
        let h = match head(rest.ok_or(MsgpackError::Truncated(pos))?) {
            Ok(h) => h,
            Err(HeadError::Incomplete) => return Err(MsgpackError::Truncated(pos + 1)),
            Err(HeadError::BadMarker(marker)) => {
                return Err(MsgpackError::BadMarker {
                    marker,
                    offset: pos,
                })
            }
        };
        let next = (pos as u64)
            .checked_add(h.header + h.body)
            .ok_or(MsgpackError::Truncated(pos))?;
        if next > buf.len() as u64 {
            return Err(MsgpackError::Truncated(pos));
        }
        pos = next as usize;
        pending += h.children;
        containers += u64::from(h.children > 0);
        // Every pending value needs at least one byte: reject absurd counts early.
        if pending > (buf.len() - pos) as u64 {
            return Err(MsgpackError::Truncated(pos));
        }
    }
    Ok((pos, containers))
}

/// Why [`ValueScanner::scan`] cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// The value is, or is declared to be, at least this many bytes: over the limit.
    TooLarge(u64),
    BadMarker {
        marker: u8,
        offset: u64,
    },
}

/// Finds the end of one msgpack value in a buffer that grows between calls, resuming where it
/// stopped: each byte of headers is read once, bin/str bodies are jumped over, never read.
#[derive(Debug, Clone)]
pub struct ValueScanner {
    pos: u64,
    pending: u64,
}

impl Default for ValueScanner {
    fn default() -> Self {
        ValueScanner { pos: 0, pending: 1 }
    }
}

impl ValueScanner {
    pub fn reset(&mut self) {
        *self = ValueScanner::default();
    }

    /// Scan `buf` (the same stream as earlier calls, possibly longer). `Ok(Some(end))` when the
    /// value is complete, `Ok(None)` when more bytes are needed. Errors as soon as the value is
    /// known to exceed `limit` bytes.
    pub fn scan(&mut self, buf: &[u8], limit: u64) -> Result<Option<usize>, ScanError> {
        let len = buf.len() as u64;
        while self.pending > 0 {
            if self.pos >= len {
                return Ok(None);
            }
            let h = match head(&buf[self.pos as usize..]) {
                Ok(h) => h,
                Err(HeadError::Incomplete) => return Ok(None),
                Err(HeadError::BadMarker(marker)) => {
                    return Err(ScanError::BadMarker {
                        marker,
                        offset: self.pos,
                    })
                }
            };
            self.pos += h.header + h.body;
            self.pending = self.pending - 1 + h.children;
            // Every pending value needs at least one more byte.
            let min_size = self.pos.saturating_add(self.pending);
            if min_size > limit {
                return Err(ScanError::TooLarge(min_size));
            }
        }
        if self.pos <= len {
            Ok(Some(self.pos as usize))
        } else {
            Ok(None)
        }
    }
}
