//! The reader of one config section: typed parameters and child sections, with every key the
//! builder asked for remembered, so that [`Section::finish`] can flag the rest (a warning for a
//! parameter Fluentd documents but lograft ignores, an error with a "did you mean" otherwise).
//! Also the readers every plugin shares: `@id`/`@log_level`, `@type`, `compress`, `<format>`.
//!
//! Owns how a parameter is read and how a reading problem is worded; it must not know which
//! plugins exist (that is `registry`) nor which parameters a plugin takes (its own `config`).

use super::diag::{did_you_mean, Diag};
use super::element::{Element, Param};
use super::value::{self, num_bounds::Bounds, ValueError};
use super::{Compression, Location, LogLevel, PluginCommon};
use std::time::Duration;

/// Reads the parameters and child sections of one element, remembering which keys and section
/// names the builder asked for, so that [`Section::finish`] can flag everything else.
pub(crate) struct Section<'e> {
    pub(crate) el: &'e Element,
    /// Names the section in messages, e.g. `<match mytag.**> (out_forward)`.
    pub(crate) title: String,
    pub(crate) known_params: Vec<&'static str>,
    pub(crate) known_sections: Vec<&'static str>,
    /// Keys synthesized from another spelling: (key read, key the user wrote).
    pub(crate) written_as: Vec<(String, String)>,
}

impl<'e> Section<'e> {
    pub(crate) fn new(el: &'e Element, title: impl Into<String>) -> Self {
        Section {
            el,
            title: title.into(),
            known_params: Vec::new(),
            known_sections: Vec::new(),
            written_as: Vec::new(),
        }
    }

    /// The key as the user wrote it (for synthesized buffer keys).
    pub(crate) fn shown(&self, key: &str) -> String {
        self.written_as
            .iter()
            .find(|(read, _)| read == key)
            .map(|(_, written)| written.clone())
            .unwrap_or_else(|| key.to_string())
    }

    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'e Param> {
        self.known_params.push(key);
        self.el.param(key)
    }

    pub(crate) fn typed<T>(
        &mut self,
        d: &mut Diag,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let param = self.raw(key)?;
        match parse(&param.value) {
            Ok(v) => Some(v),
            Err(e) => {
                d.error(
                    &param.location,
                    format!("'{}' in {}: {e}", self.shown(key), self.title),
                );
                None
            }
        }
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Option<String> {
        self.raw(key).map(|p| value::parse_string(&p.value))
    }

    pub(crate) fn required_string(&mut self, d: &mut Diag, key: &'static str) -> Option<String> {
        let v = self.string(key);
        if v.is_none() {
            self.missing(d, key);
        }
        v
    }

    pub(crate) fn missing(&self, d: &mut Diag, key: &str) {
        d.error(
            &self.el.location,
            format!("missing required parameter '{key}' in {}", self.title),
        );
    }

    pub(crate) fn bool(&mut self, d: &mut Diag, key: &'static str, default: bool) -> bool {
        self.typed(d, key, value::parse_bool).unwrap_or(default)
    }

    pub(crate) fn size(&mut self, d: &mut Diag, key: &'static str) -> Option<u64> {
        self.typed(d, key, value::parse_size)
    }

    pub(crate) fn duration(&mut self, d: &mut Diag, key: &'static str) -> Option<Duration> {
        self.typed(d, key, value::parse_duration)
    }

    pub(crate) fn float(&mut self, d: &mut Diag, key: &'static str) -> Option<f64> {
        self.typed(d, key, value::parse_float)
    }

    pub(crate) fn integer<T: TryFrom<i64> + Bounds>(
        &mut self,
        d: &mut Diag,
        key: &'static str,
    ) -> Option<T> {
        self.typed(d, key, value::parse_integer_in::<T>)
    }

    pub(crate) fn array(&mut self, d: &mut Diag, key: &'static str) -> Option<Vec<String>> {
        self.typed(d, key, value::parse_array)
    }

    pub(crate) fn enumerated(
        &mut self,
        d: &mut Diag,
        key: &'static str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        self.typed(d, key, |v| value::parse_enum(v, allowed))
    }

    pub(crate) fn log_level(&mut self, d: &mut Diag, key: &'static str) -> Option<LogLevel> {
        self.enumerated(
            d,
            key,
            &["trace", "debug", "info", "warn", "error", "fatal"],
        )
        .map(|level| match level {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Fatal,
        })
    }

    /// A value that must not be below `min` (e.g. ports of 0 for servers are fine, counts of 0
    /// threads are not).
    pub(crate) fn check_min<T: PartialOrd + std::fmt::Display>(
        &self,
        d: &mut Diag,
        key: &str,
        got: T,
        min: T,
    ) -> bool {
        if got < min {
            let location = self
                .el
                .param(key)
                .map(|p| p.location.clone())
                .unwrap_or_else(|| self.el.location.clone());
            d.error(
                &location,
                format!(
                    "'{}' in {} must be at least {min}, got {got}",
                    self.shown(key),
                    self.title
                ),
            );
            return false;
        }
        true
    }

    /// Child sections named `name` (registering the name as known).
    pub(crate) fn sections(&mut self, name: &'static str) -> Vec<&'e Element> {
        self.known_sections.push(name);
        self.el.children_named(name).collect()
    }

    /// At most one child section named `name`.
    pub(crate) fn single_section(
        &mut self,
        d: &mut Diag,
        name: &'static str,
    ) -> Option<&'e Element> {
        let found = self.sections(name);
        for extra in found.iter().skip(1) {
            d.error(
                &extra.location,
                format!(
                    "<{name}> is given more than once in {} (first at line {}); only one is allowed",
                    self.title, found[0].location.line
                ),
            );
        }
        found.first().copied()
    }

    /// Flags every parameter and section nobody asked for: a warning for those Fluentd documents
    /// (`unimplemented_*`), an error for the rest. Also warns about keys given twice.
    pub(crate) fn finish(
        self,
        d: &mut Diag,
        unimplemented_params: &[&str],
        unimplemented_sections: &[&str],
    ) {
        for (i, p) in self.el.params.iter().enumerate() {
            let shown = self.shown(&p.key);
            if let Some(later) = self.el.params[i + 1..].iter().find(|q| q.key == p.key) {
                d.warn(
                    &p.location,
                    format!(
                        "'{shown}' is given more than once in {}; line {} wins",
                        self.title, later.location.line
                    ),
                );
                continue;
            }
            if self.known_params.contains(&p.key.as_str()) {
                continue;
            }
            if unimplemented_params.contains(&p.key.as_str()) {
                d.warn(
                    &p.location,
                    format!(
                        "'{shown}' in {} is accepted but not implemented by lograft; ignored",
                        self.title
                    ),
                );
                continue;
            }
            let mut candidates: Vec<&str> = self.known_params.clone();
            candidates.extend_from_slice(unimplemented_params);
            let hint = did_you_mean(&p.key, &candidates)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            d.error(
                &p.location,
                format!("unknown parameter '{shown}' in {}{hint}", self.title),
            );
        }
        for child in &self.el.children {
            if self.known_sections.contains(&child.name.as_str()) {
                continue;
            }
            if unimplemented_sections.contains(&child.name.as_str()) {
                d.warn(
                    &child.location,
                    format!(
                        "section <{}> in {} is accepted but not implemented by lograft; ignored",
                        child.name, self.title
                    ),
                );
                continue;
            }
            let mut candidates: Vec<&str> = self.known_sections.clone();
            candidates.extend_from_slice(unimplemented_sections);
            let hint = did_you_mean(&child.name, &candidates)
                .map(|s| format!("; did you mean <{s}>?"))
                .unwrap_or_default();
            let known = if candidates.is_empty() {
                String::from(" (it takes no sections)")
            } else {
                String::new()
            };
            d.error(
                &child.location,
                format!(
                    "unknown section <{}> in {}{known}{hint}",
                    child.name, self.title
                ),
            );
        }
    }
}

