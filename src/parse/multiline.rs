//! `<parse> @type multiline`: events spanning several lines. A line matching
//! `format_firstline` starts a group; the following lines that do not are added to it (joined
//! with `\n`); the group is parsed with `format1` … `format20` concatenated (dot matches
//! newline) when the next group starts, or when the source has written nothing for
//! `multiline_flush_interval` (the tail input's parameter, see `LineParser::flush`).
//!
//! Owns only grouping lines and matching the group; the caller keeps the position of a group's
//! first line uncommitted until the group is emitted.

use crate::config::diag::Diag;
use crate::config::section::Section;
use regex::bytes::Regex;

/// Parameters `format1` … `format20`, in order.
const FORMAT_KEYS: [&str; 20] = [
    "format1", "format2", "format3", "format4", "format5", "format6", "format7", "format8",
    "format9", "format10", "format11", "format12", "format13", "format14", "format15", "format16",
    "format17", "format18", "format19", "format20",
];

#[derive(Debug, Clone)]
pub struct MultilineParams {
    pub firstline: Regex,
    pub body: super::regexp::RegexpParams,
}

pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> Option<MultilineParams> {
    let firstline = sec.typed(d, "format_firstline", |v| {
        Regex::new(strip_slashes(v)).map_err(|e| {
            crate::config::value::ValueError::Invalid(format!("invalid regular expression: {e}"))
        })
    });
    let mut body = String::new();
    for key in FORMAT_KEYS {
        if let Some(part) = sec.string(key) {
            body.push_str(strip_slashes(&part));
        }
    }
    if body.is_empty() {
        sec.missing(d, "format1");
        return None;
    }
    let body = super::regexp::compile(&format!("/{body}/m"))
        .map_err(|e| {
            d.error(
                &sec.el.location,
                format!("'format1'..'format20' in {}: {e}", sec.title),
            )
        })
        .ok()?;
    let Some(firstline) = firstline else {
        sec.missing(d, "format_firstline");
        return None;
    };
    Some(MultilineParams {
        firstline,
        body: super::regexp::RegexpParams {
            expression: body,
            dash_is_nil: false,
            integer_fields: &[],
        },
    })
}

/// `/re/` → `re` (Fluentd writes the formats with slashes).
fn strip_slashes(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('/')
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or(v)
}
