//! Typed parameter values: turns the raw text of one config parameter into a string, integer,
//! float, bool, size, duration, array, hash or enum, with Fluentd's spelling rules.
//!
//! Owns only the conversion of a single value and the wording of its error. It must not know
//! parameter names, sections or files: the caller (`build`) adds the key and the `FILE:LINE`.

use std::time::Duration;

/// Why a value could not be read as the expected type. The message names the expected type and
/// repeats the text that was given; the caller prefixes the key and location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected an integer, got '{0}'")]
    Integer(String),
    #[error("expected a number, got '{0}'")]
    Float(String),
    #[error("expected a boolean (true, false, yes, no), got '{0}'")]
    Bool(String),
    #[error("expected a size (a byte count, or a number with k, m, g or t, e.g. 512k, 8m, 1g), got '{0}'")]
    Size(String),
    #[error("expected a duration (seconds, or a number with s, m, h or d, e.g. 0.5, 30s, 5m, 1h, 1d), got '{0}'")]
    Duration(String),
    #[error("expected a UTC offset (+09:00, +0900, -05 or UTC), got '{0}'; named zones are not supported")]
    UtcOffset(String),
    #[error("expected an array (JSON [\"a\",\"b\"] or a,b), got '{got}': {reason}")]
    Array { got: String, reason: String },
    #[error("expected a hash (JSON {{\"k\":\"v\"}} or k1:v1,k2:v2), got '{got}': {reason}")]
    Hash { got: String, reason: String },
    #[error("expected one of {allowed}, got '{got}'")]
    Enum { got: String, allowed: String },
    /// A value a plugin checks itself (a regular expression, a `types` list).
    #[error("{0}")]
    Invalid(String),
    #[error("{what} must be {bound}, got '{got}'")]
    OutOfRange {
        what: &'static str,
        bound: String,
        got: String,
    },
}

/// A string value is taken as written (quotes and escapes were already resolved by the parser).
pub fn parse_string(text: &str) -> String {
    text.to_string()
}

/// A signed integer: optional sign and decimal digits, nothing else.
pub fn parse_integer(text: &str) -> Result<i64, ValueError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| ValueError::Integer(text.to_string()))
}

/// An integer that must fit in `T` (e.g. `u16` for ports); the error states the range.
pub fn parse_integer_in<T>(text: &str) -> Result<T, ValueError>
where
    T: TryFrom<i64> + num_bounds::Bounds,
{
    let wide = parse_integer(text)?;
    T::try_from(wide).map_err(|_| ValueError::OutOfRange {
        what: "the value",
        bound: format!("an integer between {} and {}", T::MIN_I128, T::MAX_I128),
        got: text.to_string(),
    })
}

/// Bounds of the integer types used by the config structs, for range errors.
pub mod num_bounds {
    pub trait Bounds {
        const MIN_I128: i128;
        const MAX_I128: i128;
    }
    macro_rules! bounds {
        ($($t:ty),*) => {$(
            impl Bounds for $t {
                const MIN_I128: i128 = <$t>::MIN as i128;
                const MAX_I128: i128 = <$t>::MAX as i128;
            }
        )*};
    }
    bounds!(u16, u32, u64, usize, i64);
}

/// A finite floating-point number (`16`, `0.8`, `1e3`).
pub fn parse_float(text: &str) -> Result<f64, ValueError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ValueError::Float(text.to_string())),
    }
}

/// `true`/`yes`/empty → true, `false`/`no` → false (Fluentd's rule: a parameter written with
/// no value, like `standby`, is true).
pub fn parse_bool(text: &str) -> Result<bool, ValueError> {
    match text.trim() {
        "" | "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(ValueError::Bool(text.to_string())),
    }
}

/// A fixed UTC offset as Fluentd's `timekey_zone`/`timezone` write it: `+09:00`, `+0900`,
/// `-05`, or `UTC`/`Z`.
pub fn parse_utc_offset(text: &str) -> Result<chrono::FixedOffset, ValueError> {
    let bad = || ValueError::UtcOffset(text.to_string());
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(chrono::FixedOffset::east_opt(0).expect("zero offset"));
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(bad());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i32 = match &digits[2..] {
        "" => 0,
        m => m.parse().map_err(|_| bad())?,
    };
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    chrono::FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

/// Splits `12.5m` into (`12.5`, Some('m')) when the last char is one of `suffixes`
/// (case-insensitive), else (`text`, None).
fn split_suffix<'t>(text: &'t str, suffixes: &[char]) -> (&'t str, Option<char>) {
    match text.chars().last() {
        Some(c) if suffixes.contains(&c.to_ascii_lowercase()) => {
            (&text[..text.len() - 1], Some(c.to_ascii_lowercase()))
        }
        _ => (text, None),
    }
}

/// A non-negative finite decimal number (digits with an optional fraction), no sign, no exponent.
fn parse_plain_decimal(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A byte size: plain bytes or a number with `k`, `m`, `g`, `t` (1024-based, case-insensitive).
/// Fractions are allowed with a suffix (`1.5m`); the result is rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let err = || ValueError::Size(text.to_string());
    let trimmed = text.trim();
    let (number, suffix) = split_suffix(trimmed, &['k', 'm', 'g', 't']);
    let multiplier: u64 = match suffix {
        None => {
            return number.parse::<u64>().map_err(|_| err());
        }
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some(_) => 1 << 40,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(err);
    }
    let value = parse_plain_decimal(number).ok_or_else(err)? * multiplier as f64;
    if value >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(value as u64)
}