/// `@id`, `@log_level` / `log_level`.
pub(crate) fn plugin_common(sec: &mut Section<'_>, d: &mut Diag) -> PluginCommon {
    let id = sec.string("@id");
    let log_level = match sec.log_level(d, "@log_level") {
        Some(level) => Some(level),
        None => sec.log_level(d, "log_level"),
    };
    PluginCommon {
        id,
        log_level,
        location: sec.el.location.clone(),
    }
}

/// `@type` (or the v0.12 spelling `type`), with its location.
pub(crate) fn plugin_type(sec: &mut Section<'_>, d: &mut Diag) -> Option<(String, Location)> {
    let at = sec.raw("@type");
    let bare = sec.raw("type");
    match (at, bare) {
        (Some(a), Some(b)) => {
            d.error(
                &b.location,
                format!(
                    "both '@type' (line {}) and 'type' are given in {}; keep one",
                    a.location.line, sec.title
                ),
            );
            None
        }
        (Some(p), None) | (None, Some(p)) => {
            if p.value.is_empty() {
                d.error(
                    &p.location,
                    format!("'@type' in {} has no value", sec.title),
                );
                return None;
            }
            Some((p.value.clone(), p.location.clone()))
        }
        (None, None) => {
            sec.missing(d, "@type");
            None
        }
    }
}

/// The record format: flat `format NAME` (v0.12) or `<format> @type NAME </format>`.
pub(crate) fn output_format(
    sec: &mut Section<'_>,
    d: &mut Diag,
    allowed: &[&'static str],
    default: &'static str,
) -> &'static str {
    let flat = sec.enumerated(d, "format", allowed);
    let Some(format_el) = sec.single_section(d, "format") else {
        return flat.unwrap_or(default);
    };
    let mut fsec = Section::new(format_el, format!("<format> of {}", sec.title));
    let _ = plugin_common(&mut fsec, d);
    let ty_param = fsec.raw("@type").or_else(|| fsec.raw("type"));
    let chosen = match ty_param {
        None => default,
        Some(p) => match value::parse_enum(&p.value, allowed) {
            Ok(v) => v,
            Err(e) => {
                d.error(&p.location, format!("'@type' in {}: {e}", fsec.title));
                default
            }
        },
    };
    if let Some(flat_param) = sec.el.param("format") {
        d.error(
            &flat_param.location,
            format!(
                "'format' and a <format> section (line {}) are both given in {}; keep one",
                format_el.location.line, sec.title
            ),
        );
    }
    fsec.finish(
        d,
        &[
            "output_type",
            "output_tag",
            "output_time",
            "time_format",
            "time_type",
            "localtime",
            "utc",
            "timezone",
            "delimiter",
            "add_newline",
            "include_time_key",
            "include_tag_key",
            "time_key",
            "tag_key",
            "keep_time_key",
            "json_parser",
        ],
        &[],
    );
    chosen
}

pub(crate) fn compression(
    sec: &mut Section<'_>,
    d: &mut Diag,
    allowed: &[&'static str],
) -> Compression {
    match sec.enumerated(d, "compress", allowed) {
        Some("gzip" | "gz") => Compression::Gzip,
        _ => Compression::Text,
    }
}
