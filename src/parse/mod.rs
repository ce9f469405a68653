//! `<parse>`: turning one line of text into an event (time + record), as Fluentd's parser
//! plugins do.
//!
//! Owns the typed `<parse>` config ([`ParseConfig`], built by [`build`]) and the runtime
//! [`LineParser`]. One file per format: [`none`], [`json`], [`regexp`] (also the built-in
//! `apache2` and `nginx` expressions), [`syslog`] (RFC 3164 and 5424),
//! [`delimited`] (`csv`, `tsv`, `ltsv`), [`cri`] (Kubernetes CRI log lines, partial lines
//! joined), [`docker`] (Docker json-file lines, split lines joined); the parameters every format shares live in [`common`] (`time_key`, `time_format`,
//! `keep_time_key`, `types`, ...) and [`time`] (time formats). It must not read files or know
//! where lines come from; a parser that joins lines (CRI partial lines) only reports that a line
//! is pending, so the caller can keep the position of the first pending line uncommitted.

pub mod common;
pub mod cri;
pub mod delimited;
pub mod docker;
pub mod json;
pub mod multiline;
pub mod none;
pub mod regexp;
pub mod syslog;
pub mod time;

use crate::config::diag::Diag;
use crate::config::element::Element;
use crate::config::section::Section;
use crate::event::EventTime;
use bytes::BytesMut;
use common::{CommonParams, Fields};

/// The typed `<parse>` section.
#[derive(Debug, Clone)]
pub struct ParseConfig {
    pub format: Format,
    pub common: CommonParams,
}

impl Default for ParseConfig {
    /// `@type none`.
    fn default() -> Self {
        ParseConfig {
            format: Format::None(none::NoneParams::default()),
            common: CommonParams::default(),
        }
    }
}

/// A `<parse>` `@type` and its own parameters.
#[derive(Debug, Clone)]
pub enum Format {
    None(none::NoneParams),
    Json,
    Regexp(regexp::RegexpParams),
    Cri(cri::CriParams),
    Docker,
    Delimited(delimited::Delimited),
    Syslog(syslog::SyslogParams),
    Multiline(multiline::MultilineParams),
}

/// The formats `@type` may name, for messages.
pub const FORMATS: &[&str] = &[
    "none",
    "json",
    "regexp",
    "apache2",
    "nginx",
    "syslog",
    "csv",
    "tsv",
    "ltsv",
    "cri",
    "docker",
    "multiline",
];

/// Parameters of `<parse>` Fluentd documents that lograft accepts and ignores.
const UNIMPLEMENTED: &[&str] = &["timeout", "time_format_fallbacks", "utc", "localtime"];

/// Build the typed config of one `<parse>` element (`title` names its parent in messages).
pub(crate) fn build(el: &Element, parent: &str, d: &mut Diag) -> Option<ParseConfig> {
    let mut sec = Section::new(el, format!("<parse> of {parent}"));
    let ty = sec.string("@type").or_else(|| sec.string("type"));
    let Some(ty) = ty else {
        sec.missing(d, "@type");
        return None;
    };
    let common = common::build(&mut sec, d, &ty);
    let format = match ty.as_str() {
        "none" => Some(Format::None(none::build(&mut sec))),
        "json" => Some(Format::Json),
        "regexp" => regexp::build(&mut sec, d).map(Format::Regexp),
        "apache2" => Some(Format::Regexp(regexp::apache2())),
        "nginx" => Some(Format::Regexp(regexp::nginx())),
        "cri" => Some(Format::Cri(cri::build(&mut sec, d))),
        "docker" => Some(Format::Docker),
        "csv" | "tsv" | "ltsv" => Some(Format::Delimited(delimited::build(&mut sec, d, &ty))),
        "syslog" => Some(Format::Syslog(syslog::build(&mut sec, d))),
        "multiline" => multiline::build(&mut sec, d).map(Format::Multiline),
        other => {
            d.error(
                &el.location,
                format!(
                    "unknown <parse> type '{other}' in {parent}; lograft supports: {}",
                    FORMATS.join(", ")
                ),
            );
            None
        }
    };
    sec.finish(d, UNIMPLEMENTED, &[]);
    Some(ParseConfig {
        format: format?,
        common,
    })
}

/// What one line became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// One entry was appended to the output.
    Event,
    /// The line is held to be joined with later lines (a CRI partial line): nothing was
    /// appended; the caller must not commit its position yet.
    Pending,
    /// The line did not match the format (nothing appended).
    Unmatched,
}

/// A parser for one source of lines (it may hold a pending partial line between calls).
#[derive(Debug, Clone)]
pub struct LineParser {
    config: ParseConfig,
    time: time::TimeParser,
    /// CRI and docker: the joined text of pending partial lines; multiline: the lines of the
    /// current group.
    partial: Vec<u8>,
    /// The last `parse` started a new pending group (its line is the group's first).
    began_group: bool,
}

impl LineParser {
    pub fn new(config: &ParseConfig) -> Self {
        LineParser {
            time: time::TimeParser::new(
                config.common.time_format.as_deref(),
                config.common.time_type,
            ),
            config: config.clone(),
            partial: Vec::new(),
            began_group: false,
        }
    }

