//! The `<parse>` parameters every format shares and what they do to a parsed record:
//! `time_key`, `time_format`, `time_type`, `keep_time_key`, `types`, `null_value_pattern`,
//! `null_empty_string`; and writing the finished `[time, record]` entry.
//!
//! Owns the field representation ([`Fields`]) and those rules; it must not know any line
//! format (that is each format's file).

use super::time::{TimeParser, TimeType};
use crate::config::diag::Diag;
use crate::config::section::Section;
use crate::event::EventTime;
use bytes::{BufMut, BytesMut};
use regex::Regex;

pub use rmpv::Value;

/// A parsed record: fields in order.
pub type Fields = Vec<(String, Value)>;

/// A `types` conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeSpec {
    String,
    Integer,
    Float,
    Bool,
    /// `time` (optionally `time:FORMAT`): converted to a float of seconds.
    Time(Option<String>),
    /// `array` (optionally `array:SEPARATOR`, default `,`).
    Array(String),
}

/// Parameters shared by every format.
#[derive(Debug, Clone)]
pub struct CommonParams {
    /// Field holding the event time; None: the time is "now" (`none`).
    pub time_key: Option<String>,
    pub time_format: Option<String>,
    pub time_type: TimeType,
    pub keep_time_key: bool,
    pub types: Vec<(String, TypeSpec)>,
    pub null_value_pattern: Option<Regex>,
    pub null_empty_string: bool,
}

impl Default for CommonParams {
    fn default() -> Self {
        CommonParams {
            time_key: None,
            time_format: None,
            time_type: TimeType::String,
            keep_time_key: false,
            types: Vec::new(),
            null_value_pattern: None,
            null_empty_string: false,
        }
    }
}

pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag, format: &str) -> CommonParams {
    let default_time_key = match format {
        "none" | "cri" | "docker" | "syslog" => None,
        _ => Some("time".to_string()),
    };
    let time_type = match sec.enumerated(d, "time_type", &["float", "unixtime", "string", "mixed"])
    {
        Some("float") => TimeType::Float,
        Some("unixtime") => TimeType::Unixtime,
        _ => TimeType::String,
    };
    let types = sec.typed(d, "types", parse_types).unwrap_or_default();
    let null_value_pattern = sec.typed(d, "null_value_pattern", |v| {
        Regex::new(v).map_err(|e| crate::config::value::ValueError::Invalid(e.to_string()))
    });
    let mut time_format = sec.string("time_format");
    // apache2 and nginx come with their time format.
    if time_format.is_none() && matches!(format, "apache2" | "nginx") {
        time_format = Some("%d/%b/%Y:%H:%M:%S %z".into());
    }
    CommonParams {
        time_key: sec.string("time_key").or(default_time_key),
        time_format,
        time_type,
        keep_time_key: sec.bool(d, "keep_time_key", false),
        types,
        null_value_pattern,
        null_empty_string: sec.bool(d, "null_empty_string", false),
    }
}

/// `types key:type,key2:type2` (Fluentd's syntax; `array:SEP`, `time:FORMAT`).
fn parse_types(v: &str) -> Result<Vec<(String, TypeSpec)>, crate::config::value::ValueError> {
    let err = |m: String| crate::config::value::ValueError::Invalid(m);
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.splitn(3, ':');
        let key = parts.next().unwrap_or_default().to_string();
        let ty = parts
            .next()
            .ok_or_else(|| err(format!("'{item}' has no type (key:type)")))?;
        let arg = parts.next();
        let spec = match ty {
            "string" => TypeSpec::String,
            "integer" | "int" => TypeSpec::Integer,
            "float" => TypeSpec::Float,
            "bool" => TypeSpec::Bool,
            "time" => TypeSpec::Time(arg.map(str::to_string)),
            "array" => TypeSpec::Array(arg.unwrap_or(",").to_string()),
            other => {
                return Err(err(format!(
                    "unknown type '{other}' for '{key}' (string, integer, float, bool, time, array)"
                )))
            }
        };
        out.push((key, spec));
    }
    Ok(out)
}

/// Take the event time from the `time_key` field (removing it unless `keep_time_key`).
/// None when there is no such field or it cannot be read (the caller uses "now").
pub fn take_time(c: &CommonParams, parser: &TimeParser, fields: &mut Fields) -> Option<EventTime> {
    let key = c.time_key.as_deref()?;
    let at = fields.iter().position(|(k, _)| k == key)?;
    let time = parser.parse_value(&fields[at].1);
    if time.is_some() && !c.keep_time_key {
        fields.remove(at);
    }
    time
}

/// Apply `null_value_pattern`, `null_empty_string` and `types`.
pub fn apply_types(c: &CommonParams, fields: &mut Fields) {
    for (key, value) in fields.iter_mut() {
        if let Value::String(s) = value {
            let text = s.as_str().unwrap_or_default();
            if (c.null_empty_string && text.is_empty())
                || c.null_value_pattern
                    .as_ref()
                    .is_some_and(|p| p.is_match(text))
            {
                *value = Value::Nil;
                continue;
            }
        }
        if let Some((_, spec)) = c.types.iter().find(|(k, _)| k == key) {
            *value = convert(value, spec);
        }
    }
}

fn convert(v: &Value, spec: &TypeSpec) -> Value {
    let text = match v {
        Value::String(s) => s.as_str().unwrap_or_default().to_string(),
        Value::Nil => return Value::Nil,
        other => other.to_string(),
    };
    let t = text.trim();
    match spec {
        TypeSpec::String => Value::from(text.as_str()),
        TypeSpec::Integer => t
            .parse::<i64>()
            .ok()
            .or_else(|| t.parse::<f64>().ok().map(|f| f as i64))
            .map(Value::from)
            .unwrap_or(Value::Nil),
        TypeSpec::Float => t.parse::<f64>().map(Value::from).unwrap_or(Value::Nil),
        TypeSpec::Bool => Value::from(matches!(t, "true" | "yes")),
        TypeSpec::Time(fmt) => TimeParser::new(fmt.as_deref(), TimeType::String)
            .parse_str(t)
            .map(|e| Value::from(e.as_f64()))
            .unwrap_or(Value::Nil),
        TypeSpec::Array(sep) => Value::Array(text.split(sep.as_str()).map(Value::from).collect()),
    }
}

/// Append `[time, {fields..., extra}]` to `out`.
pub fn write_event(
    _c: &CommonParams,
    fields: Fields,
    time: EventTime,
    extra: Option<(&str, &str)>,
    out: &mut BytesMut,
) {
    let mut map: Vec<(Value, Value)> = fields
        .into_iter()
        .map(|(k, v)| (Value::from(k), v))
        .collect();
    if let Some((k, v)) = extra {
        map.push((Value::from(k), Value::from(v)));
    }
    crate::msgpack::write_array_header(out, 2);
    time.write_msgpack(out);
    let mut w = out.writer();
    // Writing into memory cannot fail.
    let _ = rmpv::encode::write_value(&mut w, &Value::Map(map));
}

/// A field value from JSON.
pub fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::from(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (Value::from(k), from_json(v)))
                .collect(),
        ),
    }
}
