//! The `http` input (Fluentd's in_http): events posted over HTTP/1.1.
//!
//! Owns the HTTP server (hyper, keep-alive connections, idle timeout `keepalive_timeout`),
//! request decoding and the response codes. `POST /a/b` carries events tagged `a.b`; the body
//! is one of
//! - `application/x-www-form-urlencoded` with a `msgpack=`, `json=` or `ndjson=` field (the
//!   same fields are also read from the query string, as Fluentd does),
//! - `application/json`: an object, or an array of objects (batch),
//! - `application/msgpack` (or `application/x-msgpack`): a map, or an array of maps,
//! - `application/x-ndjson`: one object per line (a batch),
//!
//! optionally with `Content-Encoding: gzip` or `deflate`. `?time=` (float epoch seconds, 0 =
//! now) sets the events' time; in a batch each record's `time` key is removed and used as that
//! event's time. With `add_http_headers` every request header becomes an `HTTP_<NAME>` field;
//! with `add_remote_addr` the client address (first `X-Forwarded-For` entry, else the peer IP)
//! becomes `REMOTE_ADDR`.
//!
//! One request becomes exactly one [`EventBatch`] handed to [`Emit::emit`]; the success response
//! (200 with an empty body, 204 with `use_204_response`, a 1x1 GIF with
//! `respond_with_empty_img`) is sent only after `emit` returned `Ok`. Errors: 400 (undecodable
//! body, bad `time`), 403 (CORS origin not allowed), 404 (no tag in the path), 405 (any method
//! but POST), 413 (body, or decompressed body, over `body_size_limit`), 415 (unknown
//! `Content-Encoding` or multipart bodies, which lograft does not read), 503 (buffer overflow),
//! 500 (any other emit failure). A bad request never stops the server.
//!
//! This module must not hold accepted events anywhere but in the `emit` call: `emit` runs in a
//! task of its own, so a client that disconnects mid-request cannot cancel a half-done commit.
//! Decompression and parsing of large or compressed bodies run on the blocking pool.
//!
//! # Layout
//!
//! - this file: the server (accepting, keep-alive, graceful shutdown) and one request's path
//!   (checks, body read, decode, emit, response);
//! - [`config`]: the typed `<source> @type http` and its builder;
//! - `request`: the tag from the path, headers, the added `HTTP_*` / `REMOTE_ADDR` fields;
//! - `decode`: body formats (json, msgpack, ndjson, form fields) into one batch, with
//!   `compression` (gzip, deflate) and `form` (urlencoded); msgpack primitives come from
//!   [`crate::msgpack`];
//! - `cors`: `cors_allow_origins` and preflight; `responses`: success and `Reject` responses.

mod compression;
pub mod config;
mod cors;
mod decode;
mod form;
mod request;
mod responses;
#[cfg(test)]
mod tests;

