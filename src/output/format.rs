//! Line formatting shared by the `stdout` and `file` outputs.
//!
//! Owns the conversion of one msgpack record into compact JSON (key order kept, binary as
//! UTF-8-lossy text, ext types mapped to something JSON can carry), event-time formatting with
//! strftime patterns in local time, UTC or a fixed offset, and the three line layouts lograft
//! writes: Fluentd's stdout line (`time tag: json`), Fluentd's out_file line
//! (`time<TAB>tag<TAB>json`) and a bare record-JSON line.
//!
//! It must not do I/O: callers format a whole chunk into memory and write it themselves.
//!
//! Mapping of msgpack values to JSON:
//! - nil, bool, integers, strings, arrays and maps map to their JSON counterparts; a string that
//!   is not UTF-8 and a binary value become UTF-8-lossy strings; a non-finite float becomes
//!   `null`.
//! - Map keys that are not strings or binaries become the JSON text of the key (`1` → `"1"`).
//! - Fluentd's EventTime (ext type 0, 8 bytes) and the msgpack timestamp (ext type -1) become
//!   float seconds since the epoch; any other ext becomes `{"type": N, "data": "<base64>"}`.

use crate::event::{EntryError, EntryIter, EventTime};
use crate::msgpack::{is_raw, Cursor, MsgpackError};
use crate::output::OutputError;
use crate::record_depth::depth_cost;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};
use std::fmt::Write as _;

/// Fluentd's stdout time layout (`2024-01-01 00:00:00.000000000 +0000`).
pub const STDOUT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S.%9f %z";
/// Fluentd's out_file time layout (`2024-01-01T00:00:00+0000`).
pub const OUT_FILE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%z";

/// Records nested deeper than this are refused (bounds recursion while decoding and writing);
/// inputs refuse them before the ack, so a chunk should never hold one.
use crate::record_depth::MAX_RECORD_DEPTH;

/// Why a chunk's bytes could not be formatted. Such a chunk will never format: the output
/// reports it as [`OutputError::Unrecoverable`].
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("malformed entry stream: {0}")]
    Entries(#[from] EntryError),
    #[error("record is not decodable msgpack: {0}")]
    Record(String),
    #[error("invalid strftime pattern {0:?}")]
    TimePattern(String),
    #[error("time {secs}.{nanos:09} cannot be formatted with {pattern:?}")]
    TimeValue {
        secs: u32,
        nanos: u32,
        pattern: String,
    },
}

impl From<FormatError> for OutputError {
    fn from(e: FormatError) -> Self {
        OutputError::Unrecoverable(e.to_string())
    }
}

/// The time zone used to render event times and path placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The host's local time zone (Fluentd's default).
    Local,
    Utc,
    Fixed(FixedOffset),
}

/// The calendar time of `t` in `tz`.
pub fn event_datetime<Tz: TimeZone>(t: EventTime, tz: &Tz) -> DateTime<Tz> {
    let utc = Utc
        .timestamp_opt(t.secs as i64, t.nanos.min(999_999_999))
        .single()
        .unwrap_or_default();
    utc.with_timezone(tz)
}

/// A parsed strftime pattern bound to a zone.
#[derive(Debug, Clone)]
pub struct TimeFormatter {
    pattern: String,
    items: Vec<Item<'static>>,
    zone: Zone,
}

impl TimeFormatter {
    /// Parse `pattern` (chrono strftime syntax; `%9f` for nanoseconds).
    pub fn new(pattern: &str, zone: Zone) -> Result<Self, FormatError> {
        let items = StrftimeItems::new(pattern)
            .parse_to_owned()
            .map_err(|_| FormatError::TimePattern(pattern.to_string()))?;
        Ok(TimeFormatter {
            pattern: pattern.to_string(),
            items,
            zone,
        })
    }

    /// Append `t` rendered with this pattern to `out`.
    pub fn write(&self, out: &mut String, t: EventTime) -> Result<(), FormatError> {
        let items = self.items.iter();
        let res = match self.zone {
            Zone::Local => write!(
                out,
                "{}",
                event_datetime(t, &Local).format_with_items(items)
            ),
            Zone::Utc => write!(out, "{}", event_datetime(t, &Utc).format_with_items(items)),
            Zone::Fixed(off) => write!(out, "{}", event_datetime(t, &off).format_with_items(items)),
        };
        res.map_err(|_| FormatError::TimeValue {
            secs: t.secs,
            nanos: t.nanos,
            pattern: self.pattern.clone(),
        })
    }

