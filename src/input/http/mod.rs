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

pub mod config;

use crate::event::{skip_value, write_entry, EventBatch, EventTime};
use crate::input::{Emit, EmitError};
use bytes::{Bytes, BytesMut};
use config::HttpInputConfig;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rmpv::Value;
use std::convert::Infallible;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Records nested deeper than this are refused (bounds recursion in the decoders).
const MAX_RECORD_DEPTH: usize = 128;
/// Bodies up to this size that need no decompression are parsed on the runtime thread.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// A transparent 1x1 GIF, the body of `respond_with_empty_img` responses.
const EMPTY_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The bound, not yet serving, HTTP input.
pub struct HttpInput {
    listener: TcpListener,
    shared: Arc<Shared>,
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
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "http input accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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

/// A request that cannot be turned into events: the status and the message sent back.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Reject {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

type HttpResponse = Response<Full<Bytes>>;

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

/// What `decode_request` needs from the request besides the body.
struct RequestMeta {
    tag: String,
    query: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    extra_fields: Vec<(String, String)>,
    limit: usize,
}

/// The body's format, as chosen by Content-Type or by the form/query field name.
enum Payload {
    Json(Vec<u8>),
    Msgpack(Vec<u8>),
    Ndjson(Vec<u8>),
}

/// Turn one request into one batch (possibly empty).
fn decode_request(meta: &RequestMeta, raw_body: &[u8]) -> Result<EventBatch, Reject> {
    let body = decompress(meta.content_encoding.as_deref(), raw_body, meta.limit)?;
    let mut params: Vec<(Vec<u8>, Vec<u8>)> = meta
        .query
        .as_deref()
        .map(|q| parse_form(q.as_bytes()))
        .unwrap_or_default();
    let media_type = meta
        .content_type
        .as_deref()
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let mut payload = match media_type.as_str() {
        "application/json" => Some(Payload::Json(body)),
        "application/msgpack" | "application/x-msgpack" => Some(Payload::Msgpack(body)),
        "application/x-ndjson" => Some(Payload::Ndjson(body)),
        "application/x-www-form-urlencoded" => {
            params.extend(parse_form(&body));
            None
        }
        "multipart/form-data" => {
            return Err(Reject::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "multipart/form-data bodies are not supported: send json=, msgpack= or ndjson= urlencoded, or a JSON/msgpack/ndjson body",
            ))
        }
        _ => None,
    };
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.clone())
    };
    if payload.is_none() {
        payload = param("msgpack")
            .map(Payload::Msgpack)
            .or_else(|| param("json").map(Payload::Json))
            .or_else(|| param("ndjson").map(Payload::Ndjson));
    }
    let payload = payload.ok_or_else(|| {
        Reject::bad_request(
            "no events: send a 'json', 'ndjson' or 'msgpack' parameter, or a body with Content-Type application/json, application/msgpack or application/x-ndjson",
        )
    })?;
    let default_time = match param("time") {
        None => EventTime::now(),
        Some(t) => parse_time_param(&t)?,
    };
    let records = parse_payload(payload, meta.extra_fields.is_empty())?;
    let mut entries = BytesMut::new();
    let mut count: u32 = 0;
    let mut encoded = Vec::new();
    match records {
        Records::RawMap(raw) => {
            write_entry(&mut entries, default_time, &raw);
            count = 1;
        }
        Records::Single(mut record) => {
            add_fields(&mut record, &meta.extra_fields);
            encode(&record, &mut encoded)?;
            write_entry(&mut entries, default_time, &encoded);
            count = 1;
        }
        Records::Batch(records) => {
            for (i, mut record) in records.into_iter().enumerate() {
                let time = match take_key(&mut record, "time") {
                    None | Some(Value::Nil) => default_time,
                    Some(v) => value_time(&v).ok_or_else(|| {
                        Reject::bad_request(format!(
                            "record {i}: 'time' must be a non-negative number of seconds, got {v}"
                        ))
                    })?,
                };
                add_fields(&mut record, &meta.extra_fields);
                encoded.clear();
                encode(&record, &mut encoded)?;
                write_entry(&mut entries, time, &encoded);
                count = count
                    .checked_add(1)
                    .ok_or_else(|| Reject::too_large("too many records in one request"))?;
            }
        }
    }
    Ok(EventBatch {
        tag: meta.tag.clone(),
        entries: entries.freeze(),
        count,
        origin_chunk: None,
    })
}

