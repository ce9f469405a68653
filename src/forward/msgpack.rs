//! Minimal msgpack reading for the Forward codec: a cursor over a complete value and a
//! resumable scanner that finds where a frame ends in a growing stream.
//!
//! Owns only the byte-level reading of msgpack headers. It must not decode records (those stay
//! bytes, see [`crate::event`]) and never allocates from a length read off the wire.

use crate::event::{skip_value, EntryError};

/// How a msgpack raw value was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawKind {
    Str,
    Bin,
}

/// Reads msgpack values from a complete buffer, header by header.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn peek(&self) -> Result<u8, EntryError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(EntryError::Truncated(self.pos))
    }

    fn be(&self, at: usize, n: usize) -> Result<u64, EntryError> {
        let end = at.checked_add(n).ok_or(EntryError::Truncated(at))?;
        let s = self.buf.get(at..end).ok_or(EntryError::Truncated(at))?;
        Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
    }

    /// If the next value is an array, consume its header and return its length.
    pub(crate) fn array_len(&mut self) -> Result<Option<u32>, EntryError> {
        let m = self.peek()?;
        let (n, header) = match m {
            0x90..=0x9f => ((m & 0x0f) as u64, 1),
            0xdc => (self.be(self.pos + 1, 2)?, 3),
            0xdd => (self.be(self.pos + 1, 4)?, 5),
            _ => return Ok(None),
        };
        self.pos += header;
        Ok(Some(n as u32))
    }

    /// If the next value is a map, consume its header and return its number of pairs.
    pub(crate) fn map_len(&mut self) -> Result<Option<u32>, EntryError> {
        let m = self.peek()?;
        let (n, header) = match m {
            0x80..=0x8f => ((m & 0x0f) as u64, 1),
            0xde => (self.be(self.pos + 1, 2)?, 3),
            0xdf => (self.be(self.pos + 1, 4)?, 5),
            _ => return Ok(None),
        };
        self.pos += header;
        Ok(Some(n as u32))
    }

    /// If the next value is a str or bin, consume it and return its content range and kind.
    pub(crate) fn raw(&mut self) -> Result<Option<(std::ops::Range<usize>, RawKind)>, EntryError> {
        let m = self.peek()?;
        let (len, header, kind) = match m {
            0xa0..=0xbf => ((m & 0x1f) as u64, 1, RawKind::Str),
            0xd9 => (self.be(self.pos + 1, 1)?, 2, RawKind::Str),
            0xda => (self.be(self.pos + 1, 2)?, 3, RawKind::Str),
            0xdb => (self.be(self.pos + 1, 4)?, 5, RawKind::Str),
            0xc4 => (self.be(self.pos + 1, 1)?, 2, RawKind::Bin),
            0xc5 => (self.be(self.pos + 1, 2)?, 3, RawKind::Bin),
            0xc6 => (self.be(self.pos + 1, 4)?, 5, RawKind::Bin),
            _ => return Ok(None),
        };
        let start = self.pos + header;
        let end = start
            .checked_add(len as usize)
            .filter(|e| *e <= self.buf.len())
            .ok_or(EntryError::Truncated(self.pos))?;
        self.pos = end;
        Ok(Some((start..end, kind)))
    }

    /// Like [`Cursor::raw`], returning the content bytes.
    pub(crate) fn raw_bytes(&mut self) -> Result<Option<&'a [u8]>, EntryError> {
        let buf = self.buf;
        Ok(self.raw()?.map(|(r, _)| &buf[r]))
    }

    /// If the next value is a bool, consume it.
    pub(crate) fn bool(&mut self) -> Result<Option<bool>, EntryError> {
        let v = match self.peek()? {
            0xc2 => false,
            0xc3 => true,
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(v))
    }

    /// If the next value is a non-negative integer, consume it.
    pub(crate) fn uint(&mut self) -> Result<Option<u64>, EntryError> {
        let m = self.peek()?;
        let (v, header) = match m {
            0x00..=0x7f => (m as u64, 1),
            0xcc => (self.be(self.pos + 1, 1)?, 2),
            0xcd => (self.be(self.pos + 1, 2)?, 3),
            0xce => (self.be(self.pos + 1, 4)?, 5),
            0xcf => (self.be(self.pos + 1, 8)?, 9),
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let raw = self.be(self.pos + 1, n)?;
                let shift = 64 - 8 * n as u32;
                let v = ((raw << shift) as i64) >> shift;
                if v < 0 {
                    return Ok(None);
                }
                (v as u64, 1 + n)
            }
            _ => return Ok(None),
        };
        self.pos += header;
        Ok(Some(v))
    }

    /// Consume a nil if it is next.
    pub(crate) fn nil(&mut self) -> Result<bool, EntryError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Skip one complete value; returns its range.
    pub(crate) fn skip(&mut self) -> Result<std::ops::Range<usize>, EntryError> {
        let start = self.pos;
        self.pos = skip_value(self.buf, start)?;
        Ok(start..self.pos)
    }
}

