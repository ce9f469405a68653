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
use crate::output::OutputError;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};
use rmpv::ValueRef;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
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

/// Decode one msgpack record (any value, normally a map) and append it to `out` as compact JSON.
pub fn write_record_json(out: &mut Vec<u8>, record: &[u8]) -> Result<(), FormatError> {
    let mut rd = record;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rd, MAX_RECORD_DEPTH)
        .map_err(|e| FormatError::Record(e.to_string()))?;
    serde_json::to_writer(&mut *out, &JsonValue(&value))
        .map_err(|e| FormatError::Record(e.to_string()))
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

/// Serializes a msgpack value as JSON (see the module doc for the mapping).
struct JsonValue<'v, 'a>(&'v ValueRef<'a>);

/// Serializes a msgpack value used as a map key as a JSON string.
struct JsonKey<'v, 'a>(&'v ValueRef<'a>);

impl Serialize for JsonValue<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ValueRef::Nil => s.serialize_unit(),
            ValueRef::Boolean(b) => s.serialize_bool(*b),
            ValueRef::Integer(i) => {
                if let Some(v) = i.as_i64() {
                    s.serialize_i64(v)
                } else if let Some(v) = i.as_u64() {
                    s.serialize_u64(v)
                } else {
                    s.serialize_unit()
                }
            }
            ValueRef::F32(f) => s.serialize_f32(*f),
            ValueRef::F64(f) => s.serialize_f64(*f),
            ValueRef::String(st) => match st.as_str() {
                Some(text) => s.serialize_str(text),
                None => s.serialize_str(&String::from_utf8_lossy(st.as_bytes())),
            },
            ValueRef::Binary(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            ValueRef::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsonValue(item))?;
                }
                seq.end()
            }
            ValueRef::Map(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(&JsonKey(k), &JsonValue(v))?;
                }
                map.end()
            }
            ValueRef::Ext(kind, data) => match ext_time_seconds(*kind, data) {
                Some(secs) => s.serialize_f64(secs),
                None => {
                    use base64::Engine;
                    let mut map = s.serialize_map(Some(2))?;
                    map.serialize_entry("type", kind)?;
                    map.serialize_entry(
                        "data",
                        &base64::engine::general_purpose::STANDARD.encode(data),
                    )?;
                    map.end()
                }
            },
        }
    }
}

impl Serialize for JsonKey<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ValueRef::String(st) => match st.as_str() {
                Some(text) => s.serialize_str(text),
                None => s.serialize_str(&String::from_utf8_lossy(st.as_bytes())),
            },
            ValueRef::Binary(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            other => {
                let text =
                    serde_json::to_string(&JsonValue(other)).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
        }
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
