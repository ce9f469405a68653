//! Body decoding of the http input: one request (query string, Content-Type, body) becomes one
//! [`EventBatch`]. JSON (object or array), msgpack (map or array; a lone map is passed through
//! as it came), ndjson, or a `json=`/`msgpack=`/`ndjson=` form or query field; `?time=` and
//! per-record `time` keys set the event times.
//!
//! Blocking (CPU-bound) code: the server runs it on the blocking pool for large or compressed
//! bodies. It must not emit anything.

use super::compression::decompress;
use super::form::parse_form;
use super::responses::Reject;
use crate::event::{write_entry, EventBatch, EventTime};
use crate::msgpack::{is_map, skip_value};
use crate::record_depth::MAX_RECORD_DEPTH;
use bytes::BytesMut;
use hyper::StatusCode;
use rmpv::Value;

/// What `decode_request` needs from the request besides the body.
pub(super) struct RequestMeta {
    pub(super) tag: String,
    pub(super) query: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) extra_fields: Vec<(String, String)>,
    pub(super) limit: usize,
}

/// The body's format, as chosen by Content-Type or by the form/query field name.
enum Payload {
    Json(Vec<u8>),
    Msgpack(Vec<u8>),
    Ndjson(Vec<u8>),
}

/// Turn one request into one batch (possibly empty).
pub(super) fn decode_request(meta: &RequestMeta, raw_body: &[u8]) -> Result<EventBatch, Reject> {
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
        segments: Vec::new(),
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
            if passthrough_ok && is_map(bytes[0]) {
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
        Value::F32(f) => EventTime::try_from_f64(*f as f64),
        Value::F64(f) => EventTime::try_from_f64(*f),
        Value::Ext(0, data) if data.len() == 8 => Some(EventTime {
            secs: u32::from_be_bytes(data[0..4].try_into().ok()?),
            nanos: u32::from_be_bytes(data[4..8].try_into().ok()?),
        }),
        _ => None,
    }
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
    EventTime::try_from_f64(f)
        .ok_or_else(|| Reject::bad_request(format!("time parameter {text:?} out of range")))
}
