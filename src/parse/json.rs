//! `<parse> @type json`: one JSON object per line. Owns only decoding a line into fields; the
//! time and types are taken by [`super::common`]. A line that is not a JSON object is
//! unmatched.

use super::common::Fields;

/// The fields of a JSON object line, in the object's order; None if it is not one.
pub fn fields(line: &[u8]) -> Option<Fields> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let serde_json::Value::Object(map) = v else {
        return None;
    };
    Some(
        map.into_iter()
            .map(|(k, v)| (k, super::common::from_json(v)))
            .collect(),
    )
}
