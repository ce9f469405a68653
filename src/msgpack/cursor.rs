//! Reading msgpack values from a complete buffer, header by header, without allocating.

use super::scan::skip_value;
use super::{read_be, MsgpackError};
use std::ops::Range;

/// How a msgpack raw value was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    Str,
    Bin,
}

/// Reads msgpack values from a complete buffer. Each `Option`-returning reader consumes the
/// next value only when it has the asked-for type, and returns `None` (consuming nothing)
/// otherwise; errors mean the buffer ends inside the value or holds an invalid marker.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// A cursor over `buf` that starts reading at `pos`.
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next marker byte, not consumed.
    pub fn peek(&self) -> Result<u8, MsgpackError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(MsgpackError::Truncated(self.pos))
    }

    /// `n` big-endian bytes of the header field at `pos + off`.
    fn field(&self, off: usize, n: usize) -> Result<u64, MsgpackError> {
        let at = self.pos + off;
        read_be(self.buf, at, n).ok_or(MsgpackError::Truncated(at))
    }

    /// If the next value is an array, consume its header and return its length.
    pub fn array_len(&mut self) -> Result<Option<u32>, MsgpackError> {
        let m = self.peek()?;
        let (n, header) = match m {
            0x90..=0x9f => ((m & 0x0f) as u64, 1),
            0xdc => (self.field(1, 2)?, 3),
            0xdd => (self.field(1, 4)?, 5),
            _ => return Ok(None),
        };
        self.pos += header;
        Ok(Some(n as u32))
    }

    /// If the next value is a map, consume its header and return its number of pairs.
    pub fn map_len(&mut self) -> Result<Option<u32>, MsgpackError> {
        let m = self.peek()?;
        let (n, header) = match m {
            0x80..=0x8f => ((m & 0x0f) as u64, 1),
            0xde => (self.field(1, 2)?, 3),
            0xdf => (self.field(1, 4)?, 5),
            _ => return Ok(None),
        };
        self.pos += header;
        Ok(Some(n as u32))
    }

    /// If the next value is a str or bin, consume it and return its content range and kind.
    pub fn raw(&mut self) -> Result<Option<(Range<usize>, RawKind)>, MsgpackError> {
        let m = self.peek()?;
        let (len, header, kind) = match m {
            0xa0..=0xbf => ((m & 0x1f) as u64, 1, RawKind::Str),
            0xd9 => (self.field(1, 1)?, 2, RawKind::Str),
            0xda => (self.field(1, 2)?, 3, RawKind::Str),
            0xdb => (self.field(1, 4)?, 5, RawKind::Str),
            0xc4 => (self.field(1, 1)?, 2, RawKind::Bin),
            0xc5 => (self.field(1, 2)?, 3, RawKind::Bin),
            0xc6 => (self.field(1, 4)?, 5, RawKind::Bin),
            _ => return Ok(None),
        };
        let start = self.pos + header;
        let end = start
            .checked_add(len as usize)
            .filter(|e| *e <= self.buf.len())
            .ok_or(MsgpackError::Truncated(self.pos))?;
        self.pos = end;
        Ok(Some((start..end, kind)))
    }

    /// Like [`Cursor::raw`], returning the content bytes.
    pub fn raw_bytes(&mut self) -> Result<Option<&'a [u8]>, MsgpackError> {
        let buf = self.buf;
        Ok(self.raw()?.map(|(r, _)| &buf[r]))
    }

    /// If the next value is a bool, consume it.
    pub fn bool(&mut self) -> Result<Option<bool>, MsgpackError> {
        let v = match self.peek()? {
            0xc2 => false,
            0xc3 => true,
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(v))
    }

    /// If the next value is a non-negative integer (of any int encoding), consume it.
    /// A negative integer is left in place (`None`).
    pub fn uint(&mut self) -> Result<Option<u64>, MsgpackError> {
        let m = self.peek()?;
        let (v, header) = match m {
            0x00..=0x7f => (m as u64, 1),
            0xcc => (self.field(1, 1)?, 2),
            0xcd => (self.field(1, 2)?, 3),
            0xce => (self.field(1, 4)?, 5),
            0xcf => (self.field(1, 8)?, 9),
            0xd0..=0xd3 => {
                let (v, header) = self.signed(m)?;
                if v < 0 {
                    return Ok(None);
                }
                (v as u64, header)
            }
            _ => return Ok(None),
        };
        self.pos += header;
        Ok(Some(v))
    }

    /// If the next value is a negative integer (negative fixint or int 8/16/32/64 below zero),
    /// consume it. Non-negative integers are left in place (`None`): read them with
    /// [`Cursor::uint`].
    pub fn neg_int(&mut self) -> Result<Option<i64>, MsgpackError> {
        let m = self.peek()?;
        let (v, header) = match m {
            0xe0..=0xff => (m as i8 as i64, 1),
            0xd0..=0xd3 => self.signed(m)?,
            _ => return Ok(None),
        };
        if v >= 0 {
            return Ok(None);
        }
        self.pos += header;
        Ok(Some(v))
    }

    /// The value and header size of the int 8/16/32/64 (marker `m`, 0xd0..=0xd3) at the cursor,
    /// not consumed.
    fn signed(&self, m: u8) -> Result<(i64, usize), MsgpackError> {
        let n = 1usize << (m - 0xd0);
        let raw = self.field(1, n)?;
        let shift = 64 - 8 * n as u32;
        Ok((((raw << shift) as i64) >> shift, 1 + n))
    }

    /// If the next value is a float 32 or float 64, consume it.
    pub fn float(&mut self) -> Result<Option<f64>, MsgpackError> {
        let v = match self.peek()? {
            0xca => f32::from_bits(self.field(1, 4)? as u32) as f64,
            0xcb => f64::from_bits(self.field(1, 8)?),
            _ => return Ok(None),
        };
        self.pos += if self.buf[self.pos] == 0xca { 5 } else { 9 };
        Ok(Some(v))
    }

    /// If the next value is an ext, consume its header and return `(type, data length)`; the
    /// data follows (read it with [`Cursor::bytes`]).
    pub fn ext_header(&mut self) -> Result<Option<(i8, u32)>, MsgpackError> {
        let m = self.peek()?;
        let (len, header) = match m {
            0xd4 => (1, 1),
            0xd5 => (2, 1),
            0xd6 => (4, 1),
            0xd7 => (8, 1),
            0xd8 => (16, 1),
            0xc7 => (self.field(1, 1)?, 2),
            0xc8 => (self.field(1, 2)?, 3),
            0xc9 => (self.field(1, 4)?, 5),
            _ => return Ok(None),
        };
        let ty = self.field(header, 1)? as u8 as i8;
        self.pos += header + 1;
        Ok(Some((ty, len as u32)))
    }

    /// The next `n` bytes as they are (e.g. ext data after [`Cursor::ext_header`]).
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(MsgpackError::Truncated(self.pos))?;
        self.pos += n;
        Ok(s)
    }

    /// Consume a nil if it is next.
    pub fn nil(&mut self) -> Result<bool, MsgpackError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Skip one complete value; returns its range.
    pub fn skip(&mut self) -> Result<Range<usize>, MsgpackError> {
        let start = self.pos;
        self.pos = skip_value(self.buf, start)?;
        Ok(start..self.pos)
    }
}