/// Decoded records of one request.
enum Records {
    /// A msgpack map passed through as it came (validated, nothing to add).
    RawMap(Vec<u8>),
    Single(Vec<(Value, Value)>),
    Batch(Vec<Vec<(Value, Value)>>),
}

fn parse_payload(payload: Payload, passthrough_ok: bool) -> Result<Records, Reject> {
    match payload {
        Payload::Json(bytes) => {
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Reject::bad_request(format!("invalid JSON: {e}")))?;
            records_from_value(value, "JSON")
        }
        Payload::Msgpack(bytes) => {
            let end = skip_value(&bytes, 0)
                .map_err(|e| Reject::bad_request(format!("invalid msgpack: {e}")))?;
            if end != bytes.len() {
                return Err(Reject::bad_request(format!(
                    "invalid msgpack: {} trailing bytes after the value",
                    bytes.len() - end
                )));
            }
            if passthrough_ok && is_map_marker(bytes[0]) {
                // Structure checked by skip_value; depth and key/value content need a decode.
                rmpv::decode::read_value_ref_with_max_depth(&mut &bytes[..], MAX_RECORD_DEPTH)
                    .map_err(|e| Reject::bad_request(format!("invalid msgpack: {e}")))?;
                return Ok(Records::RawMap(bytes));
            }
            let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_RECORD_DEPTH)
                .map_err(|e| Reject::bad_request(format!("invalid msgpack: {e}")))?;
            records_from_value(value, "msgpack")
        }
        Payload::Ndjson(bytes) => {
            let mut records = Vec::new();
            for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: Value = serde_json::from_slice(line).map_err(|e| {
                    Reject::bad_request(format!("invalid JSON on ndjson line {}: {e}", n + 1))
                })?;
                match value {
                    Value::Map(m) => records.push(m),
                    _ => {
                        return Err(Reject::bad_request(format!(
                            "ndjson line {} is not a JSON object",
                            n + 1
                        )))
                    }
                }
            }
            Ok(Records::Batch(records))
        }
    }
}

fn records_from_value(value: Value, what: &str) -> Result<Records, Reject> {
    match value {
        Value::Map(m) => Ok(Records::Single(m)),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Map(m) => Ok(m),
                _ => Err(Reject::bad_request(format!(
                    "{what} batch element {i} is not a map/object"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Records::Batch),
        _ => Err(Reject::bad_request(format!(
            "{what} body must be an object or an array of objects"
        ))),
    }
}

fn is_map_marker(m: u8) -> bool {
    (0x80..=0x8f).contains(&m) || m == 0xde || m == 0xdf
}

fn encode(record: &[(Value, Value)], out: &mut Vec<u8>) -> Result<(), Reject> {
    // Encoding a map into a Vec cannot fail but for allocation; keep the error path anyway.
    let map = Value::Map(record.to_vec());
    rmpv::encode::write_value(out, &map).map_err(|e| {
        Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode record: {e}"),
        )
    })
}

/// Remove the string key `key` from a record, returning its value.
fn take_key(record: &mut Vec<(Value, Value)>, key: &str) -> Option<Value> {
    let pos = record.iter().position(|(k, _)| k.as_str() == Some(key))?;
    Some(record.remove(pos).1)
}

/// Set string fields, replacing an existing key's value (as a Ruby hash assignment does).
fn add_fields(record: &mut Vec<(Value, Value)>, fields: &[(String, String)]) {
    for (name, value) in fields {
        match record
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(name.as_str()))
        {
            Some((_, v)) => *v = Value::from(value.as_str()),
            None => record.push((Value::from(name.as_str()), Value::from(value.as_str()))),
        }
    }
}

