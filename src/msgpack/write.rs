//! Writing msgpack headers and small values. Each writer picks the smallest encoding unless its
//! name says a fixed width (senders that patch lengths later rely on fixed widths).

use bytes::BufMut;

/// A map header for `pairs` pairs (smallest encoding).
pub fn write_map_header(out: &mut impl BufMut, pairs: u32) {
    write_container_header(out, pairs, [0x80, 0xde, 0xdf]);
}

/// An array header for `len` elements (smallest encoding).
pub fn write_array_header(out: &mut impl BufMut, len: u32) {
    write_container_header(out, len, [0x90, 0xdc, 0xdd]);
}

/// A map or array header: the fix form (`fix | n`) below 16, else the 16- or 32-bit form.
fn write_container_header(out: &mut impl BufMut, n: u32, [fix, m16, m32]: [u8; 3]) {
    if n < 16 {
        out.put_u8(fix | n as u8);
    } else if n <= u16::MAX as u32 {
        out.put_u8(m16);
        out.put_u16(n as u16);
    } else {
        out.put_u8(m32);
        out.put_u32(n);
    }
}

/// A str (smallest encoding).
pub fn write_str(out: &mut impl BufMut, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// Bytes as a str (smallest encoding); the bytes are not checked for UTF-8.
pub fn write_str_bytes(out: &mut impl BufMut, s: &[u8]) {
    if s.len() < 32 {
        out.put_u8(0xa0 | s.len() as u8);
    } else {
        write_sized_header(out, s.len(), [0xd9, 0xda, 0xdb]);
    }
    out.put_slice(s);
}

/// A length header in the smallest of the 8-, 16- and 32-bit forms whose markers are given
/// (str 8/16/32 or bin 8/16/32).
fn write_sized_header(out: &mut impl BufMut, n: usize, [m8, m16, m32]: [u8; 3]) {
    if n <= u8::MAX as usize {
        out.put_u8(m8);
        out.put_u8(n as u8);
    } else if n <= u16::MAX as usize {
        out.put_u8(m16);
        out.put_u16(n as u16);
    } else {
        out.put_u8(m32);
        out.put_u32(n as u32);
    }
}

/// The header of a str 32 of `len` bytes (always 5 bytes); the caller writes the content.
pub fn write_str32_header(out: &mut impl BufMut, len: u32) {
    out.put_u8(0xdb);
    out.put_u32(len);
}

/// A bin (smallest encoding).
pub fn write_bin(out: &mut impl BufMut, b: &[u8]) {
    write_sized_header(out, b.len(), [0xc4, 0xc5, 0xc6]);
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
