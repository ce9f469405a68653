//! CORS for the http input (`cors_allow_origins`): checking the `Origin` of a request, and
//! answering preflight `OPTIONS` requests.
//!
//! Owns the origin matching (exact, `*`, one `*` wildcard inside a pattern); it must not read
//! bodies.

use super::responses::{HttpResponse, Reject};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

/// `Ok(Some(value for Access-Control-Allow-Origin))` when CORS applies and the origin is allowed,
/// `Ok(None)` when no CORS list is configured, `Err(403)` when the origin is not allowed.
pub(super) fn cors_check(
    allowed: &[String],
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Reject> {
    if allowed.is_empty() {
        return Ok(None);
    }
    if allowed.iter().any(|a| a == "*") {
        return Ok(Some(HeaderValue::from_static("*")));
    }
    let forbidden = || {
        Reject::new(
            StatusCode::FORBIDDEN,
            "origin not allowed by cors_allow_origins",
        )
    };
    let origin = headers.get(header::ORIGIN).ok_or_else(forbidden)?;
    let text = origin.to_str().map_err(|_| forbidden())?;
    let matches = |pattern: &str| match pattern.split_once('*') {
        Some((start, end)) => {
            text.len() >= start.len() + end.len() && text.starts_with(start) && text.ends_with(end)
        }
        None => pattern == text,
    };
    if allowed.iter().filter(|a| !a.is_empty()).any(|a| matches(a)) {
        Ok(Some(origin.clone()))
    } else {
        Err(forbidden())
    }
}

pub(super) fn preflight_response(headers: &HeaderMap) -> HttpResponse {
    let allow_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("Content-Type"));
    let mut r = Response::new(Full::new(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    r
}
