//! `<parse> @type cri`: Kubernetes CRI container log lines, `<time> <stream> <P|F> <log>`.
//! A `P` (partial) line is held and joined with the following lines of the file up to the
//! next `F` (full) line, which completes the event (the runtime splits long lines this way).
//! The record is `{stream, logtag, message}` (the message key is `message_key`, default
//! `message`); the time is the line's RFC 3339 time.
//!
//! Owns only that line format and the joining; the caller keeps a pending line's position
//! uncommitted (see [`super::Outcome::Pending`]).

use super::common::{Fields, Value};
use crate::config::diag::Diag;
use crate::config::section::Section;

#[derive(Debug, Clone)]
pub struct CriParams {
    pub message_key: String,
    /// Join `P` lines with the following ones (default true); false: every line is an event.
    pub merge_partial: bool,
}

pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> CriParams {
    CriParams {
        message_key: sec
            .string("message_key")
            .unwrap_or_else(|| "message".into()),
        merge_partial: !sec.bool(d, "keep_partial_lines", false),
    }
}

/// What one CRI line became.
pub enum CriLine {
    /// A whole event: its fields and its time text.
    Complete(Fields, String),
    /// A partial line, held in `partial`.
    Pending,
    Unmatched,
}

/// Parse one line; `partial` holds the joined text of earlier `P` lines of the same file.
pub fn parse(p: &CriParams, line: &[u8], partial: &mut Vec<u8>) -> CriLine {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return CriLine::Unmatched;
    };
    let log = parts.next().unwrap_or_default();
    let (Ok(time), Ok(stream), Ok(tag)) = (
        std::str::from_utf8(time),
        std::str::from_utf8(stream),
        std::str::from_utf8(tag),
    ) else {
        return CriLine::Unmatched;
    };
    if !matches!(stream, "stdout" | "stderr") {
        return CriLine::Unmatched;
    }
    let is_partial = tag.split(':').next() == Some("P");
    if p.merge_partial && is_partial {
        partial.extend_from_slice(log);
        return CriLine::Pending;
    }
    let message = if partial.is_empty() {
        String::from_utf8_lossy(log).into_owned()
    } else {
        partial.extend_from_slice(log);
        let joined = String::from_utf8_lossy(partial).into_owned();
        partial.clear();
        joined
    };
    let fields = vec![
        ("stream".to_string(), Value::from(stream)),
        (
            "logtag".to_string(),
            Value::from(if p.merge_partial { "F" } else { tag }),
        ),
        (p.message_key.clone(), Value::from(message)),
    ];
    CriLine::Complete(fields, time.to_string())
}
