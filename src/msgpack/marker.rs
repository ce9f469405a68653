//! The marker table: from a value's first byte (and its length field, if any) to the size of
//! its header, the bytes of body that follow, and the number of child values (array elements,
//! map keys and values) that follow the body.

use super::read_be;

/// The layout of one msgpack value, as its header tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Marker plus length field plus (for ext) the type byte.
    pub header: u64,
    /// Bytes of payload after the header (str/bin/ext data, the bytes of a number).
    pub body: u64,
    /// Complete values that follow: elements of an array, 2 × pairs of a map.
    pub children: u64,
}

/// Why [`head`] could not tell a value's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// `buf` ends inside the header (its length field is cut).
    Incomplete,
    /// 0xc1, never used by msgpack.
    BadMarker(u8),
}

/// The layout of the value starting at `buf[0]`.
#[inline]
pub fn head(buf: &[u8]) -> Result<Head, HeadError> {
    let m = *buf.first().ok_or(HeadError::Incomplete)?;
    let fixed = |header: u64, body: u64, children: u64| {
        Ok(Head {
            header,
            body,
            children,
        })
    };
    // A length field of `n` bytes right after the marker; `extra` header bytes after it.
    let sized = |n: usize, extra: u64, is_body: bool, per_len: u64| {
        let len = read_be(buf, 1, n).ok_or(HeadError::Incomplete)?;
        let (body, children) = if is_body {
            (len, 0)
        } else {
            (0, per_len * len)
        };
        Ok(Head {
            header: 1 + n as u64 + extra,
            body,
            children,
        })
    };
    match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => fixed(1, 0, 0),
        0x80..=0x8f => fixed(1, 0, 2 * (m & 0x0f) as u64),
        0x90..=0x9f => fixed(1, 0, (m & 0x0f) as u64),
        0xa0..=0xbf => fixed(1, (m & 0x1f) as u64, 0),
        0xc4 | 0xd9 => sized(1, 0, true, 0),
        0xc5 | 0xda => sized(2, 0, true, 0),
        0xc6 | 0xdb => sized(4, 0, true, 0),
        // ext 8/16/32: length, then the type byte.
        0xc7 => sized(1, 1, true, 0),
        0xc8 => sized(2, 1, true, 0),
        0xc9 => sized(4, 1, true, 0),
        0xca => fixed(1, 4, 0),
        0xcb => fixed(1, 8, 0),
        0xcc | 0xd0 => fixed(1, 1, 0),
        0xcd | 0xd1 => fixed(1, 2, 0),
        0xce | 0xd2 => fixed(1, 4, 0),
        0xcf | 0xd3 => fixed(1, 8, 0),
        // fixext 1/2/4/8/16: the type byte, then the data.
        0xd4 => fixed(2, 1, 0),
        0xd5 => fixed(2, 2, 0),
        0xd6 => fixed(2, 4, 0),
        0xd7 => fixed(2, 8, 0),
        0xd8 => fixed(2, 16, 0),
        0xdc => sized(2, 0, false, 1),
        0xdd => sized(4, 0, false, 1),
        0xde => sized(2, 0, false, 2),
        0xdf => sized(4, 0, false, 2),
        0xc1 => Err(HeadError::BadMarker(m)),
    }
}

/// fixmap, map 16, map 32.
#[inline]
pub fn is_map(m: u8) -> bool {
    matches!(m, 0x80..=0x8f | 0xde | 0xdf)
}

/// fixarray, array 16, array 32.
#[inline]
pub fn is_array(m: u8) -> bool {
    matches!(m, 0x90..=0x9f | 0xdc | 0xdd)
}

/// Any str or bin marker.
#[inline]
pub fn is_raw(m: u8) -> bool {
    matches!(m, 0xa0..=0xbf | 0xd9 | 0xda | 0xdb | 0xc4 | 0xc5 | 0xc6)
}
