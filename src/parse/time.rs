//! Reading event times out of parsed fields: `time_format` (Ruby strptime directives, mapped
//! onto chrono's), `time_type` (`string`, `float`, `unixtime`), and RFC 3339 (CRI, Docker).
//! Without a `time_format`, a string time is tried as RFC 3339, then as a number of seconds.
//!
//! Owns only time conversion; it must not know formats or records.

use crate::event::EventTime;
use chrono::{DateTime, NaiveDateTime, Utc};
use rmpv::Value;

/// `time_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeType {
    String,
    Float,
    Unixtime,
}

#[derive(Debug, Clone)]
pub struct TimeParser {
    /// The `time_format` translated to chrono's syntax.
    format: Option<String>,
    /// Whether the format carries a UTC offset (else the time is taken as UTC).
    has_zone: bool,
    time_type: TimeType,
}

impl TimeParser {
    pub fn new(format: Option<&str>, time_type: TimeType) -> Self {
        let format = format.map(ruby_to_chrono);
        TimeParser {
            has_zone: format
                .as_deref()
                .is_some_and(|f| f.contains("%z") || f.contains("%:z") || f.contains("%Z")),
            format,
            time_type,
        }
    }

    /// The time in a field value.
    pub fn parse_value(&self, v: &Value) -> Option<EventTime> {
        match v {
            Value::String(s) => self.parse_str(s.as_str()?),
            Value::Integer(i) => i.as_f64().and_then(EventTime::try_from_f64),
            Value::F64(f) => EventTime::try_from_f64(*f),
            Value::F32(f) => EventTime::try_from_f64(*f as f64),
            _ => None,
        }
    }

    pub fn parse_str(&self, s: &str) -> Option<EventTime> {
        match self.time_type {
            TimeType::Float | TimeType::Unixtime => {
                return s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(EventTime::try_from_f64)
            }
            TimeType::String => {}
        }
        if let Some(f) = &self.format {
            if self.has_zone {
                return DateTime::parse_from_str(s, f)
                    .ok()
                    .and_then(|t| to_event(t.timestamp(), t.timestamp_subsec_nanos()));
            }
            return NaiveDateTime::parse_from_str(s, f)
                .ok()
                .map(|t| t.and_utc())
                .and_then(|t| to_event(t.timestamp(), t.timestamp_subsec_nanos()));
        }
        self.parse_rfc3339(s).or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .and_then(EventTime::try_from_f64)
        })
    }

    /// An RFC 3339 time (`2024-01-02T03:04:05.123456789Z`).
    pub fn parse_rfc3339(&self, s: &str) -> Option<EventTime> {
        let t: DateTime<Utc> = DateTime::parse_from_rfc3339(s.trim()).ok()?.into();
        to_event(t.timestamp(), t.timestamp_subsec_nanos())
    }
}

fn to_event(secs: i64, nanos: u32) -> Option<EventTime> {
    Some(EventTime {
        secs: u32::try_from(secs).ok()?,
        nanos,
    })
}

/// Ruby strptime → chrono: `%N`/`%3N`/`%6N`/`%9N` (fraction digits) and `%L` (milliseconds)
/// become chrono's `%f`-family; the rest is shared.
fn ruby_to_chrono(f: &str) -> String {
    let mut out = String::with_capacity(f.len());
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match chars.next() {
            Some('N') => out.push_str("%f"),
            Some('L') => out.push_str("%3f"),
            Some(other) => {
                out.push('%');
                out.push_str(&digits);
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}
