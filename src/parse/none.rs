//! `<parse> @type none`: the whole line is the record's `message_key` field (default
//! `message`), the event time is "now". Written straight into msgpack, with no intermediate
//! record: this is the tail input's fast path. Owns only that.

use crate::config::section::Section;
use crate::event::EventTime;
use crate::msgpack;
use bytes::BytesMut;

#[derive(Debug, Clone)]
pub struct NoneParams {
    pub message_key: String,
}

impl Default for NoneParams {
    fn default() -> Self {
        NoneParams {
            message_key: "message".into(),
        }
    }
}

pub(crate) fn build(sec: &mut Section<'_>) -> NoneParams {
    NoneParams {
        message_key: sec
            .string("message_key")
            .unwrap_or_else(|| "message".into()),
    }
}

/// Append `[now, {message_key: line, extra...}]` (the line's bytes kept as they are).
pub fn write(
    p: &NoneParams,
    line: &[u8],
    now: EventTime,
    extra: Option<(&str, &str)>,
    out: &mut BytesMut,
) {
    out.reserve(line.len() + p.message_key.len() + 24);
    msgpack::write_array_header(out, 2);
    now.write_msgpack(out);
    msgpack::write_map_header(out, 1 + extra.is_some() as u32);
    msgpack::write_str(out, &p.message_key);
    msgpack::write_str_bytes(out, line);
    if let Some((k, v)) = extra {
        msgpack::write_str(out, k);
        msgpack::write_str(out, v);
    }
}