/// A duration (Fluentd's `time` type): a plain number is seconds (`0.5`, `60`), or a number with
/// `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let err = || ValueError::Duration(text.to_string());
    let trimmed = text.trim();
    let (number, suffix) = split_suffix(trimmed, &['s', 'm', 'h', 'd']);
    let unit = match suffix {
        None | Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        Some(_) => 86400.0,
    };
    let seconds = parse_plain_decimal(number).ok_or_else(err)? * unit;
    Duration::try_from_secs_f64(seconds).map_err(|_| err())
}

/// Renders a JSON scalar as the string a Fluentd plugin would see.
fn json_scalar_to_string(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An array of strings: JSON (`["a","b"]`) or comma-separated (`a,b`, items trimmed, empty items
/// dropped). Non-string JSON items are kept in their JSON spelling.
pub fn parse_array(text: &str) -> Result<Vec<String>, ValueError> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let err = |reason: String| ValueError::Array {
            got: text.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let items = value
            .as_array()
            .ok_or_else(|| err("not a JSON array".to_string()))?;
        return Ok(items.iter().map(json_scalar_to_string).collect());
    }
    Ok(trimmed
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect())
}

/// A hash of strings, in written order: JSON (`{"k":"v"}`) or `k1:v1,k2:v2` (split at the first
/// `:` of each item, both sides trimmed).
pub fn parse_hash(text: &str) -> Result<Vec<(String, String)>, ValueError> {
    let trimmed = text.trim();
    let err = |reason: String| ValueError::Hash {
        got: text.to_string(),
        reason,
    };
    if trimmed.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| err("not a JSON object".to_string()))?;
        return Ok(object
            .iter()
            .map(|(k, v)| (k.clone(), json_scalar_to_string(v)))
            .collect());
    }
    trimmed
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(err(format!("item '{item}' is not key:value"))),
        })
        .collect()
}

/// One of a fixed list of words (case-sensitive, as in Fluentd). Returns the matching entry of
/// `allowed` so callers can `match` on `&'static str`.
pub fn parse_enum(text: &str, allowed: &[&'static str]) -> Result<&'static str, ValueError> {
    let word = text.trim();
    allowed
        .iter()
        .copied()
        .find(|candidate| *candidate == word)
        .ok_or_else(|| ValueError::Enum {
            got: text.to_string(),
            allowed: allowed.join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_ranges() {
        assert_eq!(parse_integer("42"), Ok(42));
        assert_eq!(parse_integer("-7"), Ok(-7));
        assert!(matches!(parse_integer("4x"), Err(ValueError::Integer(_))));
        assert_eq!(parse_integer_in::<u16>("24224"), Ok(24224));
        let err = parse_integer_in::<u16>("70000").unwrap_err();
        assert!(err.to_string().contains("between 0 and 65535"), "{err}");
        assert!(parse_integer_in::<u32>("-1").is_err());
    }

    #[test]
    fn utc_offsets() {
        let east = |s: i32| chrono::FixedOffset::east_opt(s).unwrap();
        assert_eq!(parse_utc_offset("+09:00"), Ok(east(9 * 3600)));
        assert_eq!(parse_utc_offset("+0930"), Ok(east(9 * 3600 + 1800)));
        assert_eq!(parse_utc_offset("-05"), Ok(east(-5 * 3600)));
        assert_eq!(parse_utc_offset("UTC"), Ok(east(0)));
        for bad in ["Asia/Tokyo", "+9", "+24:00", "+09:60", "0900", "+09:0x", ""] {
            let err = parse_utc_offset(bad).unwrap_err();
            assert!(err.to_string().contains("UTC offset"), "{bad}: {err}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float("16"), Ok(16.0));
        assert_eq!(parse_float("0.8"), Ok(0.8));
        assert!(parse_float("fast").is_err());
        assert!(parse_float("inf").is_err());
    }

    #[test]
    fn bools_accept_fluentd_spellings() {
        for t in ["true", "yes", ""] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "no"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        let err = parse_bool("on").unwrap_err().to_string();
        assert!(
            err.contains("true, false, yes, no") && err.contains("'on'"),
            "{err}"
        );
    }

    #[test]
    fn sizes_are_1024_based() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        assert!(parse_size("8mb").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("99999999999t").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        let err = parse_duration("10 minutes").unwrap_err().to_string();
        assert!(err.contains("expected a duration"), "{err}");
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn arrays_json_and_comma() {
        assert_eq!(parse_array(r#"["a", "b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_array(r#"[1, "x"]"#).unwrap(), vec!["1", "x"]);
        assert_eq!(parse_array("a, b ,c").unwrap(), vec!["a", "b", "c"]);
        assert!(parse_array("").unwrap().is_empty());
        assert!(parse_array(r#"["a""#).is_err());
    }

    #[test]
    fn hashes_json_and_pairs() {
        let pairs = parse_hash(r#"{"k1":"v1","k2":2}"#).unwrap();
        assert!(pairs.contains(&("k1".into(), "v1".into())));
        assert!(pairs.contains(&("k2".into(), "2".into())));
        assert_eq!(
            parse_hash("k1:v1, k2:v:2").unwrap(),
            vec![("k1".into(), "v1".into()), ("k2".into(), "v:2".into())]
        );
        let err = parse_hash("k1").unwrap_err().to_string();
        assert!(err.contains("not key:value"), "{err}");
        assert!(parse_hash("[1]").is_err());
    }

    #[test]
    fn enums_list_allowed_values() {
        assert_eq!(parse_enum("tls", &["tcp", "tls"]), Ok("tls"));
        let err = parse_enum("udp", &["tcp", "tls"]).unwrap_err().to_string();
        assert_eq!(err, "expected one of tcp, tls, got 'udp'");
    }
}