/// An event time from a record's `time` value (seconds as int or float, or an EventTime ext).
fn value_time(v: &Value) -> Option<EventTime> {
    match v {
        Value::Integer(i) => {
            let secs = i.as_u64()?;
            Some(EventTime {
                secs: u32::try_from(secs).ok()?,
                nanos: 0,
            })
        }
        Value::F32(f) => float_time(*f as f64),
        Value::F64(f) => float_time(*f),
        Value::Ext(0, data) if data.len() == 8 => Some(EventTime {
            secs: u32::from_be_bytes(data[0..4].try_into().ok()?),
            nanos: u32::from_be_bytes(data[4..8].try_into().ok()?),
        }),
        _ => None,
    }
}

fn float_time(f: f64) -> Option<EventTime> {
    (f.is_finite() && (0.0..=u32::MAX as f64).contains(&f)).then(|| EventTime::from_f64(f))
}

/// `?time=`: float epoch seconds; 0 means now.
fn parse_time_param(raw: &[u8]) -> Result<EventTime, Reject> {
    let text = String::from_utf8_lossy(raw);
    let f: f64 = text
        .trim()
        .parse()
        .map_err(|_| Reject::bad_request(format!("invalid time parameter {text:?}")))?;
    if f == 0.0 {
        return Ok(EventTime::now());
    }
    float_time(f)
        .ok_or_else(|| Reject::bad_request(format!("time parameter {text:?} out of range")))
}