    /// Whether this parser holds lines of an event not emitted yet.
    pub fn has_pending(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Whether the last [`LineParser::parse`] started a new pending group with its line.
    pub fn began_group(&self) -> bool {
        self.began_group
    }

    /// Whether a pending group may be emitted as it is after a quiet period (`multiline`).
    pub fn flushes_on_idle(&self) -> bool {
        matches!(self.config.format, Format::Multiline(_))
    }

    /// Emit the pending multiline group (the source was quiet for
    /// `multiline_flush_interval`).
    pub fn flush(
        &mut self,
        now: EventTime,
        extra: Option<(&str, &str)>,
        out: &mut BytesMut,
    ) -> Outcome {
        let Format::Multiline(p) = &self.config.format else {
            return Outcome::Unmatched;
        };
        let group = std::mem::take(&mut self.partial);
        match p.body.fields(&group) {
            Some(fields) => self.finish(fields, now, extra, out),
            None => Outcome::Unmatched,
        }
    }

    /// Forget a pending partial line (the file it came from was truncated or replaced).
    pub fn reset(&mut self) {
        self.partial.clear();
    }

    /// Parse `line` (without its newline) and append `[time, record]` to `out`, with
    /// `extra` (e.g. the `path_key` field) added to the record.
    pub fn parse(
        &mut self,
        line: &[u8],
        now: EventTime,
        extra: Option<(&str, &str)>,
        out: &mut BytesMut,
    ) -> Outcome {
        let had_pending = self.has_pending();
        let outcome = self.parse_line(line, now, extra, out);
        self.began_group = self.has_pending()
            && (!had_pending
                || (matches!(self.config.format, Format::Multiline(_))
                    && self.partial.len() == line.len()));
        outcome
    }

    fn parse_line(
        &mut self,
        line: &[u8],
        now: EventTime,
        extra: Option<(&str, &str)>,
        out: &mut BytesMut,
    ) -> Outcome {
        match &self.config.format {
            Format::None(p) => {
                none::write(p, line, now, extra, out);
                Outcome::Event
            }
            Format::Json => match json::fields(line) {
                Some(fields) => self.finish(fields, now, extra, out),
                None => Outcome::Unmatched,
            },
            Format::Regexp(p) => match p.fields(line) {
                Some(fields) => self.finish(fields, now, extra, out),
                None => Outcome::Unmatched,
            },
            Format::Cri(p) => match cri::parse(p, line, &mut self.partial) {
                cri::CriLine::Pending => Outcome::Pending,
                cri::CriLine::Unmatched => Outcome::Unmatched,
                cri::CriLine::Complete(fields, time) => {
                    let time = self.time.parse_rfc3339(&time).unwrap_or(now);
                    common::write_event(&self.config.common, fields, time, extra, out);
                    Outcome::Event
                }
            },
            Format::Delimited(p) => match p.fields(line) {
                Some(fields) => self.finish(fields, now, extra, out),
                None => Outcome::Unmatched,
            },
            Format::Syslog(p) => match p.parse(line) {
                Some((mut fields, time)) => {
                    common::apply_types(&self.config.common, &mut fields);
                    let time = time.unwrap_or(now);
                    common::write_event(&self.config.common, fields, time, extra, out);
                    Outcome::Event
                }
                None => Outcome::Unmatched,
            },
            Format::Multiline(p) => {
                if p.firstline.is_match(line) {
                    let group = std::mem::replace(&mut self.partial, line.to_vec());
                    if group.is_empty() {
                        return Outcome::Pending;
                    }
                    return match p.body.fields(&group) {
                        Some(fields) => self.finish(fields, now, extra, out),
                        None => Outcome::Unmatched,
                    };
                }
                if self.partial.is_empty() {
                    return Outcome::Unmatched;
                }
                self.partial.push(b'\n');
                self.partial.extend_from_slice(line);
                Outcome::Pending
            }
            Format::Docker => match docker::parse(line, &mut self.partial) {
                docker::DockerLine::Pending => Outcome::Pending,
                docker::DockerLine::Unmatched => Outcome::Unmatched,
                docker::DockerLine::Complete(fields, time) => {
                    let time = time
                        .and_then(|t| self.time.parse_rfc3339(&t))
                        .unwrap_or(now);
                    common::write_event(&self.config.common, fields, time, extra, out);
                    Outcome::Event
                }
            },
        }
    }

    /// Take the time out of the fields (per `time_key`), convert `types`, write the event.
    fn finish(
        &self,
        mut fields: Fields,
        now: EventTime,
        extra: Option<(&str, &str)>,
        out: &mut BytesMut,
    ) -> Outcome {
        let c = &self.config.common;
        let time = common::take_time(c, &self.time, &mut fields).unwrap_or(now);
        common::apply_types(c, &mut fields);
        common::write_event(c, fields, time, extra, out);
        Outcome::Event
    }
}

#[cfg(test)]
mod tests;