    pub fn format(&self, t: EventTime) -> Result<String, FormatError> {
        let mut s = String::with_capacity(32);
        self.write(&mut s, t)?;
        Ok(s)
    }
}

/// Append one msgpack record (any value, normally a map) to `out` as compact JSON, read straight
/// from its bytes (no decoded tree). Values nested deeper than [`MAX_RECORD_DEPTH`] allows are an
/// error, as are malformed bytes; on error `out` may hold part of the record.
pub fn write_record_json(out: &mut Vec<u8>, record: &[u8]) -> Result<(), FormatError> {
    let mut cursor = Cursor::new(record);
    write_json(out, &mut cursor, MAX_RECORD_DEPTH).map_err(|e| FormatError::Record(e.to_string()))
}

/// Why a record could not be transcoded.
#[derive(Debug, thiserror::Error)]
enum TranscodeError {
    #[error(transparent)]
    Msgpack(#[from] MsgpackError),
    #[error("record nested deeper than the limit ({MAX_RECORD_DEPTH}) at byte {0}")]
    TooDeep(usize),
}

/// Transcode the value at `c` to JSON; `budget` is what is left of the depth budget (charged
/// per value as [`depth_cost`] says, the children of a container get 2 less).
fn write_json(out: &mut Vec<u8>, c: &mut Cursor, budget: usize) -> Result<(), TranscodeError> {
    let m = c.peek()?;
    if depth_cost(m) > budget {
        return Err(TranscodeError::TooDeep(c.pos()));
    }
    if let Some(n) = c.map_len()? {
        out.push(b'{');
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            write_json_key(out, c, budget - 2)?;
            out.push(b':');
            write_json(out, c, budget - 2)?;
        }
        out.push(b'}');
    } else if let Some(n) = c.array_len()? {
        out.push(b'[');
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            write_json(out, c, budget - 2)?;
        }
        out.push(b']');
    } else if let Some(raw) = c.raw_bytes()? {
        write_json_str(out, raw);
    } else if let Some(v) = c.uint()? {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    } else if let Some(v) = c.neg_int()? {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    } else if m == 0xca {
        // f32 keeps its own shortest form (1.1, not 1.100000023841858).
        let b = c.bytes(5)?;
        write_json_float(out, f32::from_be_bytes([b[1], b[2], b[3], b[4]]));
    } else if let Some(v) = c.float()? {
        write_json_float(out, v);
    } else if let Some(b) = c.bool()? {
        out.extend_from_slice(if b { b"true" } else { b"false" });
    } else if c.nil()? {
        out.extend_from_slice(b"null");
    } else if let Some((kind, len)) = c.ext_header()? {
        let data = c.bytes(len as usize)?;
        match ext_time_seconds(kind, data) {
            Some(secs) => write_json_float(out, secs),
            None => {
                use base64::Engine;
                out.extend_from_slice(b"{\"type\":");
                out.extend_from_slice(itoa::Buffer::new().format(kind).as_bytes());
                out.extend_from_slice(b",\"data\":\"");
                let text = base64::engine::general_purpose::STANDARD.encode(data);
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
    } else {
        // Every marker but 0xc1 is one of the kinds above.
        return Err(MsgpackError::BadMarker {
            marker: m,
            offset: c.pos(),
        }
        .into());
    }
    Ok(())
}
/// A map key as a JSON string: str and bin as text, any other value as its JSON text
/// (`1` → `"1"`).
fn write_json_key(out: &mut Vec<u8>, c: &mut Cursor, budget: usize) -> Result<(), TranscodeError> {
    let m = c.peek()?;
    if is_raw(m) {
        return write_json(out, c, budget);
    }
    let mut text = Vec::new();
    write_json(&mut text, c, budget)?;
    // The transcoder writes UTF-8 only.
    write_json_str(out, &text);
    Ok(())
}

/// A str or bin as a JSON string; bytes that are not UTF-8 are replaced (U+FFFD).
fn write_json_str(out: &mut Vec<u8>, raw: &[u8]) {
    match std::str::from_utf8(raw) {
        Ok(text) => write_escaped(out, text.as_bytes()),
        Err(_) => write_escaped(out, String::from_utf8_lossy(raw).as_bytes()),
    }
}

/// `text` (valid UTF-8) as a quoted JSON string, escaped as serde_json escapes it: `"` and `\`
/// with a backslash, `\b \f \n \r \t` short, other control characters as `\u00XX`, all else
/// as it is. Hand-written rather than through serde_json because it runs for every string of
/// every record an output writes: runs of bytes that need no escape are found 8 at a time
/// and copied whole (serde_json looks at each byte, a fifth of the leader's CPU in a cluster
/// benchmark went to it).
fn write_escaped(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        if let Some(word) = text.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if !word_needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = text[i];
        if needs_escape(b) {
            out.extend_from_slice(&text[copied..i]);
            write_escape(out, b);
            copied = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&text[copied..]);
    out.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the 8 bytes of `w` needs an escape (exact: the bit tricks below have no
/// false answers as a whole-word test).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    // A byte below 0x20 (bytes ≥ 0x80 have the high bit and never count).
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    below_space || has_zero(w ^ (ONES * b'"' as u64)) || has_zero(w ^ (ONES * b'\\' as u64))
}

fn write_escape(out: &mut Vec<u8>, b: u8) {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

/// A float as serde_json writes it (shortest round-trip digits); not finite → `null`.
fn write_json_float<F: ryu::Float + Into<f64>>(out: &mut Vec<u8>, v: F) {
    if v.into().is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// [`write_record_json`] into a new string.
#[cfg(test)]
pub fn record_to_json(record: &[u8]) -> Result<String, FormatError> {
    let mut out = Vec::with_capacity(record.len() + 16);
    write_record_json(&mut out, record)?;
    // serde_json only writes UTF-8.
    String::from_utf8(out).map_err(|e| FormatError::Record(e.to_string()))
}

/// Which line layout a formatter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineLayout {
    /// `TIME TAG: JSON` (Fluentd's out_stdout).
    Stdout,
    /// `TIME<TAB>TAG<TAB>JSON` (Fluentd's out_file).
    OutFile,
    /// `JSON` (the record only).
    Json,
}

/// Formats entry streams into newline-terminated lines.
#[derive(Debug, Clone)]
pub struct LineFormatter {
    layout: LineLayout,
    time: TimeFormatter,
}

impl LineFormatter {
    /// Fluentd's stdout line, time as `%Y-%m-%d %H:%M:%S.%9f %z`.
    pub fn stdout(zone: Zone) -> Self {
        Self::with_pattern(LineLayout::Stdout, STDOUT_TIME_FORMAT, zone)
    }

    /// Fluentd's out_file line, time as `%Y-%m-%dT%H:%M:%S%z`.
    pub fn out_file(zone: Zone) -> Self {
        Self::with_pattern(LineLayout::OutFile, OUT_FILE_TIME_FORMAT, zone)
    }

    /// The record as JSON, one per line.
    pub fn json() -> Self {
        Self::with_pattern(LineLayout::Json, OUT_FILE_TIME_FORMAT, Zone::Utc)
    }

    fn with_pattern(layout: LineLayout, pattern: &'static str, zone: Zone) -> Self {
        let time = match TimeFormatter::new(pattern, zone) {
            Ok(t) => t,
            // The built-in patterns are valid; reaching this is a bug in this module.
            Err(e) => panic!("built-in time pattern rejected: {e}"),
        };
        LineFormatter { layout, time }
    }

    /// Append one line per entry of `entries` (a PackedForward stream) to `out`; returns the
    /// number of lines written. On error `out` may hold the lines formatted so far.
    pub fn write_entries(
        &self,
        out: &mut Vec<u8>,
        tag: &str,
        entries: &[u8],
    ) -> Result<u64, FormatError> {
        let mut lines = 0u64;
        // out_file times have second precision: consecutive events mostly share the text.
        let mut cached: Option<(EventTime, String)> = None;
        let mut time_text = String::new();
        for entry in EntryIter::new(entries) {
            let entry = entry?;
            match self.layout {
                LineLayout::Json => {}
                LineLayout::Stdout | LineLayout::OutFile => {
                    let key = match self.layout {
                        LineLayout::OutFile => EventTime {
                            secs: entry.time.secs,
                            nanos: 0,
                        },
                        _ => entry.time,
                    };
                    match &cached {
                        Some((t, text)) if *t == key => time_text.clone_from(text),
                        _ => {
                            time_text.clear();
                            self.time.write(&mut time_text, entry.time)?;
                            cached = Some((key, time_text.clone()));
                        }
                    }
                    out.extend_from_slice(time_text.as_bytes());
                    if self.layout == LineLayout::Stdout {
                        out.push(b' ');
                        out.extend_from_slice(tag.as_bytes());
                        out.extend_from_slice(b": ");
                    } else {
                        out.push(b'\t');
                        out.extend_from_slice(tag.as_bytes());
                        out.push(b'\t');
                    }
                }
            }
            write_record_json(out, entry.record)?;
            out.push(b'\n');
            lines += 1;
        }
        Ok(lines)
    }
}

/// Float seconds for Fluentd's EventTime (ext 0, 8 bytes) and the msgpack timestamp (ext -1).
fn ext_time_seconds(kind: i8, data: &[u8]) -> Option<f64> {
    let u32_at = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    match (kind, data.len()) {
        (0, 8) => Some(u32_at(0) as f64 + u32_at(4) as f64 / 1e9),
        (-1, 4) => Some(u32_at(0) as f64),
        (-1, 8) => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            let nanos = (v >> 34) as f64;
            let secs = (v & 0x3_ffff_ffff) as f64;
            Some(secs + nanos / 1e9)
        }
        (-1, 12) => {
            let nanos = u32_at(0) as f64;
            let secs = i64::from_be_bytes(data[4..12].try_into().ok()?) as f64;
            Some(secs + nanos / 1e9)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn entries(items: &[(EventTime, Vec<u8>)]) -> Vec<u8> {
        let mut b = BytesMut::new();
        for (t, rec) in items {
            crate::event::write_entry(&mut b, *t, rec);
        }
        b.to_vec()
    }

    fn msgpack(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    const T: EventTime = EventTime {
        secs: 1_704_067_200, // 2024-01-01T00:00:00Z
        nanos: 5,
    };

    #[test]
    fn record_json_keeps_key_order_and_maps_odd_values() {
        use rmpv::Value as V;
        let rec = V::Map(vec![
            (V::from("z"), V::from(1)),
            (V::from("a"), V::Binary(vec![b'h', b'i', 0xff])),
            (V::from(7), V::Nil),
            (V::from("f"), V::F64(f64::NAN)),
            (V::from("big"), V::from(u64::MAX)),
            (V::from("neg"), V::from(-3)),
            (
                V::from("t"),
                V::Ext(0, vec![0, 0, 0, 10, 0x1d, 0xcd, 0x65, 0x00]),
            ),
            (V::from("x"), V::Ext(5, vec![1, 2, 3])),
            (
                V::from("arr"),
                V::Array(vec![V::Boolean(true), V::from("s")]),
            ),
        ]);
        let json = record_to_json(&msgpack(&rec)).unwrap();
        assert_eq!(
            json,
            r#"{"z":1,"a":"hi�","7":null,"f":null,"big":18446744073709551615,"neg":-3,"t":10.5,"x":{"type":5,"data":"AQID"},"arr":[true,"s"]}"#
        );
    }

    #[test]
    fn floats_keep_their_width_and_odd_keys_become_their_json_text() {
        use rmpv::Value as V;
        let rec = V::Map(vec![
            (V::from("f32"), V::F32(1.1)),
            (V::from("f64"), V::F64(1.1)),
            (V::from("whole"), V::F64(10.0)),
            (V::from("inf"), V::F32(f32::INFINITY)),
            (V::Array(vec![V::from(1), V::from("q\"")]), V::from(-129)),
            (V::F64(0.5), V::from(i64::MIN)),
            (V::Binary(vec![b'k']), V::from("\u{1}\n\u{e9}")),
            (V::Ext(-1, vec![0, 0, 0, 7]), V::Ext(-1, vec![0, 0, 0, 7])),
        ]);
        assert_eq!(
            record_to_json(&msgpack(&rec)).unwrap(),
            r#"{"f32":1.1,"f64":1.1,"whole":10.0,"inf":null,"[1,\"q\\\"\"]":-129,"0.5":-9223372036854775808,"k":"\u0001\né","7.0":7.0}"#
        );
    }

    /// Records of nil, bool, integers, f64, strings (any text), arrays and maps with
    /// string keys: the JSON written parses (serde_json) to the same value.
    fn plain_value() -> impl proptest::strategy::Strategy<Value = rmpv::Value> {
        use proptest::prelude::*;
        use rmpv::Value as V;
        let leaf = prop_oneof![
            Just(V::Nil),
            any::<bool>().prop_map(V::Boolean),
            any::<i64>().prop_map(V::from),
            any::<u64>().prop_map(V::from),
            // Exactly representable in few digits: serde_json's default parser is exact there.
            any::<i16>().prop_map(|i| V::F64(i as f64 / 16.0)),
            ".*".prop_map(V::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(V::Array),
                proptest::collection::vec((".{0,6}", inner), 0..8).prop_map(|kv| {
                    V::Map(kv.into_iter().map(|(k, v)| (V::from(k), v)).collect())
                }),
            ]
        })
    }

    fn as_json(v: &rmpv::Value) -> serde_json::Value {
        use rmpv::Value as V;
        use serde_json::Value as J;
        match v {
            V::Nil => J::Null,
            V::Boolean(b) => J::Bool(*b),
            V::Integer(i) => match (i.as_i64(), i.as_u64()) {
                (Some(n), _) => J::from(n),
                (_, Some(n)) => J::from(n),
                _ => unreachable!("rmpv integers are i64 or u64"),
            },
            V::F64(f) => J::from(*f),
            V::String(s) => J::from(s.as_str().unwrap()),
            V::Array(items) => J::Array(items.iter().map(as_json).collect()),
            V::Map(kv) => J::Object(
                kv.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), as_json(v)))
                    .collect(),
            ),
            other => unreachable!("not generated: {other:?}"),
        }
    }

    proptest::proptest! {
        /// Strings are escaped byte for byte as serde_json escapes them (any bytes: controls,
        /// quotes, backslashes, multi-byte and invalid UTF-8, at every offset in a word).
        #[test]
        fn strings_are_escaped_as_serde_json_does(
            raw in proptest::collection::vec(
                proptest::prop_oneof![
                    0u8..0x20, proptest::strategy::Just(b'"'), proptest::strategy::Just(b'\\'),
                    0x20u8..0x7f, 0x7fu8..=0xff,
                ],
                0..40,
            )
        ) {
            let mut out = Vec::new();
            write_json_str(&mut out, &raw);
            let expected = serde_json::to_string(&String::from_utf8_lossy(&raw)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
        }

        #[test]
        fn transcoded_json_parses_to_the_same_value(v in plain_value()) {
            let json = record_to_json(&msgpack(&v)).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(parsed, as_json(&v), "{}", json);
        }
    }

    #[test]
    fn record_json_rejects_garbage_and_deep_nesting() {
        assert!(record_to_json(&[0xa5, b'a']).is_err());
        assert!(record_to_json(&[0x81, 0xa1]).is_err());
        let deep = vec![0x91; 1000];
        assert!(record_to_json(&deep).is_err());
    }

    #[test]
    fn stdout_and_out_file_lines_match_fluentd() {
        let rec = msgpack(&rmpv::Value::Map(vec![(
            rmpv::Value::from("k"),
            rmpv::Value::from("v"),
        )]));
        let stream = entries(&[(T, rec.clone()), (T, rec)]);

        let mut out = Vec::new();
        let n = LineFormatter::stdout(Zone::Utc)
            .write_entries(&mut out, "app.log", &stream)
            .unwrap();
        assert_eq!(n, 2);
        let line = "2024-01-01 00:00:00.000000005 +0000 app.log: {\"k\":\"v\"}\n";
        assert_eq!(String::from_utf8(out).unwrap(), line.repeat(2));

        let mut out = Vec::new();
        let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
        LineFormatter::out_file(Zone::Fixed(plus2))
            .write_entries(&mut out, "app.log", &stream)
            .unwrap();
        let line = "2024-01-01T02:00:00+0200\tapp.log\t{\"k\":\"v\"}\n";
        assert_eq!(String::from_utf8(out).unwrap(), line.repeat(2));

        let mut out = Vec::new();
        LineFormatter::json()
            .write_entries(&mut out, "app.log", &stream)
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"k\":\"v\"}\n".repeat(2));
    }

    #[test]
    fn malformed_entries_are_an_error() {
        let mut out = Vec::new();
        let err = LineFormatter::json()
            .write_entries(&mut out, "t", &[0x92, 0x01])
            .unwrap_err();
        assert!(matches!(err, FormatError::Entries(_)));
        assert!(matches!(
            OutputError::from(err),
            OutputError::Unrecoverable(_)
        ));
    }

    #[test]
    fn time_formatter_rejects_bad_patterns_and_formats_zones() {
        assert!(TimeFormatter::new("%Y%Q", Zone::Utc).is_err());
        let f = TimeFormatter::new("%Y%m%d%H", Zone::Utc).unwrap();
        assert_eq!(f.format(T).unwrap(), "2024010100");
        let minus5 = FixedOffset::west_opt(5 * 3600).unwrap();
        let f = TimeFormatter::new("%Y%m%d%H", Zone::Fixed(minus5)).unwrap();
        assert_eq!(f.format(T).unwrap(), "2023123119");
    }
}
