//! Writing msgpack headers and small values. Each writer picks the smallest encoding unless its
//! name says a fixed width (senders that patch lengths later rely on fixed widths).

use bytes::BufMut;

/// A map header for `pairs` pairs (smallest encoding).
pub fn write_map_header(out: &mut impl BufMut, pairs: u32) {
    if pairs < 16 {
        out.put_u8(0x80 | pairs as u8);
    } else if pairs <= u16::MAX as u32 {
        out.put_u8(0xde);
        out.put_u16(pairs as u16);
    } else {
        out.put_u8(0xdf);
        out.put_u32(pairs);
    }
}

/// An array header for `len` elements (smallest encoding).
pub fn write_array_header(out: &mut impl BufMut, len: u32) {
    if len < 16 {
        out.put_u8(0x90 | len as u8);
    } else if len <= u16::MAX as u32 {
        out.put_u8(0xdc);
        out.put_u16(len as u16);
    } else {
        out.put_u8(0xdd);
        out.put_u32(len);
    }
}

/// A str (smallest encoding).
pub fn write_str(out: &mut impl BufMut, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// Bytes as a str (smallest encoding); the bytes are not checked for UTF-8.
pub fn write_str_bytes(out: &mut impl BufMut, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.put_u8(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.put_u8(0xd9);
        out.put_u8(n as u8);
    } else if n <= u16::MAX as usize {
        out.put_u8(0xda);
        out.put_u16(n as u16);
    } else {
        out.put_u8(0xdb);
        out.put_u32(n as u32);
    }
    out.put_slice(s);
}

/// The header of a str 32 of `len` bytes (always 5 bytes); the caller writes the content.
pub fn write_str32_header(out: &mut impl BufMut, len: u32) {
    out.put_u8(0xdb);
    out.put_u32(len);
}

/// A bin (smallest encoding).
pub fn write_bin(out: &mut impl BufMut, b: &[u8]) {
    let n = b.len();
    if n <= u8::MAX as usize {
        out.put_u8(0xc4);
        out.put_u8(n as u8);
    } else if n <= u16::MAX as usize {
        out.put_u8(0xc5);
        out.put_u16(n as u16);
    } else {
        out.put_u8(0xc6);
        out.put_u32(n as u32);
    }
    out.put_slice(b);
}

/// A bool.
pub fn write_bool(out: &mut impl BufMut, v: bool) {
    out.put_u8(if v { 0xc3 } else { 0xc2 });
}

/// A uint 32 (always 5 bytes, whatever the value).
pub fn write_u32(out: &mut impl BufMut, v: u32) {
    out.put_u8(0xce);
    out.put_u32(v);
}
