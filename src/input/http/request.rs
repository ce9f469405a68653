//! What the http input reads from a request besides its body: the tag from the path,
//! `Content-Length`, header values, and the `HTTP_<NAME>` / `REMOTE_ADDR` fields added to every
//! record.
//!
//! It must not read the body (that is `decode`).

use super::Shared;
use hyper::header::{self, HeaderMap};
use std::net::SocketAddr;

/// `/a/b` → `a.b` (trailing empty segments dropped, as Ruby's `split` does).
pub(super) fn tag_from_path(path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    while segments.last() == Some(&"") {
        segments.pop();
    }
    (!segments.is_empty()).then(|| segments.join("."))
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn header_str(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `HTTP_<NAME>` fields and `REMOTE_ADDR`, as configured.
pub(super) fn extra_fields(
    shared: &Shared,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    if shared.add_http_headers {
        for name in headers.keys() {
            let value = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            let key = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            fields.push((key, value));
        }
    }
    if shared.add_remote_addr {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let addr = forwarded
            .map(str::to_owned)
            .unwrap_or_else(|| peer.ip().to_string());
        fields.push(("REMOTE_ADDR".into(), addr));
    }
    fields
}