/// Undo `Content-Encoding`, never producing more than `limit` bytes.
fn decompress(encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>, Reject> {
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
fn read_limited(mut rd: impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
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

/// `application/x-www-form-urlencoded` pairs, values kept as bytes (msgpack is binary).
fn parse_form(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    input
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = s
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space).collect()
}

/// `/a/b` → `a.b` (trailing empty segments dropped, as Ruby's `split` does).
fn tag_from_path(path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    while segments.last() == Some(&"") {
        segments.pop();
    }
    (!segments.is_empty()).then(|| segments.join("."))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn header_str(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `HTTP_<NAME>` fields and `REMOTE_ADDR`, as configured.
fn extra_fields(shared: &Shared, headers: &HeaderMap, peer: SocketAddr) -> Vec<(String, String)> {
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

/// `Ok(Some(value for Access-Control-Allow-Origin))` when CORS applies and the origin is allowed,
/// `Ok(None)` when no CORS list is configured, `Err(403)` when the origin is not allowed.
fn cors_check(allowed: &[String], headers: &HeaderMap) -> Result<Option<HeaderValue>, Reject> {
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

fn preflight_response(headers: &HeaderMap) -> HttpResponse {
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

fn success_response(shared: &Shared) -> HttpResponse {
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

fn reject_response(reject: Reject) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EntryIter;
    use crate::input::BoxFuture;
    use http_body_util::BodyExt;
    use hyper::client::conn::http1::SendRequest;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    /// Records batches; can be told to fail, or to hold each emit until released.
    #[derive(Default)]
    struct MockEmit {
        batches: Mutex<Vec<EventBatch>>,
        fail_with: Mutex<Option<fn() -> EmitError>>,
        hold: Option<Arc<Semaphore>>,
        entered: AtomicUsize,
    }

    impl Emit for MockEmit {
        fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
            Box::pin(async move {
                self.entered.fetch_add(1, Ordering::SeqCst);
                if let Some(hold) = &self.hold {
                    hold.acquire().await.expect("semaphore open").forget();
                }
                if let Some(fail) = *self.fail_with.lock().unwrap() {
                    return Err(fail());
                }
                self.batches.lock().unwrap().push(batch);
                Ok(())
            })
        }
    }

    impl MockEmit {
        fn batches(&self) -> Vec<EventBatch> {
            self.batches.lock().unwrap().clone()
        }
    }

    fn config() -> HttpInputConfig {
        HttpInputConfig {
            bind: "127.0.0.1".into(),
            port: 0,
            body_size_limit: 32 << 20,
            keepalive_timeout: Duration::from_secs(10),
            add_http_headers: false,
            add_remote_addr: false,
            use_204_response: false,
            respond_with_empty_img: false,
            cors_allow_origins: vec![],
        }
    }

    struct Server {
        addr: SocketAddr,
        mock: Arc<MockEmit>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(cfg: HttpInputConfig, mock: MockEmit) -> Server {
        let mock = Arc::new(mock);
        let input = HttpInput::bind(&cfg, mock.clone()).await.unwrap();
        let addr = input.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(input.run(shutdown.clone()));
        Server {
            addr,
            mock,
            shutdown,
            task,
        }
    }

    async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Reply {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    async fn send(
        sender: &mut SendRequest<Full<Bytes>>,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(
        addr: SocketAddr,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut sender = connect(addr).await;
        send(&mut sender, Method::POST, uri, headers, body).await
    }

    /// (time, record as JSON) of every entry of a batch.
    fn events(batch: &EventBatch) -> Vec<(EventTime, serde_json::Value)> {
        EntryIter::new(&batch.entries)
            .map(|e| {
                let e = e.unwrap();
                let v: serde_json::Value = rmp_serde::from_slice(e.record).unwrap();
                (e.time, v)
            })
            .collect()
    }

    const JSON: (&str, &str) = ("content-type", "application/json");
    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[tokio::test]
    async fn json_form_field_becomes_one_event_tagged_by_path() {
        let s = start(config(), MockEmit::default()).await;
        let before = EventTime::now();
        let r = post(
            s.addr,
            "/app/web/",
            &[FORM],
            "json=%7B%22action%22%3A%22login%22%2C%22user%22%3A2%7D",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
        let batches = s.mock.batches();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].tag, "app.web");
        assert_eq!(batches[0].count, 1);
        let ev = events(&batches[0]);
        assert_eq!(ev[0].1, serde_json::json!({"action": "login", "user": 2}));
        assert!(ev[0].0 >= before && ev[0].0.secs <= EventTime::now().secs);
    }

    #[tokio::test]
    async fn msgpack_form_field_with_binary_bytes() {
        let s = start(config(), MockEmit::default()).await;
        let rec = rmp_serde::to_vec_named(&serde_json::json!({"k": "v", "n": 300})).unwrap();
        let encoded: String =
            percent_encoding::percent_encode(&rec, percent_encoding::NON_ALPHANUMERIC).to_string();
        let r = post(
            s.addr,
            "/t?time=1700000000.25",
            &[FORM],
            format!("msgpack={encoded}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let ev = events(&s.mock.batches()[0]);
        assert_eq!(ev[0].1, serde_json::json!({"k": "v", "n": 300}));
        assert_eq!(
            ev[0].0,
            EventTime {
                secs: 1_700_000_000,
                nanos: 250_000_000
            }
        );
    }

    #[tokio::test]
    async fn json_array_is_a_batch_with_per_record_times() {
        let s = start(config(), MockEmit::default()).await;
        let body = r#"[{"a":1,"time":1600000000},{"a":2,"time":1600000001.5},{"a":3}]"#;
        let r = post(s.addr, "/b?time=1500000000", &[JSON], body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let batches = s.mock.batches();
        assert_eq!(batches.len(), 1, "one batch per request");
        assert_eq!(batches[0].count, 3);
        let ev = events(&batches[0]);
        assert_eq!(
            ev[0],
            (
                EventTime {
                    secs: 1_600_000_000,
                    nanos: 0
                },
                serde_json::json!({"a": 1})
            )
        );
        assert_eq!(
            ev[1],
            (
                EventTime {
                    secs: 1_600_000_001,
                    nanos: 500_000_000
                },
                serde_json::json!({"a": 2})
            )
        );
        assert_eq!(
            ev[2],
            (
                EventTime {
                    secs: 1_500_000_000,
                    nanos: 0
                },
                serde_json::json!({"a": 3})
            )
        );
    }

    #[tokio::test]
    async fn single_json_object_keeps_its_time_key_and_key_order() {
        let s = start(config(), MockEmit::default()).await;
        let r = post(
            s.addr,
            "/b?time=1500000000",
            &[JSON],
            r#"{"z":1,"time":5,"a":2}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let b = &s.mock.batches()[0];
        let e = EntryIter::new(&b.entries).next().unwrap().unwrap();
        assert_eq!(e.time.secs, 1_500_000_000);
        assert_eq!(
            crate::output::format::record_to_json(e.record).unwrap(),
            r#"{"z":1,"time":5,"a":2}"#
        );
    }

    #[tokio::test]
    async fn msgpack_bodies_map_and_array() {
        let s = start(config(), MockEmit::default()).await;
        let map = rmp_serde::to_vec_named(&serde_json::json!({"m": 1})).unwrap();
        let r = post(
            s.addr,
            "/mp",
            &[("content-type", "application/msgpack")],
            map.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // Passed through byte for byte.
        let b = &s.mock.batches()[0];
        assert_eq!(
            EntryIter::new(&b.entries).next().unwrap().unwrap().record,
            &map[..]
        );

        let arr =
            rmp_serde::to_vec_named(&serde_json::json!([{"m": 2, "time": 1600000000}, {"m": 3}]))
                .unwrap();
        let r = post(
            s.addr,
            "/mp",
            &[("content-type", "application/msgpack")],
            arr,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let ev = events(&s.mock.batches()[1]);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0],
            (
                EventTime {
                    secs: 1_600_000_000,
                    nanos: 0
                },
                serde_json::json!({"m": 2})
            )
        );
        assert_eq!(ev[1].1, serde_json::json!({"m": 3}));

        for bad in [
            vec![0x01u8],
            vec![0x81, 0xa1],
            vec![0x80, 0x80],
            vec![0x92, 0x01, 0x80],
        ] {
            let r = post(
                s.addr,
                "/mp",
                &[("content-type", "application/msgpack")],
                bad.clone(),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(r.text().contains("msgpack"), "{}", r.text());
        }
        assert_eq!(s.mock.batches().len(), 2);
    }

    #[tokio::test]
    async fn ndjson_lines_are_a_batch() {
        let s = start(config(), MockEmit::default()).await;
        let body = "{\"k1\":\"v1\"}\r\n\n{\"k2\":\"v2\",\"time\":1600000000}\n";
        let r = post(
            s.addr,
            "/nd",
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let ev = events(&s.mock.batches()[0]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].1, serde_json::json!({"k1": "v1"}));
        assert_eq!(
            ev[1],
            (
                EventTime {
                    secs: 1_600_000_000,
                    nanos: 0
                },
                serde_json::json!({"k2": "v2"})
            )
        );

        let r = post(
            s.addr,
            "/nd",
            &[FORM],
            "ndjson=%7B%22x%22%3A1%7D%0A%7B%22x%22%3A2%7D",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(s.mock.batches()[1].count, 2);

        let r = post(
            s.addr,
            "/nd",
            &[("content-type", "application/x-ndjson")],
            "{\"a\":1}\n[1]\n",
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains("line 2"), "{}", r.text());
    }

    #[tokio::test]
    async fn time_param_zero_is_now_and_garbage_is_400() {
        let s = start(config(), MockEmit::default()).await;
        let before = EventTime::now();
        let r = post(s.addr, "/t?time=0", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(events(&s.mock.batches()[0])[0].0 >= before);
        let r = post(s.addr, "/t?time=yesterday", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains("time"));
        let r = post(s.addr, "/t", &[JSON], r#"[{"time":"noon"}]"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(s.mock.batches().len(), 1);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn gzip_and_deflate_bodies() {
        let s = start(config(), MockEmit::default()).await;
        let r = post(
            s.addr,
            "/z",
            &[JSON, ("content-encoding", "gzip")],
            gzip(br#"{"g":1}"#),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(br#"{"d":1}"#).unwrap();
        let r = post(
            s.addr,
            "/z",
            &[JSON, ("content-encoding", "deflate")],
            z.finish().unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(br#"{"r":1}"#).unwrap();
        let r = post(
            s.addr,
            "/z",
            &[JSON, ("content-encoding", "deflate")],
            raw.finish().unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        let recs: Vec<_> = s
            .mock
            .batches()
            .iter()
            .map(|b| events(b)[0].1.clone())
            .collect();
        assert_eq!(
            recs,
            vec![
                serde_json::json!({"g":1}),
                serde_json::json!({"d":1}),
                serde_json::json!({"r":1})
            ]
        );

        let r = post(
            s.addr,
            "/z",
            &[JSON, ("content-encoding", "gzip")],
            &b"not gzip"[..],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = post(
            s.addr,
            "/z",
            &[JSON, ("content-encoding", "br")],
            &b"{}"[..],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn bad_json_is_400_and_the_connection_keeps_serving() {
        let s = start(config(), MockEmit::default()).await;
        let mut conn = connect(s.addr).await;
        let r = send(&mut conn, Method::POST, "/t", &[JSON], r#"{"a":"#).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains("invalid JSON"), "{}", r.text());
        let r = send(&mut conn, Method::POST, "/t", &[JSON], "42").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = send(&mut conn, Method::POST, "/t", &[], "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains("json"));
        // Same keep-alive connection, next request is fine.
        let r = send(&mut conn, Method::POST, "/t", &[JSON], r#"{"a":1}"#).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(s.mock.batches().len(), 1);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_413() {
        let mut cfg = config();
        cfg.body_size_limit = 1024;
        let s = start(cfg, MockEmit::default()).await;
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
        let r = post(s.addr, "/t", &[JSON], big.clone()).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

        // Chunked (no Content-Length): the limit applies while reading.
        let head = "POST /t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut chunks = head.as_bytes().to_vec();
        for _ in 0..3 {
            chunks.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, " ".repeat(600)).as_bytes());
        }
        chunks.extend_from_slice(b"0\r\n\r\n");
        assert!(raw_exchange(s.addr, &chunks)
            .await
            .starts_with("HTTP/1.1 413"));

        // The server still answers.
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(s.mock.batches().len(), 1);
    }

    #[tokio::test]
    async fn gzip_bomb_is_413_without_inflating_it() {
        let mut cfg = config();
        cfg.body_size_limit = 2 << 20;
        let s = start(cfg, MockEmit::default()).await;
        // 1 MiB of zeros gzips to ~1 KiB; 1024 concatenated members inflate to 1 GiB.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        let member = e.finish().unwrap();
        let bomb = member.repeat(1024);
        assert!(bomb.len() < 2 << 20);
        let r = post(s.addr, "/t", &[JSON, ("content-encoding", "gzip")], bomb).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.text().contains("decompressed"), "{}", r.text());
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
    }

    #[test]
    fn read_limited_stops_an_endless_stream_within_the_limit() {
        assert!(read_limited(std::io::repeat(0), 1 << 20).unwrap().is_none());
        let data = read_limited(&[7u8; 5000][..], 5000).unwrap().unwrap();
        assert_eq!(data.len(), 5000);
        assert!(data.capacity() <= 5001);
        assert!(read_limited(&[7u8; 5001][..], 5000).unwrap().is_none());
    }

    #[tokio::test]
    async fn emit_errors_map_to_503_413_and_500() {
        let s = start(config(), MockEmit::default()).await;
        *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::Overflow("total_limit_size".into()));
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.text().contains("buffer is full"), "{}", r.text());
        *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::Storage("disk full".into()));
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.text().contains("disk full"));
        *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::Unavailable("no quorum".into()));
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::TooLarge("too big".into()));
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        *s.mock.fail_with.lock().unwrap() = None;
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn response_waits_for_emit_and_shutdown_lets_it_finish() {
        let gate = Arc::new(Semaphore::new(0));
        let s = start(
            config(),
            MockEmit {
                hold: Some(gate.clone()),
                ..MockEmit::default()
            },
        )
        .await;
        let addr = s.addr;
        let request = tokio::spawn(async move { post(addr, "/t", &[JSON], r#"{"a":1}"#).await });
        while s.mock.entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!request.is_finished(), "responded before emit completed");

        // Shutdown now: no new connections, but the request in progress completes.
        s.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !s.task.is_finished(),
            "run returned with a request in progress"
        );
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());

        gate.add_permits(1);
        let r = tokio::time::timeout(Duration::from_secs(5), request)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(s.mock.batches().len(), 1);
        tokio::time::timeout(Duration::from_secs(5), s.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_idle_keepalive_connections() {
        let s = start(config(), MockEmit::default()).await;
        let mut conn = connect(s.addr).await;
        let r = send(&mut conn, Method::POST, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
        s.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), s.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn headers_and_remote_addr_fields() {
        let mut cfg = config();
        cfg.add_http_headers = true;
        cfg.add_remote_addr = true;
        let s = start(cfg, MockEmit::default()).await;
        let r = post(
            s.addr,
            "/h",
            &[JSON, ("x-request-id", "r-1"), ("user-agent", "probe/1")],
            r#"[{"a":1},{"a":2}]"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let ev = events(&s.mock.batches()[0]);
        for (_, rec) in &ev {
            assert_eq!(rec["HTTP_X_REQUEST_ID"], "r-1");
            assert_eq!(rec["HTTP_USER_AGENT"], "probe/1");
            assert_eq!(rec["HTTP_CONTENT_TYPE"], "application/json");
            assert_eq!(rec["REMOTE_ADDR"], "127.0.0.1");
        }
        let r = post(
            s.addr,
            "/h",
            &[JSON, ("x-forwarded-for", "10.1.2.3, 10.0.0.1")],
            r#"{"a":1}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let ev = events(&s.mock.batches()[1]);
        assert_eq!(ev[0].1["REMOTE_ADDR"], "10.1.2.3");

        // Without the options no field is added (and a msgpack map passes through untouched).
        let s2 = start(config(), MockEmit::default()).await;
        post(
            s2.addr,
            "/h",
            &[JSON, ("x-request-id", "r-1")],
            r#"{"a":1}"#,
        )
        .await;
        assert_eq!(
            events(&s2.mock.batches()[0])[0].1,
            serde_json::json!({"a": 1})
        );
    }

    #[tokio::test]
    async fn routes_methods_and_response_kinds() {
        let s = start(config(), MockEmit::default()).await;
        let mut conn = connect(s.addr).await;
        let r = send(&mut conn, Method::GET, "/t", &[], "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers[header::ALLOW], "POST");
        let r = send(&mut conn, Method::POST, "/", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = send(
            &mut conn,
            Method::POST,
            "/t",
            &[("content-type", "multipart/form-data; boundary=x")],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r = send(&mut conn, Method::POST, "/t", &[JSON], "[]").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(s.mock.batches().is_empty(), "an empty batch is not emitted");

        let mut cfg = config();
        cfg.use_204_response = true;
        let s = start(cfg, MockEmit::default()).await;
        assert_eq!(
            post(s.addr, "/t", &[JSON], "{}").await.status,
            StatusCode::NO_CONTENT
        );

        let mut cfg = config();
        cfg.respond_with_empty_img = true;
        let s = start(cfg, MockEmit::default()).await;
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[header::CONTENT_TYPE], "image/gif");
        assert!(r.body.starts_with(b"GIF89a\x01\x00\x01\x00"));
    }

    #[tokio::test]
    async fn cors_allow_origins() {
        let mut cfg = config();
        cfg.cors_allow_origins = vec!["http://ok.example".into(), "https://*.example.org".into()];
        let s = start(cfg, MockEmit::default()).await;
        let r = post(s.addr, "/t", &[JSON, ("origin", "http://ok.example")], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://ok.example"
        );
        let r = post(
            s.addr,
            "/t",
            &[JSON, ("origin", "https://a.example.org")],
            "{}",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = post(
            s.addr,
            "/t",
            &[JSON, ("origin", "http://evil.example")],
            "{}",
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = post(s.addr, "/t", &[JSON], "{}").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let mut conn = connect(s.addr).await;
        let r = send(
            &mut conn,
            Method::OPTIONS,
            "/t",
            &[
                ("origin", "http://ok.example"),
                ("access-control-request-headers", "content-type"),
            ],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(s.mock.batches().len(), 2);
    }

    #[tokio::test]
    async fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut cfg = config();
        cfg.keepalive_timeout = Duration::from_millis(200);
        let s = start(cfg, MockEmit::default()).await;
        let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let req = "POST /t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Kept alive for a while, then closed by the server.
        let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    }

    /// Send raw bytes (ignoring a write cut short by the server) and read the whole reply.
    async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(request).await;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    reply.extend_from_slice(&buf[..n]);
                    if reply.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(_) => panic!("no reply within 5 s"),
            }
        }
        String::from_utf8_lossy(&reply).into_owned()
    }
}