use crate::fd_limit::is_fd_exhaustion;
use crate::input::fd_reserve::{FdReserve, OUT_OF_FDS_RESPONSE};
use crate::log_limit::WarnLimiter;
use crate::pipeline::{Emit, EmitError};
use config::HttpInputConfig;
use cors::{cors_check, preflight_response};
use decode::{decode_request, RequestMeta};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use request::{content_length, extra_fields, header_str, tag_from_path};
use responses::{reject_response, success_response, HttpResponse, Reject};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bodies up to this size that need no decompression are parsed on the runtime thread.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// The bound, not yet serving, HTTP input.
pub struct HttpInput {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl HttpInput {
    /// Bind `cfg.bind:cfg.port` (port 0 picks a free port; see [`HttpInput::local_addr`]).
    pub async fn bind(cfg: &HttpInputConfig, emit: Arc<dyn Emit>) -> io::Result<HttpInput> {
        let listener = TcpListener::bind((cfg.bind.as_str(), cfg.port)).await?;
        let body_size_limit = usize::try_from(cfg.body_size_limit).unwrap_or(usize::MAX);
        Ok(HttpInput {
            listener,
            shared: Arc::new(Shared {
                emit,
                body_size_limit,
                keepalive_timeout: cfg.keepalive_timeout,
                add_http_headers: cfg.add_http_headers,
                add_remote_addr: cfg.add_remote_addr,
                use_204_response: cfg.use_204_response,
                respond_with_empty_img: cfg.respond_with_empty_img,
                cors_allow_origins: cfg.cors_allow_origins.clone(),
            }),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` is cancelled; then stop accepting, let requests in progress
    /// finish (idle keep-alive connections are closed), and return.
    pub async fn run(self, shutdown: CancellationToken) {
        let local = self.listener.local_addr().ok();
        tracing::info!(addr = ?local, "http input listening");
        let graceful = GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new());
        if self.shared.keepalive_timeout.is_zero() {
            builder.keep_alive(false);
        } else {
            // hyper starts this timer whenever it waits for a request head, idle time included.
            builder.header_read_timeout(self.shared.keepalive_timeout);
        }
        // Out of file descriptors: the spare answers 503 instead of silence.
        let mut reserve = FdReserve::new();
        let accept_failed = WarnLimiter::default();
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    backoff = Duration::ZERO;
                    a
                }
                Err(e) => {
                    let answered = if is_fd_exhaustion(&e) {
                        reserve
                            .answer_one(&self.listener, OUT_OF_FDS_RESPONSE)
                            .await
                    } else {
                        None
                    };
                    if let Some(held_back) = accept_failed.check() {
                        tracing::warn!(error = %e, answered_503 = ?answered,
                            failures_since_last_warning = held_back + 1,
                            "http input: accept failed; while out of file descriptors each waiting connection is answered 503");
                    }
                    if answered.is_none() {
                        // Back off instead of spinning.
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                    }
                    continue;
                }
            };
            let shared = self.shared.clone();
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, shared, peer).await) }
            });
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tracing::info!(addr = ?local, "http input stopping; waiting for requests in progress");
        graceful.shutdown().await;
        tracing::info!(addr = ?local, "http input stopped");
    }
}

struct Shared {
    emit: Arc<dyn Emit>,
    body_size_limit: usize,
    keepalive_timeout: Duration,
    add_http_headers: bool,
    add_remote_addr: bool,
    use_204_response: bool,
    respond_with_empty_img: bool,
    cors_allow_origins: Vec<String>,
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>, peer: SocketAddr) -> HttpResponse {
    let cors_origin = match cors_check(&shared.cors_allow_origins, req.headers()) {
        Ok(allowed) => allowed,
        Err(reject) => return reject_response(reject),
    };
    let result = if req.method() == Method::OPTIONS && cors_origin.is_some() {
        Ok(preflight_response(req.headers()))
    } else {
        ingest(req, &shared, peer).await
    };
    let mut response = match result {
        Ok(r) => r,
        Err(reject) => {
            tracing::debug!(%peer, status = %reject.status, reason = %reject.message, "http request refused");
            reject_response(reject)
        }
    };
    if let Some(origin) = cors_origin {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

async fn ingest(
    req: Request<Incoming>,
    shared: &Shared,
    peer: SocketAddr,
) -> Result<HttpResponse, Reject> {
    if req.method() != Method::POST {
        return Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "method {} not allowed: post events with POST /<tag>",
                req.method()
            ),
        ));
    }
    let tag = tag_from_path(req.uri().path())
        .ok_or_else(|| Reject::new(StatusCode::NOT_FOUND, "no tag in the path: POST /<tag>"))?;
    let limit = shared.body_size_limit;
    if let Some(len) = content_length(req.headers()) {
        if len > limit as u64 {
            return Err(Reject::too_large(format!(
                "body of {len} bytes exceeds body_size_limit {limit}"
            )));
        }
    }
    let extra_fields = extra_fields(shared, req.headers(), peer);
    let meta = RequestMeta {
        tag,
        query: req.uri().query().map(str::to_owned),
        content_type: header_str(req.headers(), &header::CONTENT_TYPE),
        content_encoding: header_str(req.headers(), &header::CONTENT_ENCODING),
        extra_fields,
        limit,
    };
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Reject::too_large(format!("body exceeds body_size_limit {limit}"))
            } else {
                Reject::bad_request(format!("cannot read body: {e}"))
            }
        })?
        .to_bytes();

    let batch = if body.len() <= INLINE_PARSE_LIMIT && meta.content_encoding.is_none() {
        decode_request(&meta, &body)?
    } else {
        tokio::task::spawn_blocking(move || decode_request(&meta, &body))
            .await
            .map_err(|e| {
                Reject::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("decoding task failed: {e}"),
                )
            })??
    };

    if batch.count > 0 {
        let emit = shared.emit.clone();
        let (tag, count) = (batch.tag.clone(), batch.count);
        // A task of its own: a disconnecting client must not cancel a commit half-way.
        let outcome = tokio::spawn(async move { emit.emit(batch).await })
            .await
            .unwrap_or_else(|e| Err(EmitError::Storage(format!("emit task failed: {e}"))));
        if let Err(e) = outcome {
            tracing::warn!(%peer, %tag, count, error = %e, "http events not committed");
            let status = match e {
                EmitError::Overflow(_) | EmitError::Unavailable(_) | EmitError::ShuttingDown => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                EmitError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                EmitError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return Err(Reject::new(status, e.to_string()));
        }
    }
    Ok(success_response(shared))
}
