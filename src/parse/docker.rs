//! `<parse> @type docker`: Docker's json-file log driver, one
//! `{"log":"text\n","stream":"stdout","time":"<RFC 3339>"}` object per line (Fluent Bit's
//! `docker` parser). Docker splits lines longer than 16 KiB into several objects of which only
//! the last ends in `\n`: those are joined into one event. The record is `{log, stream}` plus
//! any other fields of the last object (`attrs`...), `log` without its trailing newline; the
//! time is the object's `time`.
//!
//! Owns only that format and the joining; the caller keeps a pending line's position
//! uncommitted (see [`super::Outcome::Pending`]).

use super::common::{from_json, Fields, Value};

/// What one line became.
pub enum DockerLine {
    /// A whole event: its fields and its time text (if any).
    Complete(Fields, Option<String>),
    /// A partial line, held in `partial`.
    Pending,
    Unmatched,
}

/// Parse one line; `partial` holds the joined `log` text of earlier partial objects.
pub fn parse(line: &[u8], partial: &mut Vec<u8>) -> DockerLine {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(line)
    else {
        return DockerLine::Unmatched;
    };
    let Some(serde_json::Value::String(log)) = map.get("log") else {
        return DockerLine::Unmatched;
    };
    if !log.ends_with('\n') {
        partial.extend_from_slice(log.as_bytes());
        return DockerLine::Pending;
    }
    let text = &log[..log.len() - 1];
    let message = if partial.is_empty() {
        text.to_string()
    } else {
        partial.extend_from_slice(text.as_bytes());
        let joined = String::from_utf8_lossy(partial).into_owned();
        partial.clear();
        joined
    };
    let mut time = None;
    let mut fields: Fields = vec![("log".to_string(), Value::from(message))];
    for (k, v) in map {
        match (k.as_str(), v) {
            ("log", _) => {}
            ("time", serde_json::Value::String(t)) => time = Some(t),
            (_, v) => fields.push((k, from_json(v))),
        }
    }
    DockerLine::Complete(fields, time)
}
