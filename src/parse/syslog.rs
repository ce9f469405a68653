//! `<parse> @type syslog`: RFC 3164 (`message_format rfc3164`, the default) and RFC 5424
//! (`rfc5424`) lines, or either (`auto`, by the version digit after the priority).
//! `with_priority` (default false) expects the `<PRI>` prefix in RFC 3164 lines. Fields:
//! `pri` (with a priority), `host`, `ident`, `pid`, `message`; RFC 5424 also `msgid` and
//! `extradata`. The time is the line's (RFC 3164 has no year: the current one is taken).
//!
//! Owns only these two line formats.

use super::common::{Fields, Value};
use crate::config::diag::Diag;
use crate::config::section::Section;
use crate::event::EventTime;
use chrono::{Datelike, NaiveDateTime, Utc};
use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc3164,
    Rfc5424,
    Auto,
}

#[derive(Debug, Clone)]
pub struct SyslogParams {
    pub format: SyslogFormat,
    rfc3164: Regex,
    rfc5424: Regex,
}

pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> SyslogParams {
    let format = match sec.enumerated(d, "message_format", &["rfc3164", "rfc5424", "auto"]) {
        Some("rfc5424") => SyslogFormat::Rfc5424,
        Some("auto") => SyslogFormat::Auto,
        _ => SyslogFormat::Rfc3164,
    };
    let with_priority = sec.bool(d, "with_priority", false);
    sec.raw("parser_type");
    sec.raw("support_colonless_ident");
    let pri = if with_priority {
        r"<(?<pri>[0-9]{1,3})>"
    } else {
        r"(?:<(?<pri>[0-9]{1,3})>)?"
    };
    SyslogParams {
        format,
        rfc3164: Regex::new(&format!(
            r"^{pri}(?<time>[A-Z][a-z]{{2}} +[0-9]{{1,2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}) (?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^:]*:)? *(?<message>.*)$"
        ))
        .expect("built-in rfc3164 expression"),
        rfc5424: Regex::new(
            r"^<(?<pri>[0-9]{1,3})>[1-9][0-9]{0,2} (?<time>[^ ]+) (?<host>[!-~]{1,255}) (?<ident>[!-~]{1,48}) (?<pid>[!-~]{1,128}) (?<msgid>[!-~]{1,32}) (?<extradata>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?<message>.*))?$",
        )
        .expect("built-in rfc5424 expression"),
    }
}

impl SyslogParams {
    /// Fields and time of a matching line.
    pub fn parse(&self, line: &[u8]) -> Option<(Fields, Option<EventTime>)> {
        let line = std::str::from_utf8(line).ok()?;
        let is_5424 = match self.format {
            SyslogFormat::Rfc5424 => true,
            SyslogFormat::Rfc3164 => false,
            SyslogFormat::Auto => line
                .split_once('>')
                .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit())),
        };
        let re = if is_5424 {
            &self.rfc5424
        } else {
            &self.rfc3164
        };
        let caps = re.captures(line)?;
        let mut fields = Fields::new();
        let mut time = None;
        for name in re.capture_names().flatten() {
            let Some(m) = caps.name(name) else { continue };
            match name {
                "time" if is_5424 => {
                    time = chrono::DateTime::parse_from_rfc3339(m.as_str())
                        .ok()
                        .and_then(|t| {
                            Some(EventTime {
                                secs: u32::try_from(t.timestamp()).ok()?,
                                nanos: t.timestamp_subsec_nanos(),
                            })
                        })
                }
                "time" => time = rfc3164_time(m.as_str()),
                "pri" => fields.push((
                    name.into(),
                    Value::from(m.as_str().parse::<i64>().unwrap_or(0)),
                )),
                "pid" if is_5424 && m.as_str() == "-" => {}
                _ => fields.push((name.into(), Value::from(m.as_str()))),
            }
        }
        Some((fields, time))
    }
}

/// `Nov  5 04:14:00` in the current year (UTC).
fn rfc3164_time(text: &str) -> Option<EventTime> {
    let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let with_year = format!("{} {squeezed}", Utc::now().year());
    let t = NaiveDateTime::parse_from_str(&with_year, "%Y %b %d %H:%M:%S")
        .ok()?
        .and_utc();
    Some(EventTime {
        secs: u32::try_from(t.timestamp()).ok()?,
        nanos: 0,
    })
}