/// Why [`ValueScanner::scan`] cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanError {
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
pub(crate) struct ValueScanner {
    pos: u64,
    pending: u64,
}

impl Default for ValueScanner {
    fn default() -> Self {
        ValueScanner { pos: 0, pending: 1 }
    }
}

impl ValueScanner {
    pub(crate) fn reset(&mut self) {
        *self = ValueScanner::default();
    }

    /// Scan `buf` (the same stream as earlier calls, possibly longer). `Ok(Some(end))` when the
    /// value is complete, `Ok(None)` when more bytes are needed. Errors as soon as the value is
    /// known to exceed `limit` bytes.
    pub(crate) fn scan(&mut self, buf: &[u8], limit: u64) -> Result<Option<usize>, ScanError> {
        let len = buf.len() as u64;
        while self.pending > 0 {
            if self.pos >= len {
                return Ok(None);
            }
            let p = self.pos as usize;
            let m = buf[p];
            let be = |off: usize, n: usize| -> Option<u64> {
                let s = buf.get(p + off..p + off + n)?;
                Some(s.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
            };
            // (header length, body length, child values), or None when the header is incomplete.
            let parsed: Option<(u64, u64, u64)> = match m {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some((1, 0, 0)),
                0x80..=0x8f => Some((1, 0, 2 * (m & 0x0f) as u64)),
                0x90..=0x9f => Some((1, 0, (m & 0x0f) as u64)),
                0xa0..=0xbf => Some((1, (m & 0x1f) as u64, 0)),
                0xc4 | 0xd9 => be(1, 1).map(|n| (2, n, 0)),
                0xc5 | 0xda => be(1, 2).map(|n| (3, n, 0)),
                0xc6 | 0xdb => be(1, 4).map(|n| (5, n, 0)),
                0xc7 => be(1, 1).map(|n| (3, n, 0)),
                0xc8 => be(1, 2).map(|n| (4, n, 0)),
                0xc9 => be(1, 4).map(|n| (6, n, 0)),
                0xca => Some((5, 0, 0)),
                0xcb => Some((9, 0, 0)),
                0xcc | 0xd0 => Some((2, 0, 0)),
                0xcd | 0xd1 => Some((3, 0, 0)),
                0xce | 0xd2 => Some((5, 0, 0)),
                0xcf | 0xd3 => Some((9, 0, 0)),
                0xd4 => Some((3, 0, 0)),
                0xd5 => Some((4, 0, 0)),
                0xd6 => Some((6, 0, 0)),
                0xd7 => Some((10, 0, 0)),
                0xd8 => Some((18, 0, 0)),
                0xdc => be(1, 2).map(|n| (3, 0, n)),
                0xdd => be(1, 4).map(|n| (5, 0, n)),
                0xde => be(1, 2).map(|n| (3, 0, 2 * n)),
                0xdf => be(1, 4).map(|n| (5, 0, 2 * n)),
                0xc1 => {
                    return Err(ScanError::BadMarker {
                        marker: m,
                        offset: self.pos,
                    })
                }
            };
            let Some((header, body, children)) = parsed else {
                return Ok(None);
            };
            self.pos += header + body;
            self.pending = self.pending - 1 + children;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_resumes_and_jumps_bodies() {
        let mut v = vec![0x93, 0xa1, b't', 0xdb, 0, 0, 0, 5, 1, 2, 3, 4, 5, 0x80];
        let mut s = ValueScanner::default();
        for cut in 0..v.len() {
            assert_eq!(s.scan(&v[..cut], 1000).unwrap(), None, "cut {cut}");
        }
        assert_eq!(s.scan(&v, 1000).unwrap(), Some(v.len()));
        v.push(0xff);
        s.reset();
        assert_eq!(s.scan(&v, 1000).unwrap(), Some(v.len() - 1));
    }

    #[test]
    fn scanner_rejects_declared_oversize_from_header() {
        let v = [0x93, 0xa1, b't', 0xdb, 0x10, 0, 0, 0];
        let mut s = ValueScanner::default();
        assert!(matches!(s.scan(&v, 1 << 20), Err(ScanError::TooLarge(_))));
        let v = [0xdd, 0xff, 0xff, 0xff, 0xff];
        s.reset();
        assert!(matches!(s.scan(&v, 1 << 20), Err(ScanError::TooLarge(_))));
    }

    #[test]
    fn cursor_reads_headers() {
        let v = [0x92, 0xd0, 0xff, 0xcd, 0x01, 0x00, 0xc4, 0x02, 9, 9, 0xc3];
        let mut c = Cursor::new(&v);
        assert_eq!(c.array_len().unwrap(), Some(2));
        assert_eq!(c.uint().unwrap(), None);
        c.skip().unwrap();
        assert_eq!(c.uint().unwrap(), Some(256));
        let (r, k) = c.raw().unwrap().unwrap();
        assert_eq!((r, k), (8..10, RawKind::Bin));
        assert_eq!(c.bool().unwrap(), Some(true));
        assert!(c.at_end());
    }
}
