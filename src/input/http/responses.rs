//! The http input's responses: the success response (200 empty, 204 with `use_204_response`,
//! a 1x1 GIF with `respond_with_empty_img`) and [`Reject`], a refused request turned into a
//! status with a plain-text reason.
//!
//! Owns the wording and shape of responses; it must not decide when a request succeeded.

use super::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// A request that cannot be turned into events: the status and the message sent back.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub(super) struct Reject {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl Reject {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Reject {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

pub(super) type HttpResponse = Response<Full<Bytes>>;

/// A transparent 1x1 GIF, the body of `respond_with_empty_img` responses.
const EMPTY_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub(super) fn success_response(shared: &Shared) -> HttpResponse {
    if shared.respond_with_empty_img {
        let mut r = Response::new(Full::new(Bytes::from_static(EMPTY_GIF)));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    if shared.use_204_response {
        *r.status_mut() = StatusCode::NO_CONTENT;
    } else {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

pub(super) fn reject_response(reject: Reject) -> HttpResponse {
    let reason = reject.status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "{} {}\n{}\n",
        reject.status.as_u16(),
        reason,
        reject.message
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = reject.status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if reject.status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}
