//! `Content-Encoding` of http input bodies: gzip and deflate (zlib-wrapped or raw), inflated
//! into at most `body_size_limit` bytes so that a small compressed bomb cannot exhaust memory.
//!
//! Blocking (CPU-bound) code: callers run it on the blocking pool for large bodies.

use super::responses::Reject;
use hyper::StatusCode;
use std::io::{self, Read};

/// Undo `Content-Encoding`, never producing more than `limit` bytes.
pub(super) fn decompress(
    encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, Reject> {
    let encoding = encoding.unwrap_or("").trim().to_ascii_lowercase();
    let result = match encoding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(body), limit),
        "deflate" => {
            // RFC 9110 "deflate" is zlib-wrapped; some clients send a raw deflate stream.
            if looks_like_zlib(body) {
                read_limited(flate2::read::ZlibDecoder::new(body), limit)
            } else {
                read_limited(flate2::read::DeflateDecoder::new(body), limit)
            }
        }
        other => {
            return Err(Reject::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?} (gzip and deflate are)"),
            ))
        }
    };
    match result {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(Reject::too_large(format!(
            "decompressed body exceeds body_size_limit {limit}"
        ))),
        Err(e) => Err(Reject::bad_request(format!(
            "cannot decode {encoding} body: {e}"
        ))),
    }
}

fn looks_like_zlib(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] & 0x0f == 8 && ((b[0] as u16) << 8 | b[1] as u16).is_multiple_of(31)
}

/// Read all of `rd`; `Ok(None)` as soon as it yields more than `limit` bytes. The buffer never
/// grows past `limit + 1` bytes, whatever the stream claims or contains.
pub(super) fn read_limited(mut rd: impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match rd.read(&mut buf) {
            Ok(0) => return Ok(Some(out)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.len() + n > limit {
            return Ok(None);
        }
        if out.capacity() - out.len() < n {
            let want = out.capacity().max(n).max(4096);
            out.reserve_exact(want.min(cap - out.len()));
        }
        out.extend_from_slice(&buf[..n]);
    }
}
